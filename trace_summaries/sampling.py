"""Which traces of a team-hour get summarized, and their events.

A trace belongs to the hour of its *first* event, so a trace that runs across an hour boundary is summarized
exactly once. The sample is capped, and the cap must not favour any kind of trace: rows are ordered by a hash
of the trace id (not ``rand()``, which breaks re-runs, and not "newest first", which biases towards the end
of the hour), so the same data always yields the same sample.

One query ranks and guards the traces of the window; then the events of the selected traces are fetched in
as few queries as a memory budget allows (``SamplingConfig.fetch_chunk_properties_chars``): one query for a
whole partition at the size limits holds ~200 MB of raw properties next to their decoded form, and in an
embedded store the engine's own copy of the result as well. Every query is parameterized on the server; no
input is ever formatted into SQL.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import IO, Any, Literal

from clickhouse_connect.driver.client import Client
from pydantic import BaseModel, ConfigDict, Field

AI_EVENT_TYPES: tuple[str, ...] = (
    "$ai_trace",
    "$ai_span",
    "$ai_generation",
    "$ai_embedding",
    "$ai_metric",
    "$ai_feedback",
)

# Traces dropped by a size guard are counted per guard; events without a trace id are no trace at all and
# are counted as events (``events_without_trace_id``).
GuardExclusion = Literal["too_many_events", "too_large"]
GUARD_EXCLUSIONS: tuple[GuardExclusion, ...] = ("too_many_events", "too_large")

# How many excluded trace ids of each reason are reported back (the counts are always complete).
EXCLUDED_EXAMPLES = 10

# Properties nested deeper than this are cut (the deeper value becomes ``TOO_DEEP``): pydantic reads JSON
# only ~200 levels deep and writes ~250, so one absurdly nested event would otherwise fail the partition's
# intermediate object, and with it every trace of the partition.
MAX_PROPERTIES_DEPTH = 64
TOO_DEEP = f"[value nested deeper than {MAX_PROPERTIES_DEPTH} levels: not shown]"


class SamplingConfig(BaseModel):
    """The guards of the original pipeline, plus how far around the hour a trace's events may lie."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_traces: int = Field(default=100, ge=0)
    max_trace_events: int = Field(default=50, ge=1)
    max_trace_properties_chars: int = Field(default=2_000_000, ge=1)
    # Events of a trace are looked for this far before and after the hour: far enough before to see that a
    # trace started in the previous hour (and so is not ours), far enough after to fetch a trace that runs on.
    trace_margin_minutes: int = Field(default=60, ge=0, le=24 * 60)
    # Properties characters (as the selection query measures them) fetched per query: bounds the raw rows
    # held at once, and in an embedded store the engine's buffers for them (several times the raw size, not
    # all returned to the system), so the peak memory of sampling no longer grows with the partition's raw
    # size. A trace larger than the budget is fetched alone. Changes how many queries build the sample, never
    # the sample. 16 MB: a partition at the size limits (200 MB) peaks at ~800 MB embedded, against
    # ~870-950 MB at 32 MB and 1.7 GB in one query (bench/bench_memory.py), for 13 fetch queries, not one.
    fetch_chunk_properties_chars: int = Field(default=16_000_000, ge=1)


class TraceEvent(BaseModel):
    """One event of a sampled trace, with its properties decoded."""

    model_config = ConfigDict(extra="forbid")

    uuid: str
    event: str
    timestamp: datetime
    properties: dict[str, Any]


class SampledTrace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trace_id: str
    first_timestamp: datetime
    event_count: int
    properties_chars: int
    events: list[TraceEvent]
    # Rows of this trace whose properties are not a JSON object: reported, not rendered.
    malformed_event_uuids: list[str] = Field(default_factory=list)


