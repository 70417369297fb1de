"""1. Sampling and fetch: our two queries per team-hour versus the original's one query per trace.

Store: >= 1M events seeded by ``trace_summaries.demo.seed_store`` (10 teams x 24 hours, 450 traces per
team-hour plus neighbour teams and non-AI events; see ``_common.FULL_STORE``), cached in ``.data/bench/``.

Ours: ``trace_summaries.sample.sample_team_hour`` (one ranking/guard query, one batched fetch of every
event of the 100 selected traces). Baseline, the original's approach: the same selection, then one query per
selected trace (``... AND ai_trace_id = {trace_id}`` with the same team, event types and time scan bounds).
Both return the same traces with the same events (checked), and both decode rows into the same records, so
the difference is the number of round trips and scans.

Measured on both ClickHouse paths: the embedded engine (chDB, in process) and ClickHouse over HTTP
(clickhouse-connect's HTTP client against ``trace_summaries_harness/clickhouse_http.py``, a chDB
process behind the HTTP interface). After one warm-up of each, ours and the baseline alternate on the same
partitions; figures are medians per partition.

Run standalone: ``python bench/bench_sampling.py [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from unittest import mock

from _common import FULL_STORE, QUICK_STORE, START, Row, median, print_rows, row, seeded_store

from trace_summaries.sample import query as sampling
from trace_summaries.sample.query import (
    GUARD_EXCLUSIONS,
    SampledTrace,
    SamplingConfig,
    SamplingStats,
    TeamHourSample,
    TraceEvent,
    _select_traces,
    as_utc,
    decode_properties,
    query_scope,
    sample_team_hour,
)
from trace_summaries.store import TraceStore

TARGET_SPEEDUP = 10.0

# The original's fetch: one query per trace, parameterized like ours (never formatted into SQL).
PER_TRACE_SQL = """
SELECT toString(uuid) AS uuid, event, timestamp, properties
FROM events
WHERE team_id = {team_id:Int64}
  AND event IN {event_types:Array(String)}
  AND timestamp >= {scan_start:DateTime64(6, 'UTC')}
  AND timestamp < {scan_end:DateTime64(6, 'UTC')}
  AND ai_trace_id = {trace_id:String}
