"""A ClickHouse HTTP interface over the chDB engine, so tests exercise the production client path for real.

Production talks to ClickHouse through clickhouse-connect's HTTP client, but no modern ClickHouse server can
be installed here. chDB *is* the ClickHouse engine (same SQL, same formats, same errors), so this module puts
a small HTTP front on it that speaks the parts of the HTTP interface the unmodified clickhouse-connect
client uses. The protocol details follow ClickHouse's own ``src/Server/HTTPHandler.cpp`` and
clickhouse-connect 1.12's ``_backend/httpcommon.py`` / ``http_sync.py`` rather than guesses:

* the query is the ``query`` URL parameter, a line break, then the (possibly ``Content-Encoding``-compressed,
  possibly chunked) request body; for ``multipart/form-data`` requests (large bind parameters) the query
  and the ``param_*`` values come from the form instead and the body is not appended;
* ``param_<name>`` are server-side ``{name:Type}`` parameters, handed to chDB verbatim (same escaped-text
  encoding as the HTTP interface); ``database``, ``default_format``, ``session_id``, ``session_timeout``,
  ``session_check``, ``close_session``, ``query_id``, ``wait_end_of_query``, ``buffer_size``,
  ``compress``, ``decompress``, ``client_protocol_version``, ``role``, ``quota_key``, ``user``, ``password``,
  ``stacktrace`` are reserved, and every other URL parameter is a setting for this query only (applied
  with ``SET`` on the session's chDB connection and restored afterwards, as a query context would);
* ``INSERT ... FORMAT <fmt>`` / ``INSERT ... VALUES`` stream their data (the rest of the body) through chDB's
  streaming inserter, so Native/RowBinary/CSV bodies of any size work; everything else runs through
  ``Connection.query`` with the requested output format, so result bytes are the engine's own;
* responses carry ``X-ClickHouse-Query-Id``, ``X-ClickHouse-Summary``, ``X-ClickHouse-Server-Display-Name``,
  and for result-producing statements ``X-ClickHouse-Format`` and ``X-ClickHouse-Timezone``; with
  ``enable_http_compression=1`` the body is compressed with the method ClickHouse would pick from
  ``Accept-Encoding`` (zstd, br, lz4, gzip, deflate, in that order of preference);
* errors return the status ClickHouse maps the error to (500 by default), ``X-ClickHouse-Exception-Code``
  and the engine's ``Code: N. DB::Exception: ...`` text, so the client raises ``DatabaseError`` with the
  real code;
  bad credentials get exception code 516 (AUTHENTICATION_FAILED) with HTTP 403, as a real server answers;
* ``session_id`` maps to its own chDB connection (chDB keeps ``SET``/``USE`` state per connection), expiring
  after ``session_timeout`` seconds (default 60) of inactivity (and beyond 512 sessions, oldest first).

Not emulated: the ``compress``/``decompress`` native-compression framing (rejected with NOT_IMPLEMENTED, the
client does not use it by default), ``client_protocol_version`` (ignored, as a proxy that strips it would; the
client then falls back to protocol 0), progress headers, external data tables, readonly-for-GET.

chDB opens one data directory per process and the test process uses chDB itself, so the front always runs
as its own process: ``python -m trace_summaries_harness.clickhouse_http --data-dir DIR --port PORT``.
Engine access is serialized with one lock; the HTTP server is threaded. Test hooks (never part of ClickHouse):
``GET /_test/queries`` returns every statement received as JSON, ``DELETE /_test/queries`` clears that log,
``POST /_test/fail`` with ``{"mode": "down" | "error" | "off"}`` injects faults (``down`` drops every
connection without answering, ``error`` answers every query with an exception; optional ``code`` and
``status``). ``clickhouse_http_server()`` starts and stops such a process for a test.

Finer faults, for tests that must hit one statement of a unit of work (e.g. the INSERT after a DELETE):
``match`` limits a fault to statements containing that text (case-insensitive; an INSERT is matched
without its data), ``count`` to the next N requests it applies to (then the fault switches itself off), and
the ``delay`` mode holds matching statements for ``seconds`` before running them, or until the fault is
changed. A held statement whose client disconnects meanwhile (a killed process) is abandoned, not run, and
logged with code 394 (QUERY_WAS_CANCELLED). ``GET /_test/fail`` reports the fault, how many requests it has
caught since it was set (``applied``) and how many it is holding or still running (``held``).
"""

from __future__ import annotations

import argparse
import base64
import email.parser
import email.policy
import gzip
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
import urllib.request
import uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, urlsplit

from trace_summaries_harness.ports import reserve_port, stop_listening, wait_until

FaultMode = Literal["off", "down", "error", "delay"]

# ----------------------------------------------------------------------------------------------------------
# Protocol constants (ClickHouse src/Server/HTTPHandler.cpp, exceptionCodeToHTTPStatus.cpp)
# ----------------------------------------------------------------------------------------------------------

# URL parameters that are not settings; ``query`` and ``param_*`` are handled separately.
_RESERVED_PARAMS = frozenset(
    {
        "compress",
        "decompress",
        "user",
        "password",
        "quota_key",
        "query_id",
        "stacktrace",
        "role",
        "buffer_size",
        "wait_end_of_query",
        "session_id",
        "session_timeout",
        "session_check",
        "client_protocol_version",
        "close_session",
        "database",
        "default_format",
    }
)
_PARAM_PREFIX = "param_"
_DEFAULT_SESSION_TIMEOUT_S = 60
_MAX_SESSION_TIMEOUT_S = 3600
# clickhouse-connect gives every client its own session id and TraceStore opens a client per unit of work,
# so idle sessions pile up until they time out; past this many the least recently used one is dropped.
_MAX_SESSIONS = 512

