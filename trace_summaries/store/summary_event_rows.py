"""Reading and replacing the `$ai_trace_summary` events of one (team, window, mode).

Replacement, not append, is what makes re-materialization safe: the partition's events of that mode are
deleted and the new set inserted, so after any number of runs (or a run killed between the two statements,
which the next run repairs) the table holds exactly one event per summarized trace.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from clickhouse_connect.driver.client import Client

from trace_summaries.sampling import as_utc
from trace_summaries.store.trace_store import EVENT_COLUMNS
from trace_summaries.summary_events import SUMMARY_EVENT, SummaryEvent, batch_run_id

# The batch run id pins the team and the window start; the timestamp pins the window end.
_PARTITION_FILTER = """
    team_id = {team_id:Int64}
    AND event = {event:String}
    AND timestamp = {window_end:DateTime64(6, 'UTC')}
    AND JSONExtractString(properties, '$ai_batch_run_id') = {batch_run_id:String}
"""

DELETE_SQL = (
    "DELETE FROM events WHERE"
    + _PARTITION_FILTER
    + " AND JSONExtractString(properties, '$ai_summary_mode') = {mode:String}"
)

SELECT_SQL = (
    "SELECT toString(uuid), team_id, distinct_id, timestamp, properties FROM events WHERE"
    + _PARTITION_FILTER
    + " ORDER BY JSONExtractString(properties, '$ai_summary_mode'), uuid"
)


def _partition_parameters(team_id: int, window_start: datetime, window_end: datetime) -> dict[str, object]:
    return {
        "team_id": team_id,
        "event": SUMMARY_EVENT,
        "window_end": window_end,
        "batch_run_id": batch_run_id(team_id, window_start),
    }


def replace_summary_events(
    client: Client,
    *,
    team_id: int,
    window_start: datetime,
    window_end: datetime,
    mode: str,
    events: Sequence[SummaryEvent],
) -> int:
    foreign = [event.uuid for event in events if event.team_id != team_id or event.properties.mode != mode]
    if foreign:
        raise ValueError(f"events {foreign[:3]} do not belong to team {team_id}, mode {mode}")
    client.command(
        DELETE_SQL, parameters={**_partition_parameters(team_id, window_start, window_end), "mode": mode}
    )
    if events:
        client.insert(
            "events",
            [(e.uuid, e.event, e.properties_json(), e.timestamp, e.team_id, e.distinct_id) for e in events],
            column_names=list(EVENT_COLUMNS),
        )
    return len(events)


def read_summary_events(
    client: Client, *, team_id: int, window_start: datetime, window_end: datetime
) -> list[SummaryEvent]:
    rows = client.query(SELECT_SQL, parameters=_partition_parameters(team_id, window_start, window_end))
    return [
        SummaryEvent.from_row(uuid, team, distinct_id, as_utc(timestamp), properties)
        for uuid, team, distinct_id, timestamp, properties in rows.result_rows
    ]
