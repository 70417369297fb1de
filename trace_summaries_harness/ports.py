"""Free loopback ports for services the tests start, and waiting for them to come up."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import requests


def free_port() -> int:
    """A port nobody listens on right now. It is released before it is returned, so another process can take
    it before the caller binds it: ``reserve_port`` (our own servers) or ``start_on_free_port`` (services
    that only take a number) instead, for anything that must listen on it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# The errors of something that is not up yet: nothing listens on the port, the connection is dropped while
# the service starts, or it does not answer in time. Anything else is an answer, and fails a wait at once.
NOT_YET_UP: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    socket.timeout,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
)


def _not_yet_up(error: BaseException, retry_on: tuple[type[BaseException], ...]) -> bool:
    if isinstance(error, urllib.error.HTTPError):  # the service is up and answered with an error
        return isinstance(error, retry_on)
    if isinstance(error, urllib.error.URLError):  # urllib wraps the socket's error in ``reason``
        return isinstance(error.reason, NOT_YET_UP) or isinstance(error, retry_on)
    return isinstance(error, NOT_YET_UP + retry_on)


def wait_until(
    check: Callable[[], bool],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = 0.1,
    retry_on: tuple[type[BaseException], ...] = (),
    log: Callable[[], str] | None = None,
) -> None:
    """Polls ``check`` until it returns true (not a sleep-as-synchronisation: it returns as soon as the check
    passes).

    Only the errors of something not up yet are retried (``NOT_YET_UP``, and ``retry_on`` for a client
    library's own "cannot connect" error); any other error, such as the ``AssertionError`` of a process that
    died or a service's own error answer, is raised at once, with ``log()`` (the process's log) attached as
    a note, instead of becoming "not ready" minutes later. A timeout says the last retried error and the log.
    """
    deadline = time.monotonic() + timeout_s
    last: BaseException | None = None
    while True:
        try:
            if check():
                return
        except Exception as error:
            if not _not_yet_up(error, retry_on):
                if log is not None:
                    error.add_note(f"while waiting for {what}; log:\n{log()}")
                raise
            last = error
        if time.monotonic() > deadline:
            message = f"{what} not ready after {timeout_s:.0f}s"
            if last is not None:
                message += f" (last error: {type(last).__name__}: {last})"
            if log is not None:
                message += f"\nlog:\n{log()}"
            raise TimeoutError(message)
        time.sleep(interval_s)


# --- ports handed to services without a release-and-rebind race ------------------------------------------

T = TypeVar("T")

# How many ports a service that only takes a port number is started on before the harness gives up.
PORT_ATTEMPTS = 5


class PortTaken(RuntimeError):
    """A service could not bind the port it was given: another process took it after ``free_port``."""


def address_in_use(text: str) -> bool:
    """Whether a service's log reports EADDRINUSE (PostgreSQL: ``Address already in use``; uvicorn, under
    ``dagster-webserver``: ``... address already in use``; noida-db: ``port N is already in use``)."""
    return "already in use" in text.lower()


def start_on_free_port(start: Callable[[int], T], *, what: str, attempts: int = PORT_ATTEMPTS) -> T:
    """``start(port)`` on a fresh free port, and again on a new port each time it raises ``PortTaken``.

    For services that only take a port number (no port 0, no inherited socket): ``free_port`` releases the
    port before the service binds it, and another process can take it in between. ``start`` tells that from
    the service's own report (its bind error in its log, with its early exit) and raises ``PortTaken``, so a
    lost race costs one more start instead of a flaky test; any other error ends the attempts at once.
    """
    last: PortTaken | None = None
    for _ in range(attempts):
        try:
            return start(free_port())
        except PortTaken as error:
            last = error
    raise PortTaken(
        f"{what}: its port was taken before it bound it, {attempts} times in a row: {last}"
    ) from last


def reserve_port(host: str = "127.0.0.1") -> socket.socket:
    """A TCP socket bound to a free port of ``host``, not listening yet: the port is the caller's until the
    socket closes, so a server handed the socket (``listen()``, then its descriptor) cannot lose the port.

    The port is bound by number (the kernel chooses it for a first socket, which this one joins and which is
    closed once this one holds the port: with ``SO_REUSEADDR`` on both, Linux lets two sockets share a port
    while neither listens). Linux releases a port it chose itself when its socket stops listening, but keeps
    one bound by number, so ``stop_listening`` keeps the port reserved; ``SO_REUSEADDR`` also lets the socket
    listen again while the connections of a stopped server are in ``TIME_WAIT``. Ports chosen by the kernel
    (``free_port``, outgoing connections) never include a port bound this way.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as chooser:
        chooser.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        chooser.bind((host, 0))
        held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            held.bind(chooser.getsockname())
        except BaseException:
            held.close()
            raise
    return held


def stop_listening(sock: socket.socket) -> None:
    """Makes a listening socket refuse connections again and keep its port (``reserve_port``): on Linux a
    ``shutdown`` leaves the LISTEN state and resets the connections not accepted yet; ``listen()`` serves the
    port again. A socket that does not listen is left as it is: a ``shutdown`` would mark it shut for reading,
    and every connection it accepts after its next ``listen()`` would read end-of-file at once."""
    if sock.fileno() != -1 and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.shutdown(socket.SHUT_RD)


def listening_on(pid: int, port: int) -> bool:
    """Whether process ``pid`` itself listens on TCP ``port`` (from Linux's ``/proc``): that a service has
    bound its port, for a service that does not log it, and that no other process answers there instead."""
    fd_dir = Path(f"/proc/{pid}/fd")
    sockets: set[str] = set()
    try:
        for fd in fd_dir.iterdir():
            with contextlib.suppress(OSError):  # closed meanwhile
                sockets.add(os.readlink(fd))
    except OSError:  # gone, or not ours to look at
        return False
    for table in ("tcp", "tcp6"):
        try:
            rows = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            # "sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ..."
            fields = row.split()
            listening = fields[3] == "0A"  # TCP_LISTEN
            if (
                listening
                and int(fields[1].rsplit(":", 1)[1], 16) == port
                and f"socket:[{fields[9]}]" in sockets
            ):
                return True
    return False


class ProcessExited(RuntimeError):
    """A process a wait depends on has exited: waiting longer cannot help."""


def running(process: subprocess.Popen[Any], what: str) -> bool:
    """For ``wait_until`` conditions (``running(p, "the worker") and ...``): true while ``process`` runs;
    once it has exited, raises ``ProcessExited``, which ends the wait at once."""
    if process.poll() is not None:
        raise ProcessExited(f"{what} exited with {process.returncode}")
    return True
