"""Writing seeded team-hours into the trace store: idempotent per chunk, in large column-oriented batches.

A *chunk* is the events of one ``(seed, team, hour)``. Its events have deterministic uuids, so whether a
chunk is already stored is a lookup of its first and last uuids (parameterized, one query per group of
chunks). A chunk that is there is skipped: running ``make dev`` twice, or seeding overlapping hour ranges,
never duplicates events. A chunk is never split across inserts, but the engine may commit one insert as
several parts, so a process killed mid-insert can leave a chunk half written; such a chunk (one probe found,
not the other) is completed with exactly its missing events. The probes identify the chunk, not its size:
re-seeding an hour with another ``traces_per_hour`` keeps what is there. Two seeders running at the same
time on the same hours can both write a chunk; seeding is meant to run once per environment at a time.

Every seeded team gets a *neighbour* team (``team_id + NEIGHBOUR_TEAM_OFFSET``) with AI traces in the same
hours: the pipeline is per team, and any query that forgets its team filter picks those up.

Generation is CPU-bound Python; inserts are few and large (``BATCH_ROWS`` rows, compact JSON), each in its
own short ``store.session()`` so that other processes sharing the embedded store are blocked only while a
batch is written, not while it is generated.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tqdm import tqdm

from trace_summaries.demo.identity import require_hour
from trace_summaries.demo.traces import DEFAULT_OVERSIZED_FRACTION, Event, generate_hour
from trace_summaries.store import EVENT_COLUMNS, EventRow, TraceStore

DEFAULT_SEED = 42
# Neighbour team of team T: T + 10_000. Real team ids in demos and tests are small, so neighbours never
# collide with a team someone seeds on purpose (and if one does, that chunk is simply seeded once).
NEIGHBOUR_TEAM_OFFSET = 10_000
# Neighbours get a quarter of the traffic: enough to catch a missing team filter, cheap to generate.
NEIGHBOUR_TRACE_SHARE = 0.25
BATCH_ROWS = 50_000
# Also flush on size, so batches of oversized traces stay within a few hundred MB of memory.
BATCH_CHARS = 128_000_000
# Chunks are generated, then checked for presence with one query per group; a group ends at this many
# chunks or events, which bounds the events held in memory besides the batches.
PROBE_GROUP_CHUNKS = 100
PROBE_GROUP_EVENTS = 20_000

_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode

STORED_UUIDS_SQL = """
SELECT toString(uuid)
FROM events
WHERE team_id IN {team_ids:Array(Int64)}
  AND timestamp >= {start:DateTime64(6, 'UTC')}
  AND timestamp <= {end:DateTime64(6, 'UTC')}
  AND uuid IN {uuids:Array(UUID)}
"""


def neighbour_team(team_id: int) -> int:
    return team_id + NEIGHBOUR_TEAM_OFFSET


@dataclass(frozen=True, slots=True)
class Chunk:
    """One team-hour to seed; ``neighbour`` marks the noise team of a seeded team."""

    team_id: int
    hour: datetime
    traces_per_hour: int
    neighbour: bool = False


@dataclass(slots=True)
class SeedReport:
    """What a seeding run did. ``hours_*`` count team-hour chunks, neighbour teams included."""

    events_written: int = 0
    events_skipped_existing: int = 0
    hours_written: int = 0
    hours_skipped: int = 0
    traces: int = 0
    seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.events_written / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        return (
            f"{self.events_written:,} events written "
            f"({self.traces:,} traces, {self.hours_written} team-hours incl. neighbour teams), "
            f"{self.hours_skipped} team-hours already present "
            f"({self.events_skipped_existing:,} events skipped) "
            f"in {self.seconds:.1f}s ({self.events_per_second:,.0f} events/s)"
        )


def plan_chunks(
    team_ids: Sequence[int], hours: Sequence[datetime], traces_per_hour: int, *, neighbours: bool = True
) -> list[Chunk]:
    """The distinct chunks to seed, hour by hour; a team seeded explicitly wins over the same neighbour."""
    if traces_per_hour < 0:
        raise ValueError(f"traces_per_hour must be >= 0, got {traces_per_hour}")
    teams = sorted(set(team_ids))
    neighbour_traces = max(1, round(traces_per_hour * NEIGHBOUR_TRACE_SHARE)) if traces_per_hour else 0
    chunks: dict[tuple[int, datetime], Chunk] = {}
    for hour in sorted({require_hour(hour) for hour in hours}):
        for team in teams:
            chunks[(team, hour)] = Chunk(team, hour, traces_per_hour)
        if neighbours:
            for team in teams:
                other = neighbour_team(team)
                chunks.setdefault((other, hour), Chunk(other, hour, neighbour_traces, neighbour=True))
    return list(chunks.values())


def to_event_rows(events: Sequence[Event]) -> list[EventRow]:
    """Generated events as store rows, for callers that insert a few through ``TraceStore.insert_events``."""
    return [
        EventRow(
            uuid=e["uuid"],
            event=e["event"],
            properties=_encode_json(e["properties"]),
            timestamp=e["timestamp"],
            team_id=e["team_id"],
            distinct_id=e["distinct_id"],
        )
        for e in events
    ]


class _ColumnBatch:
    """Rows buffered column by column (the order of ``EVENT_COLUMNS``), inserted as one block."""

    def __init__(self) -> None:
        self.columns: tuple[list[Any], ...] = tuple([] for _ in EVENT_COLUMNS)
        self.chars = 0

    @property
    def rows(self) -> int:
        return len(self.columns[0])

    def add(self, events: Sequence[Event]) -> None:
        uuids, names, properties, timestamps, teams, distinct_ids = self.columns
        for event in events:
            encoded = _encode_json(event["properties"])
            self.chars += len(encoded)
            uuids.append(event["uuid"])
            names.append(event["event"])
            properties.append(encoded)
            timestamps.append(event["timestamp"])
            teams.append(event["team_id"])
            distinct_ids.append(event["distinct_id"])


def _insert(store: TraceStore, batch: _ColumnBatch) -> int:
    with store.session() as client:
        client.insert("events", list(batch.columns), column_names=list(EVENT_COLUMNS), column_oriented=True)
    return batch.rows


class _BackgroundInserter:
    """Inserts batches on one background thread while the caller generates the next batch.

    The engine parses, compresses and writes a block in native code without holding the GIL, so that work
    overlaps with Python generating events. At most one insert is in flight (memory stays at two batches),
    and an insert's error surfaces in the caller on the next ``submit`` or at ``finish``.
    """

    def __init__(self, store: TraceStore) -> None:
        self._store = store
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seed-insert")
        self._pending: Future[int] | None = None
        self.rows_written = 0

    def submit(self, batch: _ColumnBatch) -> None:
        self._wait()
        if batch.rows:
            self._pending = self._pool.submit(_insert, self._store, batch)

    def finish(self) -> None:
        try:
            self._wait()
        finally:
            self._pool.shutdown(wait=True)

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self.rows_written += pending.result()


def stored_uuids(store: TraceStore, events: Sequence[Event]) -> set[str]:
    """Which of ``events`` (by uuid) are already in the store, in one query bounded by their time range."""
    if not events:
        return set()
    with store.session() as client:
        result = client.query(
            STORED_UUIDS_SQL,
            parameters={
                "team_ids": sorted({event["team_id"] for event in events}),
                "start": min(event["timestamp"] for event in events),
                "end": max(event["timestamp"] for event in events),
                "uuids": [event["uuid"] for event in events],
            },
        )
    return {uuid for (uuid,) in result.result_rows}


def _probes(events: Sequence[Event]) -> list[Event]:
    """A chunk's first and last events (in insert order): both stored iff the whole chunk is."""
    return [events[0], events[-1]] if events else []