ORDER BY timestamp, uuid
"""


def sample_per_trace(
    client: Any, team_id: int, window_start: datetime, window_end: datetime, config: SamplingConfig
) -> TeamHourSample:
    """The baseline: the same selection query as ours, then 1 query per selected trace."""
    scope = query_scope(team_id, window_start, window_end, config)
    stats = SamplingStats(traces_excluded=dict.fromkeys(GUARD_EXCLUSIONS, 0))
    selected: list[SampledTrace] = _select_traces(client, scope, window_start, window_end, config, stats)
    for trace in selected:
        result = client.query(PER_TRACE_SQL, parameters={**scope, "trace_id": trace.trace_id})
        seen: set[str] = set()
        for uuid, event, timestamp, raw_properties in result.result_rows:
            if uuid in seen:
                continue
            seen.add(uuid)
            properties = decode_properties(raw_properties)
            if properties is None:
                trace.malformed_event_uuids.append(uuid)
                continue
            trace.events.append(
                TraceEvent(uuid=uuid, event=event, timestamp=as_utc(timestamp), properties=properties)
            )
        stats.events_fetched += len(seen)
    return TeamHourSample(
        team_id=team_id, window_start=window_start, window_end=window_end, traces=selected, stats=stats
    )


# -- prototype: a cheaper decode (for sample/query.py) ----------------------------------------------------
#
# ``_fetch_traces`` walks every decoded value in Python (``_make_serializable``) to turn NaN/Infinity into
# strings, repair lone surrogates and cut values nested deeper than MAX_PROPERTIES_DEPTH. The prototype
# gets the same result cheaper: non-finite numbers become strings while ``json.loads`` parses
# (``parse_constant``/``parse_float``), the full walk runs only when the raw text holds a ``\\ud..``
# escape or a surrogate itself (the only ways a lone surrogate gets in), else only containers are walked.


def _finite_float(token: str) -> float | str:
    value = float(token)
    return value if value - value == 0 else str(value)


def _constant(token: str) -> str:
    return str(float(token))


def _utf8_clean(raw: str) -> bool:
    """No lone surrogate in the text itself (a driver decoding with surrogateescape would leave some)."""
    if raw.isascii():
        return True
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _cut_too_deep(properties: dict[str, Any]) -> bool:
    cut = False
    stack: list[tuple[Any, int]] = [(properties, 1)]
    while stack:
        container, depth = stack.pop()
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for key, item in items:
            if isinstance(item, dict | list):
                if depth >= sampling.MAX_PROPERTIES_DEPTH:
                    container[key] = sampling.TOO_DEEP
                    cut = True
                else:
                    stack.append((item, depth + 1))
    return cut


@contextlib.contextmanager
def fast_decode() -> Iterator[None]:
    needs_full_walk: set[int] = set()
    full_walk = sampling._make_serializable

    def decode(raw: str) -> dict[str, Any] | None:
        try:
            value = json.loads(raw, parse_constant=_constant, parse_float=_finite_float)
        except (ValueError, RecursionError):
            return None
        if not isinstance(value, dict):
            return None
        if "\\ud" in raw or "\\uD" in raw or not _utf8_clean(raw):
            needs_full_walk.add(id(value))
        return value

    def make_serializable(properties: dict[str, Any]) -> bool:
        if id(properties) in needs_full_walk:
            needs_full_walk.discard(id(properties))
            return full_walk(properties)
        return _cut_too_deep(properties)

    with (
        mock.patch.object(sampling, "decode_properties", decode),
        mock.patch.object(sampling, "_make_serializable", make_serializable),
    ):
        yield


def _contents(sample: TeamHourSample) -> list[tuple[str, list[tuple[str, Any]]]]:
    return [(t.trace_id, [(e.uuid, e.properties) for e in t.events]) for t in sample.traces]


def _signature(sample: TeamHourSample) -> dict[str, list[str]]:
    return {trace.trace_id: sorted(e.uuid for e in trace.events) for trace in sample.traces}


def partitions(hours: int, teams: int, count: int) -> list[tuple[int, datetime]]:
    """``count`` (team, hour) partitions spread over the store, away from its first and last hour."""
    picked = []
    for index in range(count):
        team = 1 + (index * 2) % teams
        hour = 1 + (index * 5) % max(1, hours - 2)
        picked.append((team, START + timedelta(hours=hour)))
    return picked


def measure_path(
    label: str,
    store: TraceStore,
    parts: list[tuple[int, datetime]],
    repeats: int,
    config: SamplingConfig,
    prototype: bool = False,
) -> tuple[list[Row], dict[str, Any]]:
    ours: list[float] = []
    baseline: list[float] = []
    proto: list[float] = []
    traces = events = 0
    with store.session() as client:
        for team, hour in parts:  # warm-up (page cache, parsed SQL), and the equality check
            a = sample_team_hour(client, team, hour, hour + timedelta(hours=1), config)
            b = sample_per_trace(client, team, hour, hour + timedelta(hours=1), config)
            if _signature(a) != _signature(b):
                raise AssertionError(
                    f"{label}: per-trace baseline fetched different events for {team}/{hour}"
                )
            traces += len(a.traces)
            events += a.stats.events_fetched
            if prototype:
                with fast_decode():
                    c = sample_team_hour(client, team, hour, hour + timedelta(hours=1), config)
                if _contents(c) != _contents(a):
                    raise AssertionError(f"prototype decode changed the sample of {team}/{hour}")
        for _ in range(repeats):
            for team, hour in parts:
                started = time.perf_counter()
                sample_team_hour(client, team, hour, hour + timedelta(hours=1), config)
                ours.append(time.perf_counter() - started)
                started = time.perf_counter()
                sample_per_trace(client, team, hour, hour + timedelta(hours=1), config)
                baseline.append(time.perf_counter() - started)
                if prototype:
                    with fast_decode():
                        started = time.perf_counter()
                        sample_team_hour(client, team, hour, hour + timedelta(hours=1), config)
                        proto.append(time.perf_counter() - started)
    ours_s, base_s = median(ours), median(baseline)
    per_part = traces / len(parts)
    speedup = base_s / ours_s
    rows = [
        row(f"{label}: ours, 2 queries / partition", ours_s, "s", note=f"median of {len(ours)}"),
        row(
            f"{label}: original, 1+{per_part:.0f} queries / partition",
            base_s,
            "s",
            note=f"median of {len(baseline)}",
        ),
        row(
            f"{label}: ours vs original (time)",
            ours_s,
            "s",
            baseline=base_s,
            target=f"ratio <= {1 / TARGET_SPEEDUP:.2f}",
            met=speedup >= TARGET_SPEEDUP,
            note=f"{speedup:.1f}x faster",
        ),
    ]
    if proto:
        rows.append(
            row(
                f"prototype {label}: ours with a cheaper decode, vs original",
                median(proto),
                "s",
                baseline=base_s,
                note=f"{base_s / median(proto):.1f}x faster; see fast_decode(); not the shipped code",
            )
        )
    return rows, {"traces_per_partition": per_part, "events_per_partition": events / len(parts)}


def run(quick: bool = False) -> list[Row]:
    spec = QUICK_STORE if quick else FULL_STORE
    data_dir, manifest = seeded_store(spec)
    parts = partitions(spec.hours, spec.teams, 2 if quick else 5)
    repeats = 2 if quick else 3
    config = SamplingConfig()
    rows: list[Row] = [
        row(
            "store: events (all teams, hours)",
            manifest["events"],
            "events",
            target=">= 1,000,000" if not quick else "",
            met=manifest["events"] >= 1_000_000 if not quick else None,
            note=(
                f"{spec.teams} teams x {spec.hours} h x {spec.traces_per_hour} traces/h + neighbours, "
                f"{manifest['properties_mb']} MB properties; seeded once in {manifest['seed_seconds']:.0f} s"
            ),
        )
    ]

    embedded_rows, shape = measure_path(
        "embedded chDB", TraceStore(f"chdb://{data_dir}"), parts, repeats, config, prototype=True
    )
    rows.append(
        row(
            "partition: traces selected / events fetched",
            shape["traces_per_partition"],
            "traces",
            note=f"{shape['events_per_partition']:.0f} events per partition, {len(parts)} partitions",
        )
    )
    rows += embedded_rows

    # The HTTP front runs its own chDB process on the same directory; this process's sessions are closed.
    from trace_summaries_harness.clickhouse_http import clickhouse_http_server

    with clickhouse_http_server(data_dir) as front:
        http_rows, _ = measure_path("ClickHouse HTTP", TraceStore(front.dsn), parts, repeats, config)
    rows += http_rows
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print_rows(run(quick=args.quick))
    sys.exit(0)
