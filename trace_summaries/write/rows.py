"""Reading and replacing the `$ai_trace_summary` events of (team, window, mode) partitions.

Replacement, not append, is what makes re-materialization safe: the partition's events of that mode are
deleted and the new set inserted, so after any number of runs (or a run killed between the two statements,
which the next run repairs) the table holds exactly one event per summarized trace.

A ranged run writes many partitions at once. Each ``DELETE`` is a mutation that costs about the same for one
partition as for hundreds, so the partitions of a step are deleted and inserted in a few statements, not
two per partition. And most writes are a partition's first (every scheduled window is new): a count over the
same filter (a read, tens of milliseconds) finds nothing to delete, and the ``DELETE`` (a mutation that
gives every part of the month a new version, ~0.7 s on a 1,000-team table, benchmark 17) is not sent at
all; only re-runs pay for one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from clickhouse_connect.driver.client import Client

from trace_summaries.store import as_utc
from trace_summaries.store.trace_store import EVENT_COLUMNS
from trace_summaries.write.event import SUMMARY_EVENT, SummaryEvent, batch_run_id

# A partition's events are those of its team, stamped with its window end, carrying its batch run id (which
# pins the team and the window start). One tuple per partition; team and time bounds let the primary key
# prune the scan.
_PARTITIONS_FILTER = """
    event = {event:String}
    AND team_id IN {team_ids:Array(Int64)}
    AND timestamp BETWEEN {first_end:DateTime64(6, 'UTC')} AND {last_end:DateTime64(6, 'UTC')}
"""
_PARTITION_KEY = "(team_id, timestamp, JSONExtractString(properties, '$ai_batch_run_id'))"
_MODE = "JSONExtractString(properties, '$ai_summary_mode')"

DELETE_SQL = (
    "DELETE FROM events WHERE"
    + _PARTITIONS_FILTER
    + f" AND ({_PARTITION_KEY[1:-1]}, {_MODE})"
    + " IN {keys:Array(Tuple(Int64, DateTime64(6, 'UTC'), String, String))}"
)

# Whether any of the chunk's (partition, mode) keys has events: a first write skips its DELETE.
EXISTING_SQL = (
    "SELECT count() FROM events WHERE"
    + _PARTITIONS_FILTER
    + f" AND ({_PARTITION_KEY[1:-1]}, {_MODE})"
    + " IN {keys:Array(Tuple(Int64, DateTime64(6, 'UTC'), String, String))}"
)

SELECT_SQL = (
    "SELECT toString(uuid), team_id, distinct_id, timestamp, properties FROM events WHERE"
    + _PARTITIONS_FILTER
    + f" AND {_PARTITION_KEY} IN {{keys:Array(Tuple(Int64, DateTime64(6, 'UTC'), String))}}"
    + f" ORDER BY team_id, timestamp, {_MODE}, uuid"
)

# Partitions per statement: keeps the query's parameters (~80 bytes a partition) far below server limits
# on a backfill that writes thousands of partitions in one run.
STATEMENT_PARTITIONS = 200


@dataclass(frozen=True, slots=True)
class SummaryWindow:
    """The (team, hour) a set of summary events belongs to."""

    team_id: int
    window_start: datetime
    window_end: datetime

    @property
    def batch_run_id(self) -> str:
        return batch_run_id(self.team_id, self.window_start, self.window_end)


class SummaryBatch(Protocol):
    """What one partition writes: its window, its mode and its events (``PartitionSummaries`` is one)."""

    @property
    def team_id(self) -> int: ...
    @property
    def window_start(self) -> datetime: ...
    @property
    def window_end(self) -> datetime: ...
    @property
    def mode(self) -> str: ...
    @property
    def events(self) -> list[SummaryEvent]: ...


_T = TypeVar("_T")


def _chunks(items: Sequence[_T]) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), STATEMENT_PARTITIONS):
        yield items[start : start + STATEMENT_PARTITIONS]


def _bounds(windows: Sequence[SummaryWindow]) -> dict[str, object]:
    ends = [as_utc(window.window_end) for window in windows]
    return {
        "event": SUMMARY_EVENT,
        "team_ids": sorted({window.team_id for window in windows}),
        "first_end": min(ends),
        "last_end": max(ends),
    }


def replace_partitions(client: Client, batches: Sequence[SummaryBatch]) -> int:
    """Replaces the events of every batch's (team, window, mode); returns how many events were written."""
    for batch in batches:
        foreign = [
            e.uuid for e in batch.events if e.team_id != batch.team_id or e.properties.mode != batch.mode
        ]
        if foreign:
            raise ValueError(f"events {foreign[:3]} do not belong to team {batch.team_id}, mode {batch.mode}")
    for chunk in _chunks(batches):
        windows = [SummaryWindow(b.team_id, b.window_start, b.window_end) for b in chunk]
        keys = [
            (w.team_id, as_utc(w.window_end), w.batch_run_id, b.mode)
            for w, b in zip(windows, chunk, strict=True)
        ]
        parameters = {**_bounds(windows), "keys": keys}
        if client.query(EXISTING_SQL, parameters=parameters).result_rows[0][0]:
            client.command(DELETE_SQL, parameters=parameters)
    rows = [
        (e.uuid, e.event, e.properties_json(), e.timestamp, e.team_id, e.distinct_id)
        for batch in batches
        for e in batch.events
    ]
    if rows:
        client.insert("events", rows, column_names=list(EVENT_COLUMNS))
    return len(rows)


def read_partitions(
    client: Client, windows: Sequence[SummaryWindow]
) -> dict[SummaryWindow, list[SummaryEvent]]:
    """Every window's summary events (all modes), in a stable order; a window without events maps to []."""
    loaded: dict[SummaryWindow, list[SummaryEvent]] = {window: [] for window in windows}
    by_key = {(w.team_id, as_utc(w.window_end), w.batch_run_id): w for w in windows}
    for chunk in _chunks(windows):
        keys = [(w.team_id, as_utc(w.window_end), w.batch_run_id) for w in chunk]
        rows = client.query(SELECT_SQL, parameters={**_bounds(chunk), "keys": keys}).result_rows
        for uuid, team, distinct_id, timestamp, properties in rows:
            event = SummaryEvent.from_row(uuid, team, distinct_id, as_utc(timestamp), properties)
            window = by_key.get((int(team), event.timestamp, event.properties.batch_run_id))
            if window is not None:
                loaded[window].append(event)
    return loaded