def _generated_groups(
    chunks: Sequence[Chunk], generate: Callable[[Chunk], list[Event]]
) -> Iterator[list[tuple[Chunk, list[Event]]]]:
    """Chunks with their events, in groups of at most ``PROBE_GROUP_CHUNKS`` chunks/``PROBE_GROUP_EVENTS``."""
    group: list[tuple[Chunk, list[Event]]] = []
    size = 0
    for chunk in chunks:
        events = generate(chunk)
        group.append((chunk, events))
        size += len(events)
        if len(group) >= PROBE_GROUP_CHUNKS or size >= PROBE_GROUP_EVENTS:
            yield group
            group, size = [], 0
    if group:
        yield group


def _show_progress(requested: bool) -> bool:
    """A progress bar only for a person watching: never in logs, CI output or captured test output."""
    return requested and sys.stderr.isatty()


def seed_store(
    store: TraceStore,
    team_ids: Sequence[int],
    hours: Sequence[datetime],
    traces_per_hour: int,
    *,
    seed: int = DEFAULT_SEED,
    progress: bool = True,
    neighbours: bool = True,
    include_non_ai: bool = True,
    oversized_fraction: float = DEFAULT_OVERSIZED_FRACTION,
    batch_rows: int = BATCH_ROWS,
) -> SeedReport:
    """Seeds every (team, hour) chunk not already in the store, plus neighbour teams unless disabled.

    Every chunk is generated before its presence is checked (its last uuid depends on its content); skipped
    chunks are not encoded, so skipping costs a fraction of writing, and the report can count their events.
    """
    started = time.perf_counter()
    chunks = plan_chunks(team_ids, hours, traces_per_hour, neighbours=neighbours)

    def generate(chunk: Chunk) -> list[Event]:
        return generate_hour(
            chunk.team_id,
            chunk.hour,
            chunk.traces_per_hour,
            seed,
            oversized_fraction=oversized_fraction,
            include_non_ai=include_non_ai,
        )

    report = SeedReport()
    batch = _ColumnBatch()
    inserter = _BackgroundInserter(store)
    queued = 0
    bar = tqdm(
        total=len(chunks),
        unit="team-hour",
        desc="seeding",
        disable=not _show_progress(progress),
        file=sys.stderr,
    )
    try:
        for generated in _generated_groups(chunks, generate):
            probed = stored_uuids(store, [probe for _, events in generated for probe in _probes(events)])
            for chunk, events in generated:
                found = sum(probe["uuid"] in probed for probe in _probes(events))
                if found == len(_probes(events)):  # all there (or nothing to write)
                    report.hours_skipped += 1
                    report.events_skipped_existing += len(events)
                else:
                    if found:  # half written by an interrupted run: add what is missing
                        present = stored_uuids(store, events)
                        report.events_skipped_existing += len(present)
                        events = [event for event in events if event["uuid"] not in present]
                    batch.add(events)
                    queued += len(events)
                    report.hours_written += 1
                    report.traces += chunk.traces_per_hour
                    if batch.rows >= batch_rows or batch.chars >= BATCH_CHARS:
                        inserter.submit(batch)
                        batch = _ColumnBatch()
                bar.update(1)
                bar.set_postfix(events=queued, refresh=False)
        inserter.submit(batch)
    finally:
        inserter.finish()
        bar.close()
    report.events_written = inserter.rows_written
    report.seconds = round(time.perf_counter() - started, 3)
    return report