class SamplingStats(BaseModel):
    model_config = ConfigDict(extra="forbid")

    traces_in_window: int = 0
    traces_eligible: int = 0
    traces_selected: int = 0
    traces_excluded: dict[str, int] = Field(default_factory=dict)
    excluded_examples: dict[str, list[str]] = Field(default_factory=dict)
    events_without_trace_id: int = 0
    events_fetched: int = 0
    malformed_rows: int = 0
    malformed_event_uuids: list[str] = Field(default_factory=list)
    duplicate_events_dropped: int = 0
    # Events whose properties were nested deeper than ``MAX_PROPERTIES_DEPTH`` (kept, deep part cut).
    too_deep_event_uuids: list[str] = Field(default_factory=list)
    select_query_seconds: float = 0.0
    fetch_query_seconds: float = 0.0


class TeamHourSample(BaseModel):
    """The sampled traces of one team and one window: the unit every later stage works on."""

    model_config = ConfigDict(extra="forbid")

    team_id: int
    window_start: datetime
    window_end: datetime
    traces: list[SampledTrace]
    stats: SamplingStats

    def iter_jsonl(self) -> Iterator[bytes]:
        """JSON lines, one at a time, each ending in a newline: a header line (team, window, stats), then one
        trace per line; readable by any tool. Line by line, so writing a partition never holds a second
        copy of it (a whole partition's lines are ~200 MB at the size limits)."""
        yield self.model_dump_json(exclude={"traces"}).encode() + b"\n"
        for trace in self.traces:
            yield trace.model_dump_json().encode() + b"\n"

    def write_jsonl(self, handle: IO[bytes]) -> None:
        for line in self.iter_jsonl():
            handle.write(line)

    def to_jsonl(self) -> bytes:
        return b"".join(self.iter_jsonl())

    @classmethod
    def read_jsonl(cls, lines: Iterable[bytes]) -> TeamHourSample:
        """The sample from its JSON lines as they arrive (a binary file iterates over them), parsing each
        trace's line before the next is read, so the raw text is never held whole next to the parsed traces.

        Lines must be split on ``b"\\n"`` only (a binary file, ``jsonl_lines``), never with ``splitlines``:
        JSON leaves U+2028, U+2029 and U+0085 unescaped inside strings, and ``str.splitlines`` would cut a
        trace's line in two at them."""
        iterator = iter(lines)
        header = next(iterator, b"")
        sample = cls.model_validate_json(header.replace(b"{", b'{"traces":[],', 1))
        sample.traces = [
            SampledTrace.model_validate_json(line) for line in iterator if line not in (b"", b"\n")
        ]
        return sample

    @classmethod
    def from_jsonl(cls, data: bytes) -> TeamHourSample:
        return cls.read_jsonl(data.split(b"\n"))


def jsonl_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The lines of a byte stream that arrives in arbitrary chunks (an S3 body), split on ``b"\\n"`` only
    (see ``TeamHourSample.read_jsonl``). A line's parts are joined once, not re-concatenated per chunk as
    ``botocore``'s ``iter_lines`` does, which is quadratic in a multi-megabyte trace line."""
    pending: list[bytes] = []
    for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            pending.append(chunk[start:end])
            yield b"".join(pending)
            pending.clear()
            start = end + 1
        if start < len(chunk):
            pending.append(chunk[start:])
    if pending:
        yield b"".join(pending)


SELECT_TRACES_SQL = """
SELECT trace_id, first_timestamp, event_count, properties_chars, exclusion, group_size, group_events,
       malformed_in_window
FROM (
    SELECT trace_id, first_timestamp, event_count, properties_chars, exclusion,
           row_number() OVER (PARTITION BY exclusion ORDER BY cityHash64(trace_id), trace_id) AS rank,
           count() OVER (PARTITION BY exclusion) AS group_size,
           sum(event_count) OVER (PARTITION BY exclusion) AS group_events,
           sum(malformed_rows) OVER () AS malformed_in_window
    FROM (
        SELECT ai_trace_id AS trace_id,
               min(timestamp) AS first_timestamp,
               count() AS event_count,
               sum(length(properties)) AS properties_chars,
               countIf(NOT isValidJSON(properties)) AS malformed_rows,
               multiIf(
                   trace_id = '', 'empty_trace_id',
                   event_count > {max_trace_events:UInt64}, 'too_many_events',
                   properties_chars > {max_trace_properties_chars:UInt64}, 'too_large',
                   ''
               ) AS exclusion
        FROM events
        WHERE team_id = {team_id:Int64}
          AND event IN {event_types:Array(String)}
          AND timestamp >= {scan_start:DateTime64(6, 'UTC')}
          AND timestamp < {scan_end:DateTime64(6, 'UTC')}
        GROUP BY trace_id
        HAVING first_timestamp >= {window_start:DateTime64(6, 'UTC')}
           AND first_timestamp < {window_end:DateTime64(6, 'UTC')}
    )
)
WHERE (exclusion = '' AND rank <= {max_traces:UInt64})
   OR (exclusion != '' AND rank <= {excluded_examples:UInt64})
ORDER BY exclusion, rank
"""

