"""A real Kafka-protocol broker (noida-db) for tests, on a free loopback port and a temporary directory.

noida-db's console script (in the venv's bin dir) is a Python wrapper that runs the packaged binary as a
child and dies at once on SIGTERM while the binary is still saving and holding the port. So the binary the
wrapper would run is started directly: ``wait()`` then means "the broker is gone and its data saved". It
runs in its own session so a stop signals exactly its process group. Stopping keeps the data directory
(noida-db saves on SIGTERM), so ``restart`` brings back the same topics, messages and committed offsets on
the same port.

Crashes: ``kill`` is a SIGKILL to the process group, ``pause`` a SIGSTOP (a hung broker: connections are
accepted by the kernel, nothing is answered); ``start`` afterwards brings the broker back on the same port
and data directory with what it had saved. noida-db keeps its log in memory and saves it to
``<data dir>/kafka.json`` about once a second while something changed, so a SIGKILL loses what it
acknowledged since its last save (acknowledged messages included: a real broker's log would be in the page
cache). ``wait_saved(topic)`` waits, on that file, until the saved log holds everything the broker has
acknowledged on the topic, so that a kill afterwards can only cost what is in flight.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from trace_summaries_harness.ports import PORT_ATTEMPTS, address_in_use, free_port, wait_until

# Where noida-db saves the Kafka service's state (topics, partitions with their high watermarks, producer
# sequences, committed offsets) in its data directory; the layout is that of noida-db 0.2.
SAVED_STATE_FILE = "kafka.json"


def _noida_db_binary() -> Path:
    """The binary behind ``<venv>/bin/noida-db`` (the wrapper looks it up the same way)."""
    binary = Path(str(resources.files("noida_db").joinpath("noida-db")))
    if not binary.is_file():
        raise FileNotFoundError(f"noida-db binary not found at {binary}; is the 'test' extra installed?")
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)  # the wrapper does the same before its first run
    return binary


class KafkaBroker:
    """One noida-db process serving only Kafka; ``start``/``stop``/``restart`` keep the port and data."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self._process: subprocess.Popen[bytes] | None = None
        # A port of our choosing may be taken between ``free_port`` and the bind: until the broker has run
        # once (clients then know its address), a bind failure moves it to another port.
        self._may_move = port is None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client_config(self) -> dict[str, Any]:
        """Connection settings for any confluent-kafka client of this broker."""
        return {"bootstrap.servers": self.bootstrap_servers}

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 20.0) -> None:
        if self.is_running:
            return
        for _ in range(PORT_ATTEMPTS - 1):
            try:
                self._start(timeout_s)
                break
            except RuntimeError as error:
                if not (self._may_move and address_in_use(str(error))):
                    raise
                self.port = free_port()
        else:
            self._start(timeout_s)
        self._may_move = False

    def _start(self, timeout_s: float) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    str(_noida_db_binary()),
                    "start",
                    "--data-dir",
                    str(self.data_dir),
                    "--only",
                    "kafka",
                    "--kafka-port",
                    str(self.port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_until_ready(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _wait_until_ready(self, timeout_s: float) -> None:
        """Polls broker metadata; each ``list_topics`` call blocks up to its own timeout, so no sleeps."""
        # librdkafka logs every refused connection while the broker starts: into logging, not stderr.
        config: dict[str, Any] = {**self.client_config(), "logger": logging.getLogger("kafka_broker")}
        admin = AdminClient(config)
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.is_running:
                log = self.log_path.read_text()
                raise RuntimeError(f"noida-db exited early, see {self.log_path}:\n{log}")
            try:
                if admin.list_topics(timeout=0.5).brokers:
                    return
            except KafkaException:
                pass  # still starting: connection refused or metadata timed out
            if time.monotonic() > deadline:
                raise TimeoutError(f"Kafka on {self.bootstrap_servers} not ready after {timeout_s:.0f}s")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stops the broker (wrapper and binary), keeping its data directory."""
        process, self._process = self._process, None
        if process is None:
            return
        _signal_group(process, signal.SIGTERM)
        _signal_group(process, signal.SIGCONT)  # a paused broker gets to handle the SIGTERM
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait(timeout=timeout_s)

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self, timeout_s: float = 10.0) -> None:
        """SIGKILL to the broker's process group: it saves nothing more (see the module's docstring); the
        data directory and the port stay for ``start``."""
        process, self._process = self._process, None
        if process is None:
            return
        _signal_group(process, signal.SIGKILL)
        process.wait(timeout=timeout_s)

    def pause(self) -> None:
        """SIGSTOP to the broker's process group: a hung broker (``kill`` or ``stop`` end it)."""
        if self._process is not None:
            _signal_group(self._process, signal.SIGSTOP)

    def high_watermarks(self, topic: str, timeout_s: float = 10.0) -> dict[int, int]:
        """Partition -> high watermark (offset after the last message the broker accepted), asked of the
        running broker."""
        consumer = Consumer({**self.client_config(), "group.id": "kafka-broker-harness"})
        try:
            partitions = consumer.list_topics(topic, timeout=timeout_s).topics[topic].partitions
            return {
                partition: consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=timeout_s, cached=False
                )[1]
                for partition in sorted(partitions)
            }
        finally:
            consumer.close()

    def saved_high_watermarks(self, topic: str) -> dict[int, int] | None:
        """Partition -> high watermark of ``topic`` in the state noida-db last saved; None when nothing
        readable is saved yet (no file, or a file being written)."""
        try:
            state = json.loads((self.data_dir / SAVED_STATE_FILE).read_text())
            topics = {name: body for name, body in state["topics"]}
            if topic not in topics:
                return None
            return {int(p): int(part["high_watermark"]) for p, part in topics[topic]["partitions"]}
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def wait_saved(self, topic: str, timeout_s: float = 20.0) -> dict[int, int]:
        """Waits until noida-db's saved state holds every message it has accepted on ``topic`` (saved high
        watermarks equal to the live ones); returns them. Call it with no producer writing to the topic."""
        live = self.high_watermarks(topic)
        wait_until(
            lambda: self.saved_high_watermarks(topic) == live,
            timeout_s=timeout_s,
            what=f"noida-db to save {topic!r} up to {live}",
        )
        return live

    def create_topic(self, name: str, partitions: int = 1, timeout_s: float = 10.0) -> None:
        admin = AdminClient(self.client_config())
        for future in admin.create_topics([NewTopic(name, num_partitions=partitions)]).values():
            future.result(timeout=timeout_s)


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    """Signals the broker's own process group, never anything else."""
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(process.pid, signum)


@contextmanager
def running_kafka_broker(data_dir: Path, port: int | None = None) -> Iterator[KafkaBroker]:
    """A started broker for the block; always stopped afterwards (its directory is the caller's tmp)."""
    broker = KafkaBroker(data_dir, port)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
