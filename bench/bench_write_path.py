"""17. Scale, the write path: replacing `$ai_trace_summary` events at 1,000 teams an hour.

The pipeline writes a partition's summaries by replacing them (``trace_summaries.write.rows.
replace_partitions``), per chunk of up to 200 partitions: a ``SELECT count()`` over the chunk's (partition,
mode) keys, a lightweight ``DELETE FROM events WHERE ...`` only if some of them already have events, then one
``INSERT``. A lightweight delete is a mutation of the ``events`` table (``UPDATE _row_exists = 0`` over the
parts that can hold matching rows), so the question at scale is whether ClickHouse keeps up with the
DELETEs an hour of 1,000 teams sends: how many reach ``events``, what they cost in parts and mutations, how
long a replace takes (and whether that grows with the deletes already done), and whether read-your-own-write
still holds: right after a replace returns, a read of the partition (``read_partitions``, as
``SummaryEventsIOManager`` does) sees exactly the new events, exactly one per trace and mode. A partition's
first write (every scheduled window) now costs a count and an INSERT, no DELETE; only re-runs of written
partitions send one. The write before that change (a DELETE per chunk, always) is measured in the same run as
the legacy baseline (B0, ``replace_always_deleting``), so the saving is read off directly.

The store is a temporary one of realistic size for the scale (full: 1,000 teams x 24 hours, 830,000 rows):
ordinary ``$ai_generation``/``$ai_span``/``$ai_trace`` rows, one insert per hour as ingestion's batches land,
plus the ``minimal`` summary events of every earlier hour. Then hours H-1 and H are written in the
pipeline's two shapes, with events built by ``build_summary_event``:

* A. sharded scheduled runs, first materialization of hour H-1: ``shards`` (20) replaces of 50 partitions;
  first writes, so no DELETE;
* B. per-team runs (per-team schedule mode, per-team retries, a backfill launched one run per team), first
  materialization of hour H for the first ``per_team`` (100) teams: one replace per team, no DELETE; the
  hour's total is extrapolated (mean x 1,000). Before each, the partition's ``detailed`` events are inserted
  without a replace: that plain INSERT of the same size is a floor for the replace, and those events must
  survive the ``minimal`` replace (exactly one event per trace *and mode*);
* B0. the legacy baseline: the same first writes of hour H for the next ``per_team`` teams with the write
  before the change (a DELETE per replace, nothing to delete), the worst an hour used to send (1,000 DELETEs);
* C. per-team re-materialization of hour H-1 (retries, backfill re-runs) for the first ``retries`` (100)
  teams: DELETEs that hit rows, with a different trace set (of A's five events three are rewritten with new
  content, two must vanish; two are new);
* D. sharded re-run of hour H-1: 20 replaces of 50 partitions whose DELETEs hit every partition's rows.

After every replace the written partitions are read back in the same session and compared with what was
written (the ``minimal`` events: same ids and this run's content; the ``detailed`` ones untouched); every
mismatch is a read-your-own-write violation. At the end: duplicates per (partition, trace, mode), summary
events missing, ordinary events lost to a DELETE. ``system.mutations`` (``NOT is_done``: the backlog; sampled
every ``BACKLOG_EVERY`` replaces and at each phase's end) and ``system.parts`` (active, and inactive part
versions waiting for cleanup) are read around each phase.

Both engines run in one benchmark run, each on its own data directory: embedded chDB in this process
(``TraceStore`` with a ``chdb://`` DSN, the ``make dev`` default) and ClickHouse over HTTP (the harness's
HTTP front, ``trace_summaries_harness.clickhouse_http``, in its own process; its statement log counts the
DELETEs that actually reached the server). Both are the same engine (chDB 4.4 = ClickHouse 25.x), so the
mutation mechanics are ClickHouse's own; a production cluster (replicated tables, more parts, concurrent
ingestion) adds to the costs measured here, it does not remove them.

Run standalone: ``python bench/bench_write_path.py [--quick]``.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid as uuid_lib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from _common import START, Row, bench_main, median, row

from trace_summaries.store import TraceStore, as_utc
from trace_summaries.store.trace_store import EVENT_COLUMNS
from trace_summaries.write.event import (
    SUMMARY_EVENT,
    SummaryEvent,
    batch_run_id,
    build_summary_event,
    summary_distinct_id,
    summary_event_uuid,
)
from trace_summaries.write.rows import (
    DELETE_SQL,
    STATEMENT_PARTITIONS,
    SummaryWindow,
    _bounds,
    read_partitions,
    replace_partitions,
)
from trace_summaries_harness.clickhouse_http import ClickHouseHTTPServer, clickhouse_http_server

HOUR = timedelta(hours=1)
TRACES_PER_PARTITION = 5  # summaries per (team, hour, mode); the pipeline writes up to 100
BACKLOG_EVERY = 10  # sample the mutation backlog after every 10th replace
TARGET_HOUR_SHARE = 0.10  # an hour of per-team replaces should take at most 10% of the hour


@dataclass(frozen=True)
class Size:
    teams: int
    hours: int  # of history, the tested hours included
    events_per_team_hour: int  # ordinary AI events
    shards: int  # replaces of the sharded shape (teams / shards partitions each)
    per_team: int  # per-team first writes measured in B and in B0 (the next teams); totals extrapolated
    retries: int  # per-team re-runs measured (C)


# Up to ~0.5 s per per-team replace with a DELETE at this table size: B, B0 and C measure 100 teams each (2 x
# 300 replaces over both engines), A and D write all 1,000 partitions. teams >= 2 x per_team (B, then B0).
FULL = Size(teams=1000, hours=24, events_per_team_hour=30, shards=20, per_team=100, retries=100)
QUICK = Size(teams=20, hours=6, events_per_team_hour=10, shards=4, per_team=8, retries=8)


@dataclass(frozen=True)
class Batch:
    """One partition's write, as ``replace_partitions`` takes it (``PartitionSummaries`` has these fields)."""

    team_id: int
    window_start: datetime
    window_end: datetime
    mode: str
    events: list[SummaryEvent]

    @property
    def window(self) -> SummaryWindow:
        return SummaryWindow(self.team_id, self.window_start, self.window_end)