# The HTTP status ClickHouse answers for an exception, keyed by error name (as in the engine's messages).
_STATUS_BY_ERROR_NAME: dict[str, int] = {
    "REQUIRED_PASSWORD": 401,
    **dict.fromkeys(
        ("UNKNOWN_USER", "WRONG_PASSWORD", "AUTHENTICATION_FAILED", "SET_NON_GRANTED_ROLE", "ACCESS_DENIED"),
        403,
    ),
    **dict.fromkeys(
        (
            "BAD_ARGUMENTS",
            "CANNOT_COMPILE_REGEXP",
            "CANNOT_PARSE_TEXT",
            "CANNOT_PARSE_ESCAPE_SEQUENCE",
            "CANNOT_PARSE_QUOTED_STRING",
            "CANNOT_PARSE_DATE",
            "CANNOT_PARSE_DATETIME",
            "CANNOT_PARSE_NUMBER",
            "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING",
            "CANNOT_PARSE_IPV4",
            "CANNOT_PARSE_IPV6",
            "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
            "CANNOT_PARSE_UUID",
            "DUPLICATE_COLUMN",
            "ILLEGAL_COLUMN",
            "UNKNOWN_ELEMENT_IN_AST",
            "UNKNOWN_TYPE_OF_AST_NODE",
            "THERE_IS_NO_COLUMN",
            "TOO_DEEP_AST",
            "TOO_BIG_AST",
            "UNEXPECTED_AST_STRUCTURE",
            "SYNTAX_ERROR",
            "INCORRECT_DATA",
            "TYPE_MISMATCH",
            "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
        ),
        400,
    ),
    **dict.fromkeys(
        (
            "UNKNOWN_TABLE",
            "UNKNOWN_FUNCTION",
            "UNKNOWN_IDENTIFIER",
            "UNKNOWN_TYPE",
            "UNKNOWN_STORAGE",
            "UNKNOWN_DATABASE",
            "UNKNOWN_SETTING",
            "UNKNOWN_DIRECTION_OF_SORTING",
            "UNKNOWN_AGGREGATE_FUNCTION",
            "UNKNOWN_FORMAT",
            "UNKNOWN_DATABASE_ENGINE",
            "UNKNOWN_TYPE_OF_QUERY",
            "UNKNOWN_ROLE",
        ),
        404,
    ),
    "QUERY_IS_TOO_LARGE": 413,
    "NOT_IMPLEMENTED": 501,
    "SOCKET_TIMEOUT": 503,
    "CANNOT_OPEN_FILE": 503,
    "CANNOT_SCHEDULE_TASK": 503,
    "HTTP_LENGTH_REQUIRED": 411,
    "TIMEOUT_EXCEEDED": 408,
    "UNSUPPORTED_MEDIA_TYPE": 415,
}

# Error codes this front raises itself (values from ClickHouse src/Common/ErrorCodes.cpp).
_SYNTAX_ERROR = 62
_NOT_IMPLEMENTED = 48
_UNKNOWN_SETTING = 115
_SESSION_NOT_FOUND = 372
_INVALID_SESSION_TIMEOUT = 374
_AUTHENTICATION_FAILED = 516
_STD_EXCEPTION = 1001
_QUERY_WAS_CANCELLED = 394
# How often a held (``delay``) statement checks whether its client is still connected.
_HOLD_POLL_S = 0.05
_UNKNOWN_EXCEPTION = 1002

_SETTING_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ERROR_CODE_RE = re.compile(r"Code: (\d+)\.")
_ERROR_NAME_RE = re.compile(r"\(([A-Z][A-Z0-9_]+)\)\s*$")
# String literals, quoted identifiers and comments: masked out before looking for keywords.
_LITERALS_RE = re.compile(
    r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.)*\"|`(?:[^`\\]|\\.)*`|--[^\n]*|#[^\n]*|/\*.*?\*/", re.DOTALL
)
_INSERT_RE = re.compile(r"\s*INSERT\s+INTO\b", re.IGNORECASE)
_INSERT_DATA_RE = re.compile(r"\bFORMAT\s+([A-Za-z][A-Za-z0-9_]*)|\bVALUES\b", re.IGNORECASE)
_INSERT_SELECT_RE = re.compile(r"\b(?:SELECT|WITH)\b", re.IGNORECASE)
_FORMAT_RE = re.compile(r"\bFORMAT\s+([A-Za-z][A-Za-z0-9_]*)", re.IGNORECASE)
_FIRST_WORD_RE = re.compile(r"[\s(]*([A-Za-z]+)")
_RESULT_STATEMENTS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN", "CHECK"})
_INSERT_HEAD_SCAN_BYTES = 64 * 1024


