"""The hour x team partitioning, declared once and imported everywhere else."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import dagster as dg

from trace_summaries import settings
from trace_summaries.teams import parse_team_key

HOURS = dg.HourlyPartitionsDefinition(start_date=settings.partitions_start(), timezone="UTC")
TEAMS = dg.DynamicPartitionsDefinition(name="teams")
TEAM_HOUR = dg.MultiPartitionsDefinition({"hour": HOURS, "team": TEAMS})


@dataclass(frozen=True)
class TeamHour:
    """One (hour, team) partition, with the team key already validated."""

    key: str
    team_id: int
    window_start: datetime
    window_end: datetime


def team_hour(partition_key: str) -> TeamHour:
    """Parse a ``<hour>|<team>`` key; an invalid team key raises ``InvalidTeamKey`` with a clear message.

    The team part is validated before Dagster parses the key: a team key containing ``|`` would otherwise
    fail inside Dagster with an error that names neither the key nor the rule.
    """
    hour_key, _, team_key = str(partition_key).partition("|")
    team_id = parse_team_key(team_key)
    multi_key = TEAM_HOUR.get_partition_key_from_str(f"{hour_key}|{team_key}")
    window = HOURS.time_window_for_partition_key(multi_key.keys_by_dimension["hour"])
    return TeamHour(key=str(multi_key), team_id=team_id, window_start=window.start, window_end=window.end)


def team_hours(partition_keys: Sequence[str]) -> list[TeamHour]:
    return [team_hour(key) for key in partition_keys]
