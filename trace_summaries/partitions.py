"""Partition keys: the only code that builds or parses a ``<hour>|<team>`` key, an hour key or a team key.

A team key is the decimal id with no sign, padding, spaces or non-ASCII digits: Dagster splits multi-partition
keys on ``|`` and UI backfills on ``,``, and a key that reaches SQL must be exactly one positive integer. An
hour key is Dagster's hourly format, ``YYYY-MM-DD-HH:00`` (UTC); a window is the hour that starts there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_TEAM_KEY = re.compile(r"[1-9][0-9]{0,17}")
HOUR_KEY_FORMAT = "%Y-%m-%d-%H:00"
WINDOW = timedelta(hours=1)


class InvalidTeamKey(ValueError):
    """A partition key that is not a team id; raised before any query runs."""


def parse_team_key(key: str) -> int:
    if not isinstance(key, str) or not _TEAM_KEY.fullmatch(key):
        raise InvalidTeamKey(
            f"invalid team partition key {key!r}: a team key must be a positive integer team id "
            "written in ASCII digits without sign or leading zeros (for example '2')"
        )
    return int(key)


def parse_team_list(value: str, *, source: str) -> list[int]:
    """A comma-separated list of team ids (e.g. an allowlist variable); ``source`` names it in errors."""
    teams: list[int] = []
    for part in value.split(","):
        if not part.strip():
            continue
        try:
            teams.append(parse_team_key(part.strip()))
        except InvalidTeamKey as exc:
            raise InvalidTeamKey(f"{source}: {exc}") from None
    return sorted(set(teams))


def hour_key(hour_start: datetime) -> str:
    """The hour partition key of the hour that starts at ``hour_start`` (UTC)."""
    return hour_start.astimezone(UTC).strftime(HOUR_KEY_FORMAT)


def parse_hour_key(key: str) -> datetime:
    """The start (UTC) of the hour an hour key names; ``ValueError`` for anything else."""
    return datetime.strptime(key, HOUR_KEY_FORMAT).replace(tzinfo=UTC)


def team_window_key(hour: str, team: str | int) -> str:
    """``<hour>|<team>``: the key of one (hour, team) partition, Dagster's multi-partition key."""
    return f"{hour}|{team}"


def split_key(partition_key: str) -> tuple[str, str]:
    """``(hour key, team key)`` of a ``<hour>|<team>`` key, unvalidated (``TeamHour.parse`` validates)."""
    hour, _, team = str(partition_key).partition("|")
    return hour, team


@dataclass(frozen=True)
class TeamHour:
    """One (hour, team) partition, with the team key validated and the window computed."""

    team_id: int
    window_start: datetime

    @property
    def window_end(self) -> datetime:
        return self.window_start + WINDOW

    @property
    def hour(self) -> str:
        return hour_key(self.window_start)

    @property
    def key(self) -> str:
        return team_window_key(self.hour, self.team_id)

    @classmethod
    def parse(cls, partition_key: str) -> TeamHour:
        """Parse a ``<hour>|<team>`` key; an invalid team key raises ``InvalidTeamKey`` naming the key.

        The team part is validated first: a team key containing ``|`` would otherwise fail later inside
        Dagster with an error that names neither the key nor the rule.
        """
        hour, team = split_key(partition_key)
        team_id = parse_team_key(team)
        try:
            start = parse_hour_key(hour)
        except ValueError:
            raise ValueError(
                f"invalid partition key {partition_key!r}: the hour must be YYYY-MM-DD-HH:00"
            ) from None
        return cls(team_id=team_id, window_start=start)


def partition_object_name(asset: str, partition_key: str) -> str:
    """``<asset>/<hour>/<team>.jsonl``: readable paths, and one team's hours sit side by side."""
    hour, team = split_key(partition_key)
    return f"{asset}/{hour.replace(':', '')}/{team}.jsonl"
