"""Team (tenant) identifiers as they appear in partition keys.

A team key is the decimal id with no sign, padding, spaces or non-ASCII digits: Dagster splits multi-partition
keys on ``|`` and UI backfills on ``,``, and a key that reaches SQL must be exactly one positive integer.
"""

from __future__ import annotations

import re

_TEAM_KEY = re.compile(r"[1-9][0-9]{0,17}")


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
