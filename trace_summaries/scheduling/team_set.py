"""Which teams the hourly schedule summarizes: an allowlist, plus optionally teams seen using LLM analytics.

As in the original, an empty allowlist schedules nothing (an operator opts teams in); discovery, when turned
on, adds every team with `$ai_*` events in the last 24 hours. Manual runs may still target any team.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from clickhouse_connect.driver.client import Client

from trace_summaries.config import TeamsConfig
from trace_summaries.sample import AI_EVENT_TYPES

DISCOVERY_WINDOW = timedelta(hours=24)

DISCOVER_TEAMS_SQL = """
SELECT DISTINCT team_id
FROM events
WHERE event IN {event_types:Array(String)}
  AND timestamp >= {since:DateTime64(6, 'UTC')}
  AND timestamp < {until:DateTime64(6, 'UTC')}
  AND team_id > 0
ORDER BY team_id
"""


def discover_teams(client: Client, now: datetime) -> list[int]:
    rows = client.query(
        DISCOVER_TEAMS_SQL,
        parameters={"event_types": list(AI_EVENT_TYPES), "since": now - DISCOVERY_WINDOW, "until": now},
    ).result_rows
    return [int(team_id) for (team_id,) in rows]


def scheduled_teams(config: TeamsConfig, discovered: Sequence[int] = ()) -> list[int]:
    return sorted(set(config.allowed_team_ids) | (set(discovered) if config.discover_teams else set()))
