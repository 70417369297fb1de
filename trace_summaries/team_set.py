"""Which teams the hourly schedule summarizes: an allowlist, plus optionally teams seen using LLM analytics.

As in the original, an empty allowlist schedules nothing (an operator opts teams in); discovery, when turned
on, adds every team with `$ai_*` events in the last 24 hours. Manual runs may still target any team.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from clickhouse_connect.driver.client import Client

from trace_summaries import settings
from trace_summaries.sampling import AI_EVENT_TYPES
from trace_summaries.teams import parse_team_list

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


@dataclass(frozen=True)
class TeamSetConfig:
    allowlist: tuple[int, ...]
    discover: bool

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> TeamSetConfig:
        discover = (environ.get(settings.DISCOVER_TEAMS) or "0").strip().lower()
        if discover not in ("0", "1", "true", "false", ""):
            raise settings.SettingError(f"{settings.DISCOVER_TEAMS}={discover!r}: use 1 or 0")
        return cls(
            allowlist=tuple(
                parse_team_list(
                    environ.get(settings.ALLOWED_TEAM_IDS) or "", source=settings.ALLOWED_TEAM_IDS
                )
            ),
            discover=discover in ("1", "true"),
        )


def discover_teams(client: Client, now: datetime) -> list[int]:
    rows = client.query(
        DISCOVER_TEAMS_SQL,
        parameters={"event_types": list(AI_EVENT_TYPES), "since": now - DISCOVERY_WINDOW, "until": now},
    ).result_rows
    return [int(team_id) for (team_id,) in rows]


def scheduled_teams(config: TeamSetConfig, discovered: Sequence[int] = ()) -> list[int]:
    return sorted(set(config.allowlist) | (set(discovered) if config.discover else set()))