class ClickHouseError(Exception):
    """An exception as ClickHouse reports it: numeric code plus the ``Code: N. DB::Exception: ...`` text."""

    def __init__(self, code: int, message: str, name: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.name = name

    @classmethod
    def own(cls, code: int, name: str, text: str) -> ClickHouseError:
        """An error raised by the front itself, worded like the engine's."""
        return cls(code, f"Code: {code}. DB::Exception: {text}. ({name})", name)

    @classmethod
    def from_engine(cls, exc: BaseException) -> ClickHouseError:
        text = str(exc).strip()
        start = text.find("Code: ")
        if start > 0:
            text = text[start:]
        code_match = _ERROR_CODE_RE.search(text)
        name_match = _ERROR_NAME_RE.search(text)
        code = int(code_match.group(1)) if code_match else _UNKNOWN_EXCEPTION
        return cls(code, text or type(exc).__name__, name_match.group(1) if name_match else None)

    @property
    def http_status(self) -> int:
        return _STATUS_BY_ERROR_NAME.get(self.name or "", 500)


class InjectedFault(ClickHouseError):
    """The ``error`` fault: a real-looking exception with the status the test asked for."""

    def __init__(self, code: int, name: str, status: int) -> None:
        message = f"Code: {code}. DB::Exception: Fault injected by the test front. ({name})"
        super().__init__(code, message, name)
        self.status = status

    @property
    def http_status(self) -> int:
        return self.status


# ----------------------------------------------------------------------------------------------------------
# Request bodies: chunked transfer, Content-Encoding, multipart forms
# ----------------------------------------------------------------------------------------------------------


def _decode_request_body(data: bytes, encoding: str) -> bytes:
    """Undoes the request's ``Content-Encoding``; clickhouse-connect compresses insert bodies by default.

    The client compresses block by block, so lz4 and zstd bodies are several concatenated frames.
    """
    encoding = encoding.strip().lower()
    if not encoding or encoding == "identity" or not data:
        return data
    if encoding == "gzip":
        return gzip.decompress(data)
    if encoding == "deflate":
        return zlib.decompress(data)
    if encoding == "zstd":
        from backports import zstd  # a clickhouse-connect dependency on Python < 3.14

        return zstd.decompress(data)
    if encoding == "lz4":
        import lz4.frame  # a clickhouse-connect dependency

        out = bytearray()
        rest = data
        while rest:
            decompressor = lz4.frame.LZ4FrameDecompressor()
            out += decompressor.decompress(rest)
            rest = decompressor.unused_data if decompressor.eof else b""
        return bytes(out)
    if encoding == "br":
        import brotli  # optional, only if a client sends it

        return bytes(brotli.decompress(data))
    raise ClickHouseError.own(_NOT_IMPLEMENTED, "NOT_IMPLEMENTED", f"Unknown compression method {encoding}")


def _response_codecs() -> dict[str, Callable[[bytes], bytes]]:
    """The response encodings available here, in ClickHouse's order of preference."""
    codecs: dict[str, Callable[[bytes], bytes]] = {}
    try:
        from backports import zstd

        codecs["zstd"] = zstd.compress
    except ImportError:
        pass
    try:
        import brotli

        codecs["br"] = brotli.compress
    except ImportError:
        pass
    try:
        import lz4.frame

        codecs["lz4"] = lz4.frame.compress
    except ImportError:
        pass
    codecs["gzip"] = gzip.compress
    codecs["deflate"] = zlib.compress
    return codecs


_RESPONSE_CODECS = _response_codecs()


def _choose_response_encoding(accept_encoding: str) -> str | None:
    """ClickHouse's chooseHTTPCompressionMethod: a substring match, first hit in its preference order."""
    return next((name for name in _RESPONSE_CODECS if name in accept_encoding), None)


def _parse_multipart(content_type: str, body: bytes) -> dict[str, str]:
    """Form fields of a ``multipart/form-data`` body (how the client sends large bind parameters)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if part.get_filename():
            raise ClickHouseError.own(
                _NOT_IMPLEMENTED,
                "NOT_IMPLEMENTED",
                "External data tables are not supported by the test front",
            )
        if isinstance(name, str):
            payload = part.get_payload(decode=True)
            fields[name] = payload.decode() if isinstance(payload, bytes) else str(payload or "")
    return fields


# ----------------------------------------------------------------------------------------------------------
# Statements
# ----------------------------------------------------------------------------------------------------------


def _mask_literals(text: str) -> str:
    """The text with literals and comments blanked (same length), so keyword searches skip them."""
    return _LITERALS_RE.sub(lambda match: " " * len(match.group(0)), text)


@dataclass(frozen=True)
class _InsertWithData:
    """``INSERT INTO t (cols) [SETTINGS ...]`` plus the input format and the data after the statement."""

    head: str
    fmt: str
    data: bytes

    @property
    def statement(self) -> str:
        return f"{self.head} FORMAT {self.fmt}"


def _split_insert(full: bytes) -> _InsertWithData | None:
    """Separates an INSERT's data from its statement, as ClickHouse's ParserInsertQuery does.

    Data starts after ``VALUES``, or after ``FORMAT <name>``, its trailing blanks and at most one line break.
    ``INSERT ... SELECT`` and anything that is not an INSERT returns None (it runs as a plain query).
    """
    head_text = full[:_INSERT_HEAD_SCAN_BYTES].decode("latin-1")  # 1:1 with bytes, so offsets stay valid
    masked = _mask_literals(head_text)
    if not _INSERT_RE.match(masked):
        return None
    keyword = _INSERT_DATA_RE.search(masked)
    if keyword is None or _INSERT_SELECT_RE.search(masked, 0, keyword.start()):
        return None
    head = full[: keyword.start()].decode().strip()
    if keyword.group(1) is None:
        return _InsertWithData(head, "Values", full[keyword.end() :])
    pos = keyword.end()
    while pos < len(full) and full[pos] in b" \t\f":
        pos += 1
    if full[pos : pos + 1] == b"\r":
        pos += 1
    if full[pos : pos + 1] == b"\n":
        pos += 1
    return _InsertWithData(head, keyword.group(1), full[pos:])


def describe_statement(query: bytes) -> str:
    """The statement as the query log shows it: an INSERT without its data."""
    insert = _split_insert(query)
    return insert.statement if insert is not None else query.decode(errors="replace").strip()


def _statement_shape(text: str) -> tuple[str, str | None]:
    """(first keyword, explicit output format) of a non-INSERT statement."""
    masked = _mask_literals(text)
    first = _FIRST_WORD_RE.match(masked)
    formats = _FORMAT_RE.findall(masked)
    return (first.group(1).upper() if first else "", formats[-1] if formats else None)


def _content_type(fmt: str) -> str:
    lowered = fmt.lower()
    if lowered.startswith(("tabseparated", "tsv")):
        return "text/tab-separated-values; charset=UTF-8"
    if lowered.startswith("csv"):
        return "text/csv; charset=UTF-8; header=absent"
    if lowered.startswith("json"):
        return "application/json; charset=UTF-8"
    if lowered in ("native", "parquet", "arrow", "arrowstream", "orc", "avro") or lowered.startswith(
        "rowbinary"
    ):
        return "application/octet-stream"
    return "text/plain; charset=UTF-8"


def _quote_value(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# ----------------------------------------------------------------------------------------------------------
# The engine: chDB connections per HTTP session, one lock
# ----------------------------------------------------------------------------------------------------------


@dataclass
class QueryRequest:
    """One HTTP query request, already authenticated and decoded."""

    query: bytes
    params: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    database: str | None = None
    default_format: str = "TabSeparated"
    session_id: str | None = None
    session_timeout_s: int = _DEFAULT_SESSION_TIMEOUT_S
    session_check: bool = False
    close_session: bool = False


@dataclass
class QueryOutcome:
    body: bytes
    fmt: str | None
    summary: dict[str, str]
    statement: str


@dataclass
class _Session:
    connection: Any
    timeout_s: int
    last_used: float


class Engine:
    """The chDB engine of one data directory; every call holds ``self.lock``."""

    def __init__(self, data_dir: Path) -> None:
        import chdb  # imported here: only the front's own process opens the engine

        self._connect: Callable[[str], Any] = chdb.connect
        self._path = str(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        # Held for the process lifetime: the engine stays open while sessions come and go.
        self._anchor = self._connect(self._path)
        probe = self._anchor.query("SELECT version(), timezone()", "TabSeparated")
        version, timezone = probe.bytes().decode().split()
        self.version = version
        self.timezone = timezone
        self._sessions: dict[str, _Session] = {}
        names = self._anchor.query(
            "SELECT number, errorCodeToName(number) FROM numbers(2000) WHERE errorCodeToName(number) != ''",
            "TabSeparated",
        )
        self.error_names = dict(line.split("\t") for line in names.bytes().decode().splitlines())
        # ClickHouse 26 compresses responses by default (the client reads this from system.settings too).
        default = self._anchor.query("SELECT getSetting('enable_http_compression')", "TabSeparated")
        self.http_compression_default = default.bytes().decode().strip()

    def close(self) -> None:
        with self.lock:
            for session in self._sessions.values():
                session.connection.close()
            self._sessions.clear()
            self._anchor.close()

    def execute(self, request: QueryRequest) -> QueryOutcome:
        with self.lock:
            now = time.monotonic()
            self._expire_sessions(now)
            if request.session_id is None:
                connection = self._connect(self._path)
                try:
                    return self._run(connection, request, restore=False)
                finally:
                    connection.close()
            session = self._sessions.get(request.session_id)
            if session is None:
                if request.session_check:
                    raise ClickHouseError.own(
                        _SESSION_NOT_FOUND, "SESSION_NOT_FOUND", f"Session {request.session_id} not found"
                    )
                session = _Session(self._connect(self._path), request.session_timeout_s, now)
                self._sessions[request.session_id] = session
            session.timeout_s = request.session_timeout_s
            try:
                return self._run(session.connection, request, restore=True)
            finally:
                session.last_used = time.monotonic()
                if request.close_session and self._sessions.pop(request.session_id, None) is not None:
                    session.connection.close()

    def _expire_sessions(self, now: float) -> None:
        by_age = sorted(self._sessions.items(), key=lambda item: item[1].last_used)
        surplus = len(by_age) - _MAX_SESSIONS + 1
        for index, (session_id, session) in enumerate(by_age):
            if index < surplus or now - session.last_used > session.timeout_s:
                del self._sessions[session_id]
                session.connection.close()

    def _run(self, connection: Any, request: QueryRequest, *, restore: bool) -> QueryOutcome:
        """Runs one statement with the request's database and settings, then puts the session back."""
        for name in request.settings:
            if not _SETTING_NAME_RE.match(name):
                raise ClickHouseError.own(_UNKNOWN_SETTING, "UNKNOWN_SETTING", f"Unknown setting '{name}'")
        previous_db, previous = self._snapshot(connection, request) if restore else (None, {})
        applied: list[str] = []
        keep_database = False
        try:
            if request.database and request.database != previous_db:
                self._engine_call(
                    connection.query, f"USE {_quote_identifier(request.database)}", "TabSeparated"
                )
            for name, value in request.settings.items():
                self._engine_call(connection.query, f"SET {name} = {_quote_value(value)}", "TabSeparated")
                applied.append(name)
            outcome = self._statement(connection, request)
            keep_database = outcome.statement.lstrip().upper().startswith("USE ")
            return outcome
        finally:
            if restore:
                self._restore(
                    connection, applied, previous, None if keep_database else previous_db, request.database
                )

    def _snapshot(self, connection: Any, request: QueryRequest) -> tuple[str, dict[str, tuple[str, bool]]]:
        names = ", ".join(_quote_value(name) for name in request.settings) or "''"
        row = json.loads(
            self._engine_call(
                connection.query,
                "SELECT currentDatabase() AS db, groupArray([name, value, toString(changed)]) AS settings "
                f"FROM system.settings WHERE name IN ({names})",
                "JSONEachRow",
            ).bytes()
        )
        return row["db"], {name: (value, changed == "1") for name, value, changed in row["settings"]}

    def _restore(
        self,
        connection: Any,
        applied: list[str],
        previous: dict[str, tuple[str, bool]],
        previous_db: str | None,
        request_db: str | None,
    ) -> None:
        """Undoes per-query settings on a session connection; a session that cannot be restored is dropped."""
        try:
            for name in applied:
                value, changed = previous.get(name, ("", False))
                literal = _quote_value(value) if changed else "DEFAULT"
                connection.query(f"SET {name} = {literal}", "TabSeparated")
            if previous_db and request_db and previous_db != request_db:
                connection.query(f"USE {_quote_identifier(previous_db)}", "TabSeparated")
        except Exception:  # e.g. the query set readonly=1: the session's state is no longer trustworthy
            for session_id, session in list(self._sessions.items()):
                if session.connection is connection:
                    del self._sessions[session_id]
                    connection.close()

    def _statement(self, connection: Any, request: QueryRequest) -> QueryOutcome:
        if not request.query.strip():
            raise ClickHouseError.own(_SYNTAX_ERROR, "SYNTAX_ERROR", "Empty query")
        insert = _split_insert(request.query)
        if insert is not None:
            inserter = self._engine_call(connection.send_insert, insert.head, insert.fmt)
            try:
                if insert.data:
                    self._engine_call(inserter.append, insert.data)
                result = self._engine_call(inserter.finish)
            except BaseException:
                with suppress(Exception):  # already finished, or failed inside the engine
                    inserter.cancel()
                raise
            summary = {
                "read_rows": str(result.rows_written),
                "read_bytes": str(result.bytes_written),
                "written_rows": str(result.rows_written),
                "written_bytes": str(result.bytes_written),
                "total_rows_to_read": "0",
                "result_rows": "0",
                "result_bytes": "0",
                "elapsed_ns": str(int(result.elapsed * 1e9)),
            }
            return QueryOutcome(b"", None, summary, insert.statement)
        text = request.query.decode(errors="replace")
        keyword, explicit_format = _statement_shape(text)
        result = self._engine_call(
            connection.query, request.query, request.default_format, params=request.params
        )
        body = result.bytes() or b""
        summary = {
            "read_rows": str(result.rows_read()),
            "read_bytes": str(result.bytes_read()),
            "written_rows": "0",
            "written_bytes": "0",
            "total_rows_to_read": str(result.rows_read()),
            "result_bytes": str(len(body)),
            "elapsed_ns": str(int(result.elapsed() * 1e9)),
        }
        fmt = (
            (explicit_format or request.default_format) if keyword in _RESULT_STATEMENTS else explicit_format
        )
        return QueryOutcome(body, fmt, summary, text.strip())

    @staticmethod
    def _engine_call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except ClickHouseError:
            raise
        except Exception as exc:  # chDB raises RuntimeError/ChdbError carrying the ClickHouse message
            raise ClickHouseError.from_engine(exc) from exc


def _quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


# ----------------------------------------------------------------------------------------------------------
# HTTP
# ----------------------------------------------------------------------------------------------------------


@dataclass
class FrontState:
    """Configuration and test hooks shared by all request threads."""

    engine: Engine
    user: str | None
    password: str | None
    display_name: str = field(default_factory=socket.gethostname)
    fault_mode: FaultMode = "off"
    fault_code: int = _UNKNOWN_EXCEPTION
    fault_status: int = 500
    log: list[dict[str, Any]] = field(default_factory=list)
    log_lock: threading.Lock = field(default_factory=threading.Lock)
    # Finer faults (see the module docstring): which statements, how many more, how long a delay holds.
    fault_match: str | None = None
    fault_remaining: int | None = None
    fault_seconds: float = 0.0
    fault_generation: int = 0
    faults_applied: int = 0
    held: int = 0
    fault_cond: threading.Condition = field(default_factory=threading.Condition)

    def record(self, entry: dict[str, Any]) -> None:
        with self.log_lock:
            self.log.append(entry)

    def set_fault(self, request: dict[str, Any]) -> FaultMode:
        mode = request.get("mode", "off")
        if mode not in ("off", "down", "error", "delay"):
            raise ValueError(f"unknown fault mode {mode!r}")
        match = request.get("match")
        count = request.get("count")
        if count is not None and int(count) < 1:
            raise ValueError("count must be at least 1")
        with self.fault_cond:
            self.fault_code = int(request.get("code", _UNKNOWN_EXCEPTION))
            self.fault_status = int(request.get("status", 500))
            self.fault_match = str(match) if match else None
            self.fault_remaining = int(count) if count is not None else None
            self.fault_seconds = float(request.get("seconds", 0.0))
            self.fault_mode = mode
            self.faults_applied = 0
            self.fault_generation += 1  # releases statements held by an earlier ``delay``
            self.fault_cond.notify_all()
        return mode

    def take_fault(self, statement: str | None) -> FaultMode:
        """The fault for this request (``off`` if none applies), counting it against ``count``.

        ``statement`` is None before the request is parsed: only a fault without ``match`` applies then.
        """
        with self.fault_cond:
            mode = self.fault_mode
            if mode == "off":
                return "off"
            if self.fault_match is not None and (
                statement is None or self.fault_match.lower() not in statement.lower()
            ):
                return "off"
            self.faults_applied += 1
            if self.fault_remaining is not None:
                self.fault_remaining -= 1
                if self.fault_remaining <= 0:
                    self.fault_mode, self.fault_match, self.fault_remaining = "off", None, None
            return mode

    def fault_report(self) -> dict[str, Any]:
        with self.fault_cond:
            return {
                "mode": self.fault_mode,
                "match": self.fault_match,
                "remaining": self.fault_remaining,
                "seconds": self.fault_seconds,
                "applied": self.faults_applied,
                "held": self.held,
            }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: FrontState

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client (or a "down" fault) dropped the connection
        super().handle_error(request, client_address)


class ClickHouseHTTPHandler(BaseHTTPRequestHandler):
    """One connection; HTTP/1.1 keep-alive, as the client's urllib3 pool expects."""

    protocol_version = "HTTP/1.1"
    server_version = "ClickHouseTestFront/1"
    timeout = 120
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the query log is the record; per-request access logs would only be noise

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    # -- dispatch -------------------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        state = self.server.state
        url = urlsplit(self.path)
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        if url.path.startswith("/_test/"):
            self._test_hook(url.path, body)
            return
        if state.fault_mode == "down" and state.fault_match is None and state.take_fault(None) == "down":
            self._drop_connection()
            return
        if url.path == "/ping":
            self._send(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
            return
        self._query(url.query, body)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return bytes(chunks)
                chunks += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _drop_connection(self) -> None:
        """The ``down`` fault: reset the connection without an answer, as a crashed server would."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- test hooks -----------------------------------------------------------------------------------------

    def _test_hook(self, path: str, body: bytes) -> None:
        state = self.server.state
        if path == "/_test/queries" and self.command == "GET":
            with state.log_lock:
                payload = json.dumps(state.log).encode()
            self._send(200, payload, {"Content-Type": "application/json"})
        elif path == "/_test/queries" and self.command == "DELETE":
            with state.log_lock:
                state.log.clear()
            self._send(200, b"{}", {"Content-Type": "application/json"})
        elif path == "/_test/fail" and self.command == "POST":
            try:
                mode = state.set_fault(json.loads(body or b"{}"))
            except (ValueError, AttributeError, TypeError) as exc:
                self._send(400, str(exc).encode(), {"Content-Type": "text/plain"})
                return
            self._send(200, json.dumps({"mode": mode}).encode(), {"Content-Type": "application/json"})
        elif path == "/_test/fail" and self.command == "GET":
            self._send(200, json.dumps(state.fault_report()).encode(), {"Content-Type": "application/json"})
        else:
            self._send(404, b"unknown test hook\n", {"Content-Type": "text/plain"})

    # -- queries --------------------------------------------------------------------------------------------

    def _query(self, url_query: str, body: bytes) -> None:
        state = self.server.state
        url_params = dict(parse_qsl(url_query, keep_blank_values=True))
        query_id = (
            url_params.get("query_id") or self.headers.get("X-ClickHouse-Query-Id") or str(uuid.uuid4())
        )
        headers = {"X-ClickHouse-Query-Id": query_id}
        entry: dict[str, Any] = {"query_id": query_id, "method": self.command}
        accept = self.headers.get("Accept-Encoding", "")
        response_encoding: str | None = None
        try:
            self._authenticate(url_params)
            request, response_encoding = self._parse_request(url_params, body, accept)
            entry.update(
                query=describe_statement(request.query),
                params=request.params,
                settings=request.settings,
                database=request.database,
                session_id=request.session_id,
                request_encoding=self.headers.get("Content-Encoding"),
                multipart=self.headers.get("Content-Type", "").startswith("multipart/form-data"),
                response_encoding=response_encoding,
            )
            if self.command == "GET" and not request.query.strip():
                self._send(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
                return
            fault = state.take_fault(entry["query"])
            if fault != "off":
                entry["fault"] = fault
            if fault == "error":
                name = state.engine.error_names.get(str(state.fault_code), "UNKNOWN_EXCEPTION")
                raise InjectedFault(state.fault_code, name, state.fault_status)
            if fault == "down":
                entry["error_code"] = None
                state.record(entry)
                self._drop_connection()
                return
            if fault == "delay":
                outcome = self._execute_held(request, entry)
                if outcome is None:
                    return
            else:
                outcome = state.engine.execute(request)
        except ClickHouseError as error:
            entry.setdefault("query", "")
            entry["error_code"] = error.code
            state.record(entry)
            self._send_error(error.http_status, error, headers, response_encoding)
            return
        except Exception as exc:  # a bug in the front: still answer like a server would
            traceback.print_exc()
            entry.setdefault("query", "")
            entry["error_code"] = _STD_EXCEPTION
            state.record(entry)
            failure = ClickHouseError.own(_STD_EXCEPTION, "STD_EXCEPTION", f"{type(exc).__name__}: {exc}")
            self._send_error(500, failure, headers, response_encoding)
            return
        entry["query"] = outcome.statement
        entry["error_code"] = None
        state.record(entry)
        headers["X-ClickHouse-Summary"] = json.dumps(outcome.summary, separators=(",", ":"))
        if outcome.fmt is not None:
            headers["X-ClickHouse-Format"] = outcome.fmt
            headers["X-ClickHouse-Timezone"] = (
                request.settings.get("session_timezone") or state.engine.timezone
            )
            headers["Content-Type"] = _content_type(outcome.fmt)
        else:
            headers["Content-Type"] = "text/plain; charset=UTF-8"
        self._send(200, outcome.body, headers, response_encoding)

    def _execute_held(self, request: QueryRequest, entry: dict[str, Any]) -> QueryOutcome | None:
        """The ``delay`` fault: hold, then run the statement, unless the client went away meanwhile.

        Counted in ``held`` until it has run (or been abandoned), so a test can wait for it to settle.
        """
        state = self.server.state
        with state.fault_cond:
            state.held += 1
            generation = state.fault_generation
        try:
            deadline = time.monotonic() + state.fault_seconds
            released = False
            while True:
                # Checked once more after the release: a client killed just before it is still gone.
                if self._client_gone():
                    entry["error_code"] = _QUERY_WAS_CANCELLED
                    entry["abandoned"] = True
                    state.record(entry)
                    self.close_connection = True
                    return None
                if released:
                    return state.engine.execute(request)
                remaining = deadline - time.monotonic()
                with state.fault_cond:
                    if remaining <= 0 or state.fault_generation != generation:
                        released = True
                    else:
                        state.fault_cond.wait(min(remaining, _HOLD_POLL_S))
        finally:
            with state.fault_cond:
                state.held -= 1
                state.fault_cond.notify_all()

    def _client_gone(self) -> bool:
        """True when the client closed its end (a killed process): readable, but nothing to read."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _authenticate(self, url_params: dict[str, str]) -> None:
        """Basic auth, ``X-ClickHouse-User``/``-Key`` headers or ``user``/``password`` parameters."""
        state = self.server.state
        user, password = "default", ""
        authorization = self.headers.get("Authorization", "")
        if authorization.lower().startswith("basic "):
            user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
        elif "X-ClickHouse-User" in self.headers:
            user, password = self.headers["X-ClickHouse-User"], self.headers.get("X-ClickHouse-Key", "")
        elif "user" in url_params:
            user, password = url_params["user"], url_params.get("password", "")
        if state.user is None:
            return  # no credentials configured: everyone is let in, as with a password-less default user
        if user != state.user or password != (state.password or ""):
            raise ClickHouseError.own(
                _AUTHENTICATION_FAILED,
                "AUTHENTICATION_FAILED",
                f"{user}: Authentication failed: password is incorrect, or there is no user with such name",
            )

    def _parse_request(
        self, url_params: dict[str, str], body: bytes, accept: str
    ) -> tuple[QueryRequest, str | None]:
        fields = dict(url_params)
        content_type = self.headers.get("Content-Type", "")
        if self.headers.get("Content-Encoding"):
            body = _decode_request_body(body, self.headers["Content-Encoding"])
        if content_type.startswith("multipart/form-data"):
            fields.update(_parse_multipart(content_type, body))
            query = fields.get("query", "").encode()
        else:
            query_param = url_params.get("query", "")
            query = (query_param + "\n").encode() + body if query_param else body
        if _truthy(fields.get("compress")) or _truthy(fields.get("decompress")):
            raise ClickHouseError.own(
                _NOT_IMPLEMENTED,
                "NOT_IMPLEMENTED",
                "compress/decompress framing is not supported by the test front",
            )
        params = {
            key[len(_PARAM_PREFIX) :]: value for key, value in fields.items() if key.startswith(_PARAM_PREFIX)
        }
        settings = {
            key: value
            for key, value in fields.items()
            if key and key != "query" and key not in _RESERVED_PARAMS and not key.startswith(_PARAM_PREFIX)
        }
        timeout_text = fields.get("session_timeout", str(_DEFAULT_SESSION_TIMEOUT_S))
        if not timeout_text.isdigit() or int(timeout_text) > _MAX_SESSION_TIMEOUT_S:
            raise ClickHouseError.own(
                _INVALID_SESSION_TIMEOUT,
                "INVALID_SESSION_TIMEOUT",
                f"Invalid session timeout: '{timeout_text}'",
            )
        request = QueryRequest(
            query=query,
            params=params,
            settings=settings,
            database=self.headers.get("X-ClickHouse-Database") or fields.get("database") or None,
            default_format=self.headers.get("X-ClickHouse-Format")
            or fields.get("default_format")
            or "TabSeparated",
            session_id=fields.get("session_id") or None,
            session_timeout_s=int(timeout_text),
            session_check=_truthy(fields.get("session_check")),
            close_session=_truthy(fields.get("close_session")),
        )
        compression = settings.get(
            "enable_http_compression", self.server.state.engine.http_compression_default
        )
        encoding = _choose_response_encoding(accept) if _truthy(compression) else None
        return request, encoding

    # -- responses ------------------------------------------------------------------------------------------

    def _send_error(
        self, status: int, error: ClickHouseError, headers: dict[str, str], encoding: str | None
    ) -> None:
        text = f"{error.message} (version {self.server.state.engine.version})\n"
        headers = {
            **headers,
            "X-ClickHouse-Exception-Code": str(error.code),
            "Content-Type": "text/plain; charset=UTF-8",
        }
        self._send(status, text.encode(), headers, encoding)

    def _send(self, status: int, body: bytes, headers: dict[str, str], encoding: str | None = None) -> None:
        if encoding is not None:
            body = _RESPONSE_CODECS[encoding](body)
            headers = {**headers, "Content-Encoding": encoding}
        self.send_response(status)
        self.send_header("X-ClickHouse-Server-Display-Name", self.server.state.display_name)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Keep-Alive", "timeout=10")
        self.end_headers()
        self.wfile.write(body)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true")


def serve(
    data_dir: Path,
    host: str,
    port: int,
    user: str | None,
    password: str | None,
    listen_fd: int | None = None,
) -> None:
    """Runs the front until SIGTERM/SIGINT, then closes the engine cleanly.

    It serves ``listen_fd`` if given (a socket bound by the harness, which holds the port: the front only
    listens on it, once the engine is open, and stops listening when it stops, as a server that binds and
    closes its own socket would), else it binds ``host:port`` itself (``port`` 0: a free port; the first line
    of output says which).
    """
    engine = Engine(data_dir)
    if listen_fd is None:
        httpd = _Server((host, port), ClickHouseHTTPHandler)
    else:
        listener = socket.socket(fileno=listen_fd)
        httpd = _Server(listener.getsockname(), ClickHouseHTTPHandler, bind_and_activate=False)
        httpd.socket.close()
        httpd.socket = listener
        httpd.server_activate()  # listen()
    bound = httpd.socket.getsockname()
    httpd.state = FrontState(engine=engine, user=user, password=password)

    def shutdown(signum: int, frame: object) -> None:
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    print(f"clickhouse http front (engine {engine.version}) on http://{bound[0]}:{bound[1]}", flush=True)
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        if listen_fd is not None:
            stop_listening(httpd.socket)  # the harness holds the socket: closing ours would not refuse
        httpd.server_close()
        engine.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0, help="default: a free port, printed once bound")
    parser.add_argument("--listen-fd", type=int, help="serve this inherited listening socket instead")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args(argv)
    password = args.password
    if password is None:
        password = os.environ.get("CLICKHOUSE_HTTP_FRONT_PASSWORD")
    serve(args.data_dir, args.host, args.port, args.user, password, args.listen_fd)


# ----------------------------------------------------------------------------------------------------------
# Test-side handle
# ----------------------------------------------------------------------------------------------------------

_REPO_ROOT = Path(__file__).resolve().parents[1]


class ClickHouseHTTPServer:
    """The front as a child process on a loopback port; ``stop``/``start`` keep the port and the data.

    Without a ``port``, this handle reserves a free one for its lifetime (``reserve_port``) and hands the
    child the bound socket itself, so no other process can take the port between its choice and the bind,
    nor while the front is stopped. The child listens on it once it can serve and stops listening when it
    stops, so connections are refused while it is down or starting, as with a server that binds its own
    port. ``close`` (or the end of ``clickhouse_http_server``) releases the port. With a ``port``, the child
    binds that port itself.
    """

    def __init__(
        self, data_dir: Path, user: str | None = None, password: str | None = None, port: int | None = None
    ) -> None:
        self.data_dir = data_dir
        self.user = user
        self.password = password
        self._listener = reserve_port() if port is None else None
        self.port = int(self._listener.getsockname()[1]) if self._listener is not None else int(port or 0)
        self.log_path = data_dir.parent / f"{data_dir.name}.http-front.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dsn(self) -> str:
        """What ``TraceStore``/``clickhouse_connect.get_client(dsn=...)`` take; credentials URL-quoted."""
        credentials = ""
        if self.user is not None:
            credentials = quote(self.user, safe="")
            if self.password:
                credentials += ":" + quote(self.password, safe="")
            credentials += "@"
        return f"http://{credentials}127.0.0.1:{self.port}/default"

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 60.0) -> None:
        if self.is_running:
            return
        command = [sys.executable, "-m", __name__, "--data-dir", str(self.data_dir), "--port", str(self.port)]
        inherited: tuple[int, ...] = ()
        if self._listener is not None:
            inherited = (self._listener.fileno(),)
            command += ["--listen-fd", str(self._listener.fileno())]
        if self.user is not None:
            command += ["--user", self.user]
        python_path = os.pathsep.join(filter(None, [str(_REPO_ROOT), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": python_path}
        if self.password is not None:
            env["CLICKHOUSE_HTTP_FRONT_PASSWORD"] = self.password  # kept out of the process list
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=_REPO_ROOT, pass_fds=inherited
            )
        try:
            wait_until(
                lambda: not self.is_running or self._ping(),
                timeout_s=timeout_s,
                what=f"ClickHouse HTTP front on {self.base_url}",
            )
            if not self.is_running:
                raise RuntimeError(f"the ClickHouse HTTP front exited early:\n{self.log_path.read_text()}")
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM (the front closes chDB cleanly), SIGKILL only if it does not exit in time; then the port
        refuses connections until ``start`` (it stays reserved)."""
        process, self._process = self._process, None
        try:
            if process is None or process.poll() is not None:
                return
            process.terminate()
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout_s)
        finally:
            if self._listener is not None:
                stop_listening(self._listener)  # if the front could not (SIGKILL)

    def close(self) -> None:
        """``stop``, and release the reserved port."""
        self.stop()
        if self._listener is not None:
            self._listener.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def queries(self) -> list[dict[str, Any]]:
        """Every statement received, oldest first: query, params, settings, session_id, error_code, ..."""
        result: list[dict[str, Any]] = json.loads(self._control("GET", "/_test/queries"))
        return result

    def clear_queries(self) -> None:
        self._control("DELETE", "/_test/queries")

    def set_fault(
        self,
        mode: FaultMode,
        *,
        code: int | None = None,
        status: int | None = None,
        match: str | None = None,
        count: int | None = None,
        seconds: float | None = None,
    ) -> None:
        """``down``: connections reset unanswered; ``error``: every query fails; ``off``: normal again.

        ``delay``: statements are held ``seconds`` (or until the next ``set_fault``), then run; abandoned if
        their client disconnects meanwhile. ``match``: only statements containing this text (an INSERT
        without its data; case-insensitive). ``count``: only the next N requests the fault applies to.
        """
        request: dict[str, Any] = {"mode": mode}
        if code is not None:
            request["code"] = code
        if status is not None:
            request["status"] = status
        if match is not None:
            request["match"] = match
        if count is not None:
            request["count"] = count
        if seconds is not None:
            request["seconds"] = seconds
        self._control("POST", "/_test/fail", json.dumps(request).encode())

    def fault_state(self) -> dict[str, Any]:
        """The current fault: ``mode``, ``match``, ``remaining``, ``seconds``, ``applied`` (requests it
        caught since it was set) and ``held`` (``delay``ed statements still waiting or running)."""
        result: dict[str, Any] = json.loads(self._control("GET", "/_test/fail"))
        return result

    def _ping(self) -> bool:
        with urllib.request.urlopen(f"{self.base_url}/ping", timeout=2) as response:
            return bool(response.status == 200)

    def _control(self, method: str, path: str, body: bytes | None = None) -> bytes:
        request = urllib.request.Request(f"{self.base_url}{path}", data=body, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return bytes(response.read())


@contextmanager
def clickhouse_http_server(
    data_dir: Path, user: str | None = None, password: str | None = None, port: int | None = None
) -> Iterator[ClickHouseHTTPServer]:
    """A started front over ``data_dir`` for the block; always stopped afterwards."""
    server = ClickHouseHTTPServer(data_dir, user=user, password=password, port=port)
    try:
        server.start()
        yield server
    finally:
        server.close()


__all__ = [
    "ClickHouseError",
    "ClickHouseHTTPServer",
    "FaultMode",
    "InjectedFault",
    "clickhouse_http_server",
    "main",
]

if __name__ == "__main__":
    main()
