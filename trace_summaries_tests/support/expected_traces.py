"""An oracle for end-to-end tests: which traces the pipeline must summarize, computed independently of the
pipeline's own sampling code (a trace belongs to the hour of its first `$ai_*` event; the README's guards
of at most 50 events and 2,000,000 property characters; the 100-trace cap is never reached in tests), and
what the pipeline actually wrote."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from trace_summaries.sample import AI_EVENT_TYPES
from trace_summaries.store import TraceStore, as_utc

EXPECTED_TRACES_SQL = """
SELECT team_id, toStartOfHour(first_seen) AS hour, trace_id
FROM (
    SELECT team_id, ai_trace_id AS trace_id, min(timestamp) AS first_seen,
           count() AS events, sum(length(properties)) AS chars
    FROM events
    WHERE team_id IN {teams:Array(Int64)} AND event IN {event_types:Array(String)} AND ai_trace_id != ''
    GROUP BY team_id, ai_trace_id
)
WHERE first_seen >= {start:DateTime64(6, 'UTC')} AND first_seen < {end:DateTime64(6, 'UTC')}
  AND events <= 50 AND chars <= 2000000
"""

# A summary event is stamped with its window's end: one hour after the hour it summarizes.
SUMMARY_EVENTS_SQL = """
SELECT toString(uuid), team_id, timestamp - INTERVAL 1 HOUR, JSONExtractString(properties, '$ai_trace_id')
FROM events
WHERE event = '$ai_trace_summary' AND team_id IN {teams:Array(Int64)}
"""


def expected_traces(
    store: TraceStore, teams: Iterable[int], start: datetime, end: datetime
) -> set[tuple[int, datetime, str]]:
    """``(team, hour, trace id)`` of every trace whose first event falls in ``[start, end)``."""
    with store.session() as client:
        rows = client.query(
            EXPECTED_TRACES_SQL,
            parameters={
                "teams": list(teams),
                "event_types": list(AI_EVENT_TYPES),
                "start": start,
                "end": end,
            },
        ).result_rows
    return {(int(team), as_utc(hour), str(trace)) for team, hour, trace in rows}


def summary_rows(store: TraceStore, teams: Iterable[int]) -> list[tuple[str, int, datetime, str]]:
    """``(uuid, team, hour, trace id)`` of every summary event of these teams."""
    with store.session() as client:
        rows = client.query(SUMMARY_EVENTS_SQL, parameters={"teams": list(teams)}).result_rows
    return [(str(uuid), int(team), as_utc(hour), str(trace)) for uuid, team, hour, trace in rows]


def summary_count_and_distinct(store: TraceStore) -> tuple[int, int]:
    """``count()`` and ``uniqExact(uuid)`` of every summary event in the store: equal when nothing is
    duplicated."""
    with store.session() as client:
        ((total, distinct),) = client.query(
            "SELECT count(), uniqExact(uuid) FROM events WHERE event = '$ai_trace_summary'"
        ).result_rows
    return int(total), int(distinct)


def summaries_by_team(store: TraceStore) -> dict[int, int]:
    """How many summary events each team has in the store."""
    with store.session() as client:
        rows = client.query(
            "SELECT team_id, count() FROM events WHERE event = '$ai_trace_summary' GROUP BY team_id"
        ).result_rows
    return {int(team): int(count) for team, count in rows}
