"""ClickHouse access for the pipeline, identical SQL on embedded chDB and on a ClickHouse server.

The DSN decides the engine: ``chdb:///<dir>`` opens the embedded engine in-process (through
clickhouse-connect's chDB backend), ``http(s)://user:password@host:port/database`` talks to a server or
cluster. Everything above this module only sees a clickhouse-connect client inside ``session()``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from trace_summaries.store.embedded_lock import DirectoryLock

EVENT_COLUMNS = ("uuid", "event", "properties", "timestamp", "team_id", "distinct_id")
_SCHEMA_FILES = ("events.sql",)


# Per process: which DSNs have had their DDL applied, and one lock object per embedded directory.
_schema_ready: set[str] = set()
_schema_guard = threading.Lock()
_embedded_locks: dict[Path, DirectoryLock] = {}


class StoreError(RuntimeError):
    """The store cannot be reached or used; the message never contains credentials."""


@dataclass(frozen=True, slots=True)
class EventRow:
    """One row of the ``events`` table as the pipeline writes it (properties already JSON-encoded)."""

    uuid: str
    event: str
    properties: str
    timestamp: datetime
    team_id: int
    distinct_id: str

    def as_tuple(self) -> tuple[Any, ...]:
        return (self.uuid, self.event, self.properties, self.timestamp, self.team_id, self.distinct_id)


def redact_dsn(dsn: str) -> str:
    """The DSN with any password removed, for logs and error messages."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class TraceStore:
    """A handle on the trace store; cheap to create, opens connections only inside ``session()``."""

    def __init__(self, dsn: str) -> None:
        if dsn.startswith("chdb://"):
            self.embedded_dir: Path | None = Path(dsn.removeprefix("chdb://")).expanduser().resolve()
        elif dsn.startswith(("http://", "https://")):
            self.embedded_dir = None
        else:
            raise StoreError(
                f"unsupported ClickHouse DSN {redact_dsn(dsn)!r}: expected chdb:///<dir> or http(s)://host:port"
            )
        self.dsn = dsn

    @property
    def is_embedded(self) -> bool:
        return self.embedded_dir is not None

    def describe(self) -> str:
        return redact_dsn(self.dsn)

    @contextmanager
    def session(self) -> Iterator[Client]:
        """A client valid for the block; on the embedded engine the block holds the directory lock."""
        if self.embedded_dir is None:
            client = self._connect(self.dsn)
            try:
                self._ensure_schema(client)
                yield client
            finally:
                client.close()
            return
        lock = _embedded_locks.setdefault(self.embedded_dir, DirectoryLock(self.embedded_dir))
        with lock as outermost:
            if outermost:
                self.embedded_dir.mkdir(parents=True, exist_ok=True)
                _EmbeddedClients.current = self._connect(f"chdb://{self.embedded_dir}")
            client = _EmbeddedClients.current
            assert client is not None
            try:
                self._ensure_schema(client)
                yield client
            finally:
                if outermost:
                    _EmbeddedClients.current = None
                    client.close()

    def ensure_schema(self) -> None:
        with self.session():
            pass

    def insert_events(self, rows: Sequence[EventRow]) -> int:
        if not rows:
            return 0
        with self.session() as client:
            client.insert("events", [row.as_tuple() for row in rows], column_names=list(EVENT_COLUMNS))
        return len(rows)

    def _ensure_schema(self, client: Client) -> None:
        if self.dsn in _schema_ready:
            return
        with _schema_guard:
            if self.dsn in _schema_ready:
                return
            for name in _SCHEMA_FILES:
                client.command(resources.files("trace_summaries.store").joinpath("sql", name).read_text())
            _schema_ready.add(self.dsn)

    def _connect(self, dsn: str) -> Client:
        try:
            return clickhouse_connect.get_client(dsn=dsn)
        except Exception as exc:  # the driver's own errors vary by engine; one clear error for callers
            raise StoreError(
                f"cannot connect to ClickHouse at {redact_dsn(dsn)}: {type(exc).__name__}"
            ) from exc


class _EmbeddedClients:
    """The open embedded client of this process; guarded by the process-wide lock in embedded_lock."""

    current: Client | None = None
