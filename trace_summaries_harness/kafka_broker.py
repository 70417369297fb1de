"""A real Kafka-protocol broker (noida-db) for tests, on a free loopback port and a temporary directory.

noida-db's console script (in the venv's bin dir) is a Python wrapper that runs the packaged binary as a
child and dies at once on SIGTERM while the binary is still saving and holding the port. So the binary the
wrapper would run is started directly: ``wait()`` then means "the broker is gone and its data saved". It
runs in its own session so a stop signals exactly its process group. Stopping keeps the data directory
(noida-db saves on SIGTERM), so ``restart`` brings back the same topics, messages and committed offsets on
the same port.
"""

from __future__ import annotations

import contextlib
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

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from trace_summaries_harness.ports import free_port


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
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait(timeout=timeout_s)

    def restart(self) -> None:
        self.stop()
        self.start()

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