FETCH_EVENTS_SQL = """
SELECT toString(uuid) AS uuid, event, timestamp, properties, ai_trace_id
FROM events
WHERE team_id = {team_id:Int64}
  AND event IN {event_types:Array(String)}
  AND timestamp >= {scan_start:DateTime64(6, 'UTC')}
  AND timestamp < {scan_end:DateTime64(6, 'UTC')}
  AND ai_trace_id IN {trace_ids:Array(String)}
ORDER BY ai_trace_id, timestamp, uuid
"""


def as_utc(value: datetime) -> datetime:
    """ClickHouse drivers return naive datetimes for UTC columns; every datetime here is tz-aware UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def decode_properties(raw: str) -> dict[str, Any] | None:
    """The properties object of a row, or None when the row's JSON is malformed or not an object."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def query_scope(
    team_id: int, window_start: datetime, window_end: datetime, config: SamplingConfig
) -> dict[str, Any]:
    """The parameters every sampling query shares: the team, the AI event types, and the window widened by
    the trace margin (a trace's later events may fall after the hour)."""
    margin = timedelta(minutes=config.trace_margin_minutes)
    return {
        "team_id": team_id,
        "event_types": list(AI_EVENT_TYPES),
        "scan_start": window_start - margin,
        "scan_end": window_end + margin,
    }


def sample_team_hour(
    client: Client,
    team_id: int,
    window_start: datetime,
    window_end: datetime,
    config: SamplingConfig | None = None,
) -> TeamHourSample:
    config = config or SamplingConfig()
    window_start, window_end = as_utc(window_start), as_utc(window_end)
    if window_end <= window_start:
        raise ValueError(f"empty sampling window [{window_start}, {window_end})")
    scope = query_scope(team_id, window_start, window_end, config)
    stats = SamplingStats(traces_excluded=dict.fromkeys(GUARD_EXCLUSIONS, 0))

    started = time.perf_counter()
    selected = _select_traces(client, scope, window_start, window_end, config, stats)
    stats.select_query_seconds = round(time.perf_counter() - started, 4)

    started = time.perf_counter()
    traces = _fetch_traces(client, scope, selected, stats, config.fetch_chunk_properties_chars)
    stats.fetch_query_seconds = round(time.perf_counter() - started, 4)
    return TeamHourSample(
        team_id=team_id, window_start=window_start, window_end=window_end, traces=traces, stats=stats
    )


def _select_traces(
    client: Client,
    scope: dict[str, Any],
    window_start: datetime,
    window_end: datetime,
    config: SamplingConfig,
    stats: SamplingStats,
) -> list[SampledTrace]:
    result = client.query(
        SELECT_TRACES_SQL,
        parameters={
            **scope,
            "window_start": window_start,
            "window_end": window_end,
            "max_trace_events": config.max_trace_events,
            "max_trace_properties_chars": config.max_trace_properties_chars,
            "max_traces": config.max_traces,
            "excluded_examples": EXCLUDED_EXAMPLES,
        },
    )
    selected: list[SampledTrace] = []
    for (
        trace_id,
        first_ts,
        event_count,
        chars,
        exclusion,
        group_size,
        group_events,
        malformed,
    ) in result.result_rows:
        stats.malformed_rows = int(malformed)
        if exclusion == "":
            stats.traces_eligible = int(group_size)
            selected.append(
                SampledTrace(
                    trace_id=trace_id,
                    first_timestamp=as_utc(first_ts),
                    event_count=int(event_count),
                    properties_chars=int(chars),
                    events=[],
                )
            )
            continue
        if exclusion == "empty_trace_id":
            stats.events_without_trace_id = int(group_events)
            continue
        stats.traces_excluded[exclusion] = int(group_size)
        stats.excluded_examples.setdefault(exclusion, []).append(trace_id)
    stats.traces_in_window = stats.traces_eligible + sum(stats.traces_excluded.values())
    stats.traces_selected = len(selected)
    return selected


