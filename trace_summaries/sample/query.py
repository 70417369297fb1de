"""Which traces of a team-hour get summarized, and their events.

A trace belongs to the hour of its *first* event, so a trace that runs across an hour boundary is summarized
exactly once. The sample is capped, and the cap must not favour any kind of trace: rows are ordered by a hash
of the trace id (not ``rand()``, which breaks re-runs, and not "newest first", which biases towards the end
of the hour), so the same data always yields the same sample.

One query ranks and guards the traces of the window; then the events of the selected traces are fetched in
as few queries as a memory budget allows (``SamplingConfig.fetch_chunk_properties_chars``): one query for a
whole partition at the size limits holds ~200 MB of raw properties next to their decoded form, and in an
embedded store the engine's own copy of the result as well. Every query is parameterized on the server; no
input is ever formatted into SQL. Every query runs under a server-side time limit (ClickHouse
``max_execution_time``, ``TRACE_SUMMARIES_SAMPLING_TIMEOUT_S``, the original's 300 s): a partition whose
queries scan too much fails with an error naming the setting instead of holding its run.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from trace_summaries.config import StoreConfig, load
from trace_summaries.sample.model import (
    AI_EVENT_TYPES,
    EXCLUDED_EXAMPLES,
    GUARD_EXCLUSIONS,
    MAX_PROPERTIES_DEPTH,
    TOO_DEEP,
    SampledTrace,
    SamplingConfig,
    SamplingStats,
    TeamHourSample,
    TraceEvent,
)
from trace_summaries.store import StoreError, as_utc

TIMEOUT_SETTING = "TRACE_SUMMARIES_SAMPLING_TIMEOUT_S"
# How ClickHouse reports a query stopped by ``max_execution_time`` (code 159), on a server and in chDB.
_TIMEOUT_MARKERS = ("TIMEOUT_EXCEEDED", "Code: 159.")


class SamplingTimeout(StoreError):
    """A sampling query ran past ``TRACE_SUMMARIES_SAMPLING_TIMEOUT_S`` and the server stopped it."""


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
    *,
    timeout_s: float | None = None,
) -> TeamHourSample:
    """``timeout_s`` bounds each query on the server (default: ``TRACE_SUMMARIES_SAMPLING_TIMEOUT_S``); a
    query past it raises ``SamplingTimeout``, a ``StoreError`` naming the setting."""
    config = config or SamplingConfig()
    if timeout_s is None:
        timeout_s = load(StoreConfig).sampling_timeout_s
    timed = _TimedClient(client, timeout_s)
    window_start, window_end = as_utc(window_start), as_utc(window_end)
    if window_end <= window_start:
        raise ValueError(f"empty sampling window [{window_start}, {window_end})")
    scope = query_scope(team_id, window_start, window_end, config)
    stats = SamplingStats(traces_excluded=dict.fromkeys(GUARD_EXCLUSIONS, 0))

    started = time.perf_counter()
    selected = _select_traces(timed, scope, window_start, window_end, config, stats)
    stats.select_query_seconds = round(time.perf_counter() - started, 4)

    started = time.perf_counter()
    traces = _fetch_traces(timed, scope, selected, stats, config.fetch_chunk_properties_chars)
    stats.fetch_query_seconds = round(time.perf_counter() - started, 4)
    return TeamHourSample(
        team_id=team_id, window_start=window_start, window_end=window_end, traces=traces, stats=stats
    )


class _TimedClient:
    """The queries of one sample, each with ``max_execution_time`` set on the server."""

    def __init__(self, client: Client, timeout_s: float) -> None:
        self._client = client
        self.timeout_s = timeout_s

    def query(self, sql: str, parameters: dict[str, Any]) -> Any:
        try:
            return self._client.query(
                sql, parameters=parameters, settings={"max_execution_time": self.timeout_s}
            )
        except ClickHouseError as exc:
            if any(marker in str(exc) for marker in _TIMEOUT_MARKERS):
                raise SamplingTimeout(
                    f"a sampling query ran past {TIMEOUT_SETTING}={self.timeout_s:g} s (ClickHouse "
                    f"max_execution_time) and was stopped by the server; raise {TIMEOUT_SETTING} or lower "
                    f"the run config's trace_margin_minutes"
                ) from exc
            raise


def _select_traces(
    client: _TimedClient,
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
    client: _TimedClient,
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