class CountingClient:
    """The session's client, counting the DELETE statements that go through it."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.deletes = 0
        self.delete_seconds: list[float] = []

    def command(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        if not sql.lstrip().upper().startswith("DELETE"):
            return self._client.command(sql, *args, **kwargs)
        self.deletes += 1
        started = time.perf_counter()
        try:
            return self._client.command(sql, *args, **kwargs)
        finally:
            self.delete_seconds.append(time.perf_counter() - started)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


# -- data ---------------------------------------------------------------------------------------------------


def ordinary_rows(size: Size, hour_index: int) -> list[tuple[Any, ...]]:
    """One hour of ordinary AI events of every team (~300 characters of properties each)."""
    rng = random.Random(hour_index)
    hour = START + hour_index * HOUR
    rows: list[tuple[Any, ...]] = []
    per_trace = 5
    for team in range(1, size.teams + 1):
        for index in range(size.events_per_team_hour):
            trace = f"trace-{team}-{hour_index}-{index // per_trace}"
            kind = (
                "$ai_trace"
                if index % per_trace == per_trace - 1
                else rng.choice(["$ai_generation", "$ai_span"])
            )
            properties = {
                "$ai_trace_id": trace,
                "$ai_model": "gpt-4.1-mini",
                "$ai_input_tokens": rng.randint(100, 9000),
                "$ai_output_tokens": rng.randint(10, 400),
                "$ai_latency": round(rng.uniform(0.2, 4.0), 3),
                "$ai_input": [{"role": "user", "content": "order status for customer " + "x" * 120}],
            }
            rows.append(
                (
                    str(uuid_lib.UUID(int=rng.getrandbits(128), version=4)),
                    kind,
                    json.dumps(properties),
                    hour + timedelta(seconds=rng.randrange(3600)),
                    team,
                    f"user-{team}-{index % 7}",
                )
            )
    return rows


_TEMPLATE: dict[str, Any] = {
    "mode": "minimal",
    "title": "",
    "flow_diagram": "user -> agent -> tool:lookup_order -> answer",
    "bullets": [{"text": "The agent looked up the order and answered.", "line_refs": "L3-L9"}],
    "interesting_notes": [],
    "text_repr_length": 4200,
    "event_count": 5,
    "model": "gpt-4.1-nano",
    "provider": "openai",
    "prompt_version": "v3",
    "input_tokens": 1800,
    "output_tokens": 160,
    "cost_usd": 0.00024,
}


def summary_event(team: int, hour_index: int, trace: int, mode: str, run: int) -> SummaryEvent:
    start = START + hour_index * HOUR
    return build_summary_event(
        team_id=team,
        window_start=start,
        window_end=start + HOUR,
        trace_id=f"trace-{team}-{hour_index}-{trace}",
        trace_first_timestamp=start + timedelta(minutes=trace),
        properties={**_TEMPLATE, "mode": mode, "title": f"run {run}: trace {trace} of team {team}"},
    )


def history_rows(size: Size, hour_index: int) -> list[tuple[Any, ...]]:
    """The ``minimal`` summary events of an earlier hour, written as plain rows (fast, same shape)."""
    start = START + hour_index * HOUR
    template = json.loads(summary_event(1, hour_index, 0, "minimal", 0).properties_json())
    rows: list[tuple[Any, ...]] = []
    for team in range(1, size.teams + 1):
        run_id = batch_run_id(team, start, start + HOUR)
        for trace in range(TRACES_PER_PARTITION):
            trace_id = f"trace-{team}-{hour_index}-{trace}"
            properties = {**template, "$ai_trace_id": trace_id, "$ai_batch_run_id": run_id}
            rows.append(
                (
                    summary_event_uuid(team, trace_id, "minimal", run_id),
                    SUMMARY_EVENT,
                    json.dumps(properties),
                    start + HOUR,
                    team,
                    summary_distinct_id(team),
                )
            )
    return rows


def batch(team: int, hour_index: int, mode: str, run: int, traces: Sequence[int]) -> Batch:
    start = START + hour_index * HOUR
    events = [summary_event(team, hour_index, trace, mode, run) for trace in traces]
    return Batch(team, start, start + HOUR, mode, events)


def seed(client: Any, size: Size) -> dict[str, int]:
    """The table before the hour: ordinary events of every hour, summaries of all but the last two."""
    ordinary = summaries = 0
    for hour_index in range(size.hours):
        rows = ordinary_rows(size, hour_index)
        ordinary += len(rows)
        if hour_index < size.hours - 2:
            history = history_rows(size, hour_index)
            rows += history
            summaries += len(history)
        client.insert("events", rows, column_names=list(EVENT_COLUMNS))
    return {"ordinary": ordinary, "summaries": summaries}


def replace_always_deleting(client: Any, batches: Sequence[Batch]) -> int:
    """The write before the change (legacy baseline): ``replace_partitions`` as it was, a DELETE per chunk.

    Same chunks, keys and statements as ``trace_summaries.write.rows.replace_partitions``, without the
    count that now skips the DELETE of a first write.
    """
    for start in range(0, len(batches), STATEMENT_PARTITIONS):
        chunk = batches[start : start + STATEMENT_PARTITIONS]
        windows = [SummaryWindow(b.team_id, b.window_start, b.window_end) for b in chunk]
        keys = [
            (w.team_id, as_utc(w.window_end), w.batch_run_id, b.mode)
            for w, b in zip(windows, chunk, strict=True)
        ]
        client.command(DELETE_SQL, parameters={**_bounds(windows), "keys": keys})
    rows = [
        (e.uuid, e.event, e.properties_json(), e.timestamp, e.team_id, e.distinct_id)
        for b in batches
        for e in b.events
    ]
    if rows:
        client.insert("events", rows, column_names=list(EVENT_COLUMNS))
    return len(rows)


# -- measuring ----------------------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    replaces: int = 0
    partitions: int = 0
    deletes: int = 0
    server_deletes: int | None = None
    seconds: list[float] = field(default_factory=list)
    delete_seconds: list[float] = field(default_factory=list)
    baseline_seconds: list[float] = field(default_factory=list)
    read_seconds: list[float] = field(default_factory=list)
    violations: int = 0
    max_backlog: int = 0
    parts_before: dict[str, int] = field(default_factory=dict)
    parts_after: dict[str, int] = field(default_factory=dict)
    mutations_after: dict[str, int] = field(default_factory=dict)


def parts(client: Any) -> dict[str, int]:
    (active, inactive, active_rows), *_ = client.query(
        "SELECT countIf(active), countIf(NOT active), sumIf(rows, active) FROM system.parts "
        "WHERE database = currentDatabase() AND table = 'events'"
    ).result_rows
    return {"active": int(active), "inactive": int(inactive), "rows": int(active_rows)}


def mutations(client: Any) -> dict[str, int]:
    (kept, backlog, failed), *_ = client.query(
        "SELECT count(), countIf(NOT is_done), countIf(latest_fail_reason != '') FROM system.mutations "
        "WHERE database = currentDatabase() AND table = 'events'"
    ).result_rows
    return {"kept": int(kept), "backlog": int(backlog), "failed": int(failed)}


def check(
    written: Sequence[Batch], read: dict[SummaryWindow, list[SummaryEvent]], others: dict[Any, Any]
) -> int:
    """Partitions whose read-back differs from what was just written (the other mode's events: ``others``)."""
    bad = 0
    for written_batch in written:
        events = read[written_batch.window]
        mine = sorted((e.uuid, e.properties.title) for e in events if e.properties.mode == written_batch.mode)
        expected = sorted((e.uuid, e.properties.title) for e in written_batch.events)
        rest = sorted(e.uuid for e in events if e.properties.mode != written_batch.mode)
        if mine != expected or rest != sorted(others.get(written_batch.window, ())):
            bad += 1
    return bad


def run_phase(
    client: CountingClient,
    phase: Phase,
    writes: Sequence[list[Batch]],
    others: dict[SummaryWindow, list[str]],
    *,
    baseline: Callable[[int], list[Batch]] | None = None,
    server: ClickHouseHTTPServer | None = None,
    replace: Callable[[Any, Sequence[Batch]], int] = replace_partitions,
) -> Phase:
    """Each of ``writes`` is one ``replace`` (one run's write); ``baseline(i)``: a plain insert before it."""
    raw = cast(Any, client)
    if server is not None:
        server.clear_queries()
    phase.parts_before = parts(client)
    deletes_before = client.deletes
    timed_before = len(client.delete_seconds)
    for index, batches in enumerate(writes):
        if baseline is not None:
            plain = baseline(index)
            rows = [
                (e.uuid, e.event, e.properties_json(), e.timestamp, e.team_id, e.distinct_id)
                for b in plain
                for e in b.events
            ]
            started = time.perf_counter()
            client.insert("events", rows, column_names=list(EVENT_COLUMNS))
            phase.baseline_seconds.append(time.perf_counter() - started)
            for b in plain:
                others[b.window] = [e.uuid for e in b.events]
        started = time.perf_counter()
        replace(raw, batches)
        phase.seconds.append(time.perf_counter() - started)
        started = time.perf_counter()
        read = read_partitions(raw, [b.window for b in batches])
        phase.read_seconds.append(time.perf_counter() - started)
        phase.violations += check(batches, read, others)
        phase.replaces += 1
        phase.partitions += len(batches)
        if index % BACKLOG_EVERY == BACKLOG_EVERY - 1:
            phase.max_backlog = max(phase.max_backlog, mutations(client)["backlog"])
    phase.deletes = client.deletes - deletes_before
    phase.delete_seconds = client.delete_seconds[timed_before:]
    phase.mutations_after = mutations(client)
    phase.max_backlog = max(phase.max_backlog, phase.mutations_after["backlog"])
    phase.parts_after = parts(client)
    if server is not None:
        phase.server_deletes = sum(
            1 for q in server.queries() if str(q.get("query", "")).lstrip().upper().startswith("DELETE")
        )
    return phase


def p95(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def final_checks(client: Any, size: Size, seeded: dict[str, int]) -> dict[str, int]:
    (summaries, distinct, ordinary), *_ = client.query(
        "SELECT countIf(event = {e:String}), "
        "uniqExactIf((team_id, timestamp, JSONExtractString(properties, '$ai_batch_run_id'), "
        "JSONExtractString(properties, '$ai_trace_id'), JSONExtractString(properties, '$ai_summary_mode')), "
        "event = {e:String}), countIf(event != {e:String}) FROM events",
        parameters={"e": SUMMARY_EVENT},
    ).result_rows
    # History, plus after the hour: H-1 minimal (D's 5 traces of every team), H minimal (B's and B0's teams)
    # and H detailed (B's teams).
    expected = seeded["summaries"] + (size.teams + 3 * size.per_team) * TRACES_PER_PARTITION
    return {
        "duplicates": int(summaries) - int(distinct),
        "summary_missing_or_extra": int(summaries) - expected,
        "ordinary_lost": seeded["ordinary"] - int(ordinary),
    }


def simulate(client: CountingClient, size: Size, server: ClickHouseHTTPServer | None) -> dict[str, Any]:
    teams = list(range(1, size.teams + 1))
    assert size.teams >= 2 * size.per_team and size.teams >= size.retries, size
    shard = -(-size.teams // size.shards)
    first, second = size.hours - 2, size.hours - 1  # H-1 and H
    others: dict[SummaryWindow, list[str]] = {}
    seed_started = time.perf_counter()
    seeded = seed(client, size)
    seed_seconds = time.perf_counter() - seed_started
    old_traces, new_traces = range(TRACES_PER_PARTITION), range(2, 2 + TRACES_PER_PARTITION)

    def sharded(hour_index: int, run: int, traces: range) -> list[list[Batch]]:
        return [
            [batch(team, hour_index, "minimal", run, traces) for team in teams[start : start + shard]]
            for start in range(0, len(teams), shard)
        ]

    phases = [
        run_phase(client, Phase("A"), sharded(first, 1, old_traces), others, server=server),
        run_phase(
            client,
            Phase("B"),
            [[batch(team, second, "minimal", 1, old_traces)] for team in teams[: size.per_team]],
            others,
            baseline=lambda i: [batch(teams[i], second, "detailed", 1, old_traces)],
            server=server,
        ),
        run_phase(
            client,
            Phase("B0"),
            [
                [batch(team, second, "minimal", 1, old_traces)]
                for team in teams[size.per_team : 2 * size.per_team]
            ],
            others,
            server=server,
            replace=replace_always_deleting,
        ),
        run_phase(
            client,
            Phase("C"),
            [[batch(team, first, "minimal", 2, new_traces)] for team in teams[: size.retries]],
            others,
            server=server,
        ),
        run_phase(client, Phase("D"), sharded(first, 3, new_traces), others, server=server),
    ]
    return {
        "phases": {p.name: p for p in phases},
        "seeded": seeded,
        "seed_seconds": seed_seconds,
        "final": final_checks(client, size, seeded),
        "settings": dict(
            client.query(
                "SELECT name, value FROM system.settings WHERE name IN "
                "('lightweight_deletes_sync', 'mutations_sync', 'lightweight_delete_mode')"
            ).result_rows
        ),
    }


@contextlib.contextmanager
def engine(kind: str, root: Path) -> Iterator[tuple[TraceStore, ClickHouseHTTPServer | None]]:
    if kind == "embedded":
        yield TraceStore(f"chdb://{root / 'embedded'}"), None
        return
    with clickhouse_http_server(root / "http") as server:
        yield TraceStore(server.dsn), server


def measure(kind: str, size: Size) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"bench-write-path-{kind}-"))
    try:
        with engine(kind, root) as (store, server), store.session() as raw:
            return simulate(CountingClient(raw), size, server)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- rows ---------------------------------------------------------------------------------------------------


def _max(values: list[float]) -> float:
    return max(values) if values else float("nan")


def engine_rows(kind: str, size: Size, result: dict[str, Any]) -> list[Row]:
    p: dict[str, Phase] = result["phases"]
    a, b, b0, c, d = p["A"], p["B"], p["B0"], p["C"], p["D"]
    all_phases = [a, b, b0, c, d]
    shard = a.partitions // max(a.replaces, 1)
    deletes = sum(x.deletes for x in all_phases)
    name = f"{kind}:"
    before = a.parts_before
    limit = TARGET_HOUR_SHARE * 3600
    rows: list[Row] = []

    def add(figure: str, value: float | int | None, unit: str, **kwargs: Any) -> None:
        rows.append(row(f"{name} {figure}", value, unit, **kwargs))

    add(
        "events table before the hour",
        before["rows"],
        "rows",
        note=f"{result['seeded']['ordinary']:,} ordinary + {result['seeded']['summaries']:,} summary events "
        f"({size.teams:,} teams x {size.hours} h), {before['active']} active parts; "
        f"seeded in {result['seed_seconds']:.0f} s",
    )
    # A first write finds nothing to delete and sends no DELETE; a re-run (C, D) and the legacy write (B0)
    # send one per replace.
    expected = {"A": 0, "B": 0, "B0": b0.replaces, "C": c.replaces, "D": d.replaces}
    met = all(x.deletes == expected[x.name] for x in all_phases)
    if kind == "http":
        server_deletes = sum(x.server_deletes or 0 for x in all_phases)
        met = met and all(x.server_deletes == x.deletes for x in all_phases)
        counted = f"in the server's statement log (client: {deletes:,})"
    else:
        server_deletes, counted = deletes, "at the client"
    add(
        "DELETEs measured (A+B+B0+C+D)",
        server_deletes,
        "statements",
        target="one per replace whose partitions already have events (first writes: none)",
        met=met,
        note=f"counted {counted}; A {a.deletes}, B {b.deletes}, B0 {b0.deletes} (legacy: one per replace), "
        f"C {c.deletes}, D {d.deletes}; expected " + ", ".join(f"{k} {v}" for k, v in expected.items()),
    )
    add(
        f"DELETEs an hour at {size.teams:,} teams, per-team first writes",
        b.deletes / max(b.replaces, 1) * size.teams,
        "statements",
        baseline=size.teams,
        note=f"B's DELETEs per replace x {size.teams:,}; baseline: the legacy write (one per replace, B0); "
        "every retry or backfill re-run of a partition that has events still adds one",
    )
    add(
        f"time per replace, {shard} partitions (sharded, median)",
        median(a.seconds),
        "s",
        note=f"A: first run of hour H-1 (count + INSERT, no DELETE), {a.replaces} replaces; "
        f"p95 {p95(a.seconds):.3f} s, max {_max(a.seconds):.3f} s",
    )
    add(
        "time per replace, 1 partition, first write (per-team, median)",
        median(b.seconds),
        "s",
        baseline=median(b0.seconds),
        note=f"B: first run of hour H, {b.replaces:,} teams (count + INSERT); baseline B0: the legacy write "
        f"(DELETE + INSERT), the next {b0.replaces:,} teams; a plain INSERT of the same size: "
        f"{median(b.baseline_seconds):.3f} s",
    )
    add(
        "time per replace, 1 partition, first write (per-team, p95)",
        p95(b.seconds),
        "s",
        baseline=p95(b0.seconds),
        note=f"max {_max(b.seconds):.3f} s (legacy {_max(b0.seconds):.3f} s); baseline: B0's p95; "
        f"plain INSERT p95 {p95(b.baseline_seconds):.3f} s",
    )
    hour = statistics.fmean(b.seconds) * size.teams if b.seconds else float("nan")
    legacy_hour = statistics.fmean(b0.seconds) * size.teams if b0.seconds else None
    add(
        "an hour of per-team first writes, total",
        hour,
        "s",
        baseline=legacy_hour,
        target=f"< {limit:.0f} s ({TARGET_HOUR_SHARE:.0%} of the hour)",
        met=hour < limit,
        note=f"mean of B x {size.teams:,}, one after another (one engine serializes them); baseline: mean of "
        f"B0 (legacy, {size.teams:,} DELETEs) x {size.teams:,}; the sharded hour (A): {sum(a.seconds):.1f} s",
    )
    add(
        "time per DELETE statement (per-team re-run, median)",
        median(c.delete_seconds),
        "s",
        baseline=median(c.read_seconds),
        note="C: the DELETE of one partition that has events (synchronous: returns once the mutation is "
        f"done); legacy first-write DELETE (B0, nothing to delete): {median(b0.delete_seconds):.3f} s; "
        "baseline: reading the same partition back (read_partitions, same filter)",
    )
    tenth = max(min(3, len(c.seconds) // 2), len(c.seconds) // 10, 1)
    late, early = median(c.seconds[-tenth:]), median(c.seconds[:tenth])
    add(
        "per-team re-run time, last vs first tenth",
        late,
        "s",
        baseline=early,
        target="ratio < 2 (no growth with past DELETEs)",
        met=late < 2 * early,
        note=f"median of C's last {tenth} vs first {tenth} replaces (each sends a DELETE that hits rows, "
        f"after {a.deletes + b.deletes + b0.deletes} earlier DELETEs)",
    )
    add(
        "time per replace, 1 partition, DELETE hits rows (median)",
        median(c.seconds),
        "s",
        baseline=median(b.seconds),
        note=f"C: per-team re-run of hour H-1, {c.replaces} teams (of A's 5 events 3 rewritten, 2 dropped; 2 "
        f"new): count + DELETE + INSERT; p95 {p95(c.seconds):.3f} s; baseline: B (first write, no DELETE)",
    )
    rerun_hour = statistics.fmean(c.seconds) * size.teams if c.seconds else float("nan")
    add(
        "an hour of per-team re-runs (DELETEs hit rows), total",
        rerun_hour,
        "s",
        baseline=hour,
        note=f"mean of C x {size.teams:,}: a per-team backfill re-run of an hour already written (not the "
        f"scheduled load, no target; {limit:.0f} s would be {TARGET_HOUR_SHARE:.0%} of the hour); "
        "baseline: the hour of first writes (B)",
    )
    add(
        f"time per replace, {shard} partitions, DELETE hits rows (median)",
        median(d.seconds),
        "s",
        baseline=median(a.seconds),
        note=f"D: sharded re-run of hour H-1 (every partition has 5 events); p95 {p95(d.seconds):.3f} s; "
        "baseline: A (first write, no DELETE)",
    )
    add(
        "time per partition written, sharded",
        median(a.seconds) / max(shard, 1),
        "s",
        baseline=median(b.seconds),
        note="A's median / partitions per replace; baseline: B's per-team replace",
    )
    violations = sum(x.violations for x in all_phases)
    add(
        "read-your-own-write violations",
        violations,
        "partitions",
        target="0",
        met=violations == 0,
        note=f"of {sum(x.partitions for x in all_phases):,} partition writes (all phases), each read back "
        f"right after its replace (median read {median(b.read_seconds):.3f} s)",
    )
    final = result["final"]
    add(
        "duplicate summary events (same partition, trace, mode)",
        final["duplicates"],
        "events",
        target="0",
        met=final["duplicates"] == 0
        and final["summary_missing_or_extra"] == 0
        and final["ordinary_lost"] == 0,
        note=f"summary events missing (-) or extra (+): {final['summary_missing_or_extra']}; "
        f"ordinary events lost to DELETEs: {final['ordinary_lost']}",
    )
    backlog = max(x.max_backlog for x in all_phases)
    end = d.mutations_after
    add(
        "mutation backlog (NOT is_done)",
        backlog,
        "mutations",
        target="0",
        met=backlog == 0 and end["backlog"] == 0 and end["failed"] == 0,
        note=f"max sampled every {BACKLOG_EVERY} replaces and after each phase; at the end {end['backlog']}, "
        f"failed {end['failed']}; system.mutations lists {end['kept']} (finished_mutations_to_keep = 100): "
        "every DELETE is a mutation",
    )
    add(
        "active parts of events after the hour",
        d.parts_after["active"],
        "parts",
        baseline=before["active"],
        note=" / ".join(f"{x.name} {x.parts_before['active']}->{x.parts_after['active']}" for x in all_phases)
        + "; baseline: before the hour",
    )
    add(
        "inactive part versions awaiting cleanup (max after a phase)",
        max(x.parts_after["inactive"] for x in all_phases),
        "parts",
        note=" / ".join(
            f"{x.name} {x.parts_after['inactive'] - x.parts_before['inactive']:+,} ({x.deletes} DELETEs)"
            for x in all_phases
        )
        + " net change per phase (cleanup runs meanwhile); after: "
        + " / ".join(f"{x.name} {x.parts_after['inactive']:,}" for x in all_phases)
        + "; "
        + ", ".join(f"{k}={v}" for k, v in sorted(result["settings"].items())),
    )
    return rows


def run(quick: bool = False) -> list[Row]:
    size = QUICK if quick else FULL
    rows: list[Row] = []
    for kind in ("embedded", "http"):
        started = time.perf_counter()
        result = measure(kind, size)
        print(f"{kind}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        rows += engine_rows(kind, size, result)
    return rows


if __name__ == "__main__":
    bench_main(run, __doc__)