def _fetch_traces(
    client: Client,
    scope: dict[str, Any],
    selected: Sequence[SampledTrace],
    stats: SamplingStats,
    chunk_chars: int,
) -> list[SampledTrace]:
    by_id = {trace.trace_id: trace for trace in selected}
    seen: set[str] = set()
    for trace_ids in _fetch_chunks(selected, chunk_chars):
        # The query's result is not named, so its raw rows are freed before the next query runs.
        _add_events(
            client.query(FETCH_EVENTS_SQL, parameters={**scope, "trace_ids": trace_ids}).result_rows,
            by_id,
            seen,
            stats,
        )
    stats.events_fetched = len(seen)
    # Keep the hash order of the selection: it is the order summaries are requested in.
    return list(by_id.values())


def _add_events(
    rows: Sequence[Sequence[Any]], by_id: dict[str, SampledTrace], seen: set[str], stats: SamplingStats
) -> None:
    for uuid, event, timestamp, raw_properties, trace_id in rows:
        if uuid in seen:
            # At-least-once ingestion can insert an event twice; the trace must not show it twice.
            stats.duplicate_events_dropped += 1
            continue
        seen.add(uuid)
        trace = by_id[trace_id]
        properties = decode_properties(raw_properties)
        if properties is None:
            trace.malformed_event_uuids.append(uuid)
            stats.malformed_event_uuids.append(uuid)
            continue
        if _make_serializable(properties):
            stats.too_deep_event_uuids.append(uuid)
        trace.events.append(
            TraceEvent(uuid=uuid, event=event, timestamp=as_utc(timestamp), properties=properties)
        )


def _fetch_chunks(selected: Sequence[SampledTrace], chunk_chars: int) -> Iterator[list[str]]:
    """The selected trace ids in runs of at most ``chunk_chars`` properties characters (a larger trace runs
    alone). Runs follow the fetch query's own ``ORDER BY ai_trace_id`` (``str`` order is UTF-8 byte order,
    as ClickHouse compares strings), so rows arrive in the order one query for every trace would return
    them: which copy of a duplicated event is kept, and the order malformed and cut events are reported
    in, do not depend on the budget."""
    run: list[str] = []
    chars = 0
    for trace in sorted(selected, key=lambda trace: trace.trace_id):
        if run and chars + trace.properties_chars > chunk_chars:
            yield run
            run, chars = [], 0
        run.append(trace.trace_id)
        chars += trace.properties_chars
    if run:
        yield run


def _clean_scalar(value: Any) -> Any:
    """NaN and Infinity parse from JSON but cannot be written back as JSON: they become strings. Lone
    surrogates (``"\\ud800"`` is valid JSON) cannot be encoded as UTF-8: each becomes ``?``."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str) and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", errors="replace").decode("utf-8")
    return value


def _make_serializable(properties: dict[str, Any]) -> bool:
    """Makes decoded properties safe to write as JSON, in place, without recursion (a value may be nested
    as deep as the JSON parser allowed). Returns True when a part nested too deep was cut."""
    cut = False
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(properties, 1)]
    while stack:
        container, depth = stack.pop()
        if isinstance(container, dict):
            entries = list(container.items())
            container.clear()
            keyed = [(_clean_scalar(key), item) for key, item in entries]
        else:
            keyed = list(enumerate(container))
        for key, item in keyed:
            if isinstance(item, dict | list):
                if depth >= MAX_PROPERTIES_DEPTH:
                    item, cut = TOO_DEEP, True
                else:
                    stack.append((item, depth + 1))
            else:
                item = _clean_scalar(item)
            container[key] = item
    return cut
