"""ClickHouse access for the pipeline, identical SQL on embedded chDB and on a ClickHouse server.

The DSN decides the engine: ``chdb:///<dir>`` opens the embedded engine in-process (through
clickhouse-connect's chDB backend), ``http(s)://user:password@host:port/database`` talks to a server or
cluster. Everything above this module only sees a clickhouse-connect client inside ``session()``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, DatabaseError, OperationalError

from trace_summaries.config import StoreConfig, load
from trace_summaries.store.embedded_lock import DirectoryLock

logger = logging.getLogger(__name__)

EVENT_COLUMNS = ("uuid", "event", "properties", "timestamp", "team_id", "distinct_id")


def as_utc(value: datetime) -> datetime:
    """ClickHouse drivers return naive datetimes for UTC columns; every datetime handed on is aware UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_SCHEMA_FILES = ("events.sql",)


# Per process: which DSNs have had their DDL applied, and one lock object per embedded directory.
_schema_ready: set[str] = set()
_schema_guard = threading.Lock()
_embedded_locks: dict[Path, DirectoryLock] = {}

# Opening a session is retried when the failure can pass: the server unreachable, dropping connections,
# answering 429/503/504 (clickhouse-connect raises OperationalError for all of these), or reporting one of
# these transient conditions. Anything else (bad credentials, unknown database, a bad DSN) fails at once.
_TRANSIENT_SERVER_CODES = frozenset(
    {
        159,  # TIMEOUT_EXCEEDED
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        203,  # NO_FREE_CONNECTION
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY
        425,  # SYSTEM_ERROR
        999,  # KEEPER_EXCEPTION
    }
)
_MAX_CONNECT_BACKOFF_S = 30.0
# Driver messages can be long (a whole server response); errors keep the start.
_MAX_DRIVER_MESSAGE_CHARS = 300


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

    def __init__(
        self,
        dsn: str,
        *,
        connect_attempts: int | None = None,
        connect_backoff_s: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``connect_attempts`` and ``connect_backoff_s`` (the first wait; it doubles, capped at 30 s)
        default to ``TRACE_SUMMARIES_CLICKHOUSE_CONNECT_ATTEMPTS`` / ``..._CONNECT_BACKOFF_MS``."""
        if connect_attempts is None or connect_backoff_s is None:
            config = load(StoreConfig)
            connect_attempts = (
                config.clickhouse_connect_attempts if connect_attempts is None else connect_attempts
            )
            connect_backoff_s = config.connect_backoff_s if connect_backoff_s is None else connect_backoff_s
        self.connect_attempts = connect_attempts
        self.connect_backoff_s = connect_backoff_s
        if self.connect_attempts < 1 or self.connect_backoff_s < 0:
            raise ValueError("connect_attempts must be at least 1 and connect_backoff_s not negative")
        self._sleep = sleep
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
        """A client valid for the block; on the embedded engine the block holds the directory lock.

        Sessions nest: inside an open session of the same store (and thread), a session reuses its client,
        so a step can hold one connection across many partitions while each partition still gets its own
        ``StoreError``.

        Opening the session (connect and schema probe) is retried with backoff while the failure is
        transient; then, and for any driver error raised inside the block, a ``StoreError`` says which store
        failed and how, without credentials. A statement is never retried here: only the caller knows
        whether its unit of work can run twice.
        """
        if self.embedded_dir is None:
            outer = _http_clients.open.get(self.dsn)
            if outer is None:
                _http_clients.open[self.dsn] = self._open(self.dsn)
            client = _http_clients.open[self.dsn]
            try:
                yield client
            except ClickHouseError as exc:
                raise StoreError(self._query_failure(exc)) from exc
            finally:
                if outer is None:
                    del _http_clients.open[self.dsn]
                    client.close()
            return
        lock = _embedded_locks.setdefault(self.embedded_dir, DirectoryLock(self.embedded_dir))
        with lock as outermost:
            if outermost:
                self.embedded_dir.mkdir(parents=True, exist_ok=True)
                _EmbeddedClients.current = self._open(f"chdb://{self.embedded_dir}")
            current = _EmbeddedClients.current
            assert current is not None
            client = current
            try:
                if not outermost:
                    self._ensure_schema(client)
                yield client
            except ClickHouseError as exc:
                raise StoreError(self._query_failure(exc)) from exc
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

    def _open(self, dsn: str) -> Client:
        """A connected client with the schema in place, retrying transient failures with backoff."""
        attempt = 0
        while True:
            attempt += 1
            client: Client | None = None
            try:
                client = clickhouse_connect.get_client(dsn=dsn)
                self._ensure_schema(client)
                return client
            except Exception as exc:  # the driver's own errors vary by engine; one clear error for callers
                if client is not None:
                    client.close()
                if isinstance(exc, ImportError) and self.embedded_dir is not None:
                    # The engine is an optional extra: production images talk to a server and leave it out.
                    raise StoreError(
                        f"the embedded ClickHouse engine for {self.describe()} is not installed: install "
                        f"trace-summaries[embedded], or set TRACE_SUMMARIES_CLICKHOUSE_DSN to a ClickHouse "
                        f"server (http(s)://user:password@host:port/database)"
                    ) from exc
                if not _transient(exc) or attempt >= self.connect_attempts:
                    tries = f" after {attempt} attempts" if attempt > 1 else ""
                    raise StoreError(
                        self._failure(f"cannot connect to ClickHouse at {self.describe()}{tries}", exc)
                    ) from exc
                wait = min(_MAX_CONNECT_BACKOFF_S, self.connect_backoff_s * 2 ** (attempt - 1))
                logger.warning(
                    "ClickHouse at %s not reachable (attempt %d of %d: %s); retrying in %.1fs",
                    self.describe(),
                    attempt,
                    self.connect_attempts,
                    type(exc).__name__,
                    wait,
                )
                self._sleep(wait)

    def _query_failure(self, exc: BaseException) -> str:
        return self._failure(f"query to ClickHouse at {self.describe()} failed", exc)

    def _failure(self, what: str, exc: BaseException) -> str:
        """``<what>: <driver error type>: <its message>``, with any trace of the password removed."""
        detail = " ".join(str(exc).split())[:_MAX_DRIVER_MESSAGE_CHARS]
        message = f"{what}: {type(exc).__name__}"
        return _scrub_password(f"{message}: {detail}" if detail else message, self.dsn)


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DatabaseError) and getattr(exc, "code", None) in _TRANSIENT_SERVER_CODES


def _scrub_password(text: str, dsn: str) -> str:
    """``text`` without the DSN's password in any spelling (as given, URL-decoded, URL-encoded)."""
    password = urlsplit(dsn).password
    if not password:
        return text
    for spelling in {password, unquote(password), quote(unquote(password), safe="")}:
        if spelling:
            text = text.replace(spelling, "***")
    return text


class _HttpClients(threading.local):
    """The open server client of each DSN in this thread, for nested sessions."""

    def __init__(self) -> None:
        self.open: dict[str, Client] = {}


_http_clients = _HttpClients()


class _EmbeddedClients:
    """The open embedded client of this process; guarded by the process-wide lock in embedded_lock."""

    current: Client | None = None
