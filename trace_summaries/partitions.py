"""Partition keys: the only code that builds or parses a ``<window>|<team>`` key, a window key or a team key.

A team key is the decimal id with no sign, padding, spaces or non-ASCII digits: Dagster splits multi-partition
keys on ``|`` and UI backfills on ``,``, and a key that reaches SQL must be exactly one positive integer. A
window key is Dagster's time-partition format, ``YYYY-MM-DD-HH:MM`` (UTC; ``HH:00`` for the default hour
windows, so it is also Dagster's hourly key); the window is ``TRACE_SUMMARIES_WINDOW_MINUTES`` long from
there (``WINDOW`` by default: an hour). The names still say "hour" where the window is an hour by default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_TEAM_KEY = re.compile(r"[1-9][0-9]{0,17}")
HOUR_KEY_FORMAT = "%Y-%m-%d-%H:%M"
WINDOW = timedelta(hours=1)
# Window sizes (minutes) a cron schedule can tick at: those that divide an hour, and whole hours that divide a
# day. (45 or 90 minutes divide a day too, but no single cron expression steps through them.)
WINDOW_SIZES = (5, 6, 10, 12, 15, 20, 30, 60, 120, 180, 240, 360, 480, 720, 1440)


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
    """The time partition key of the window (an hour by default) that starts at ``hour_start`` (UTC)."""
    return hour_start.astimezone(UTC).strftime(HOUR_KEY_FORMAT)


def parse_hour_key(key: str) -> datetime:
    """The start (UTC) of the window a time key names; ``ValueError`` for anything else."""
    return datetime.strptime(key, HOUR_KEY_FORMAT).replace(tzinfo=UTC)


def window_cron(minutes: int, offset_minute: int = 0) -> str:
    """The cron expression stepping through windows of ``minutes`` (one of ``WINDOW_SIZES``), at
    ``offset_minute`` into each window (kept below the window's length)."""
    if minutes not in WINDOW_SIZES:
        raise ValueError(f"a window of {minutes} minutes is not one of {WINDOW_SIZES}")
    if minutes < 60:
        return f"{offset_minute % minutes}/{minutes} * * * *"
    if minutes == 60:
        return f"{offset_minute % 60} * * * *"
    return f"{offset_minute % 60} */{minutes // 60} * * *"


def window_containing(moment: datetime, window: timedelta) -> datetime:
    """The start of the window of length ``window`` (dividing a day) that contains ``moment`` (UTC)."""
    moment = moment.astimezone(UTC)
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight + ((moment - midnight) // window) * window


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
    window: timedelta = WINDOW

    @property
    def window_end(self) -> datetime:
        return self.window_start + self.window

    @property
    def hour(self) -> str:
        return hour_key(self.window_start)

    @property
    def key(self) -> str:
        return team_window_key(self.hour, self.team_id)

    @classmethod
    def parse(cls, partition_key: str, window: timedelta = WINDOW) -> TeamHour:
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
                f"invalid partition key {partition_key!r}: the window must be YYYY-MM-DD-HH:MM"
            ) from None
        return cls(team_id=team_id, window_start=start, window=window)


def partition_object_name(asset: str, partition_key: str) -> str:
    """``<asset>/<hour>/<team>.jsonl``: readable paths, and one team's hours sit side by side."""
    hour, team = split_key(partition_key)
    return f"{asset}/{hour.replace(':', '')}/{team}.jsonl"
