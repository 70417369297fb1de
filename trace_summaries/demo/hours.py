"""Which hours a seeding run covers: UTC hour starts, the unit of both seeding and summarization."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_HOUR = timedelta(hours=1)
# Accepted spellings of an hour: ISO 8601 (with or without zone; naive means UTC) and Dagster's hour
# partition keys, so a partition key can be pasted into `--start`.
_PARTITION_KEY_FORMAT = "%Y-%m-%d-%H:%M"


def floor_hour(moment: datetime) -> datetime:
    """The start of the UTC hour containing ``moment`` (which must be timezone-aware)."""
    if moment.tzinfo is None:
        raise ValueError(f"expected a timezone-aware datetime, got naive {moment.isoformat()}")
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def hour_range(start: datetime, count: int) -> list[datetime]:
    """``count`` consecutive hour starts from ``start`` (an hour boundary), oldest first."""
    if count < 0:
        raise ValueError(f"hour count must be >= 0, got {count}")
    first = floor_hour(start)
    if first != start.astimezone(UTC):
        raise ValueError(f"{start.isoformat()} is not the start of an hour")
    return [first + i * _HOUR for i in range(count)]


def default_demo_hours(now: datetime, hours: int) -> list[datetime]:
    """The last ``hours`` complete UTC hours before ``now``, oldest first.

    Complete hours only: the current hour is still being written to by real apps, and the pipeline's hour
    partitions only become materializable once their hour has ended.
    """
    return hour_range(floor_hour(now) - hours * _HOUR, hours)


def parse_hour(text: str) -> datetime:
    """An hour start from ``2026-11-01T13:00``, ``…T13:00:00Z``, ``…T13`` or ``2026-11-01-13:00``.

    Times without a zone are UTC. A time that is not on the hour is an error rather than silently floored, so
    a typo cannot seed a different hour than intended.
    """
    raw = text.strip()
    try:
        moment = datetime.strptime(raw, _PARTITION_KEY_FORMAT)
    except ValueError:
        try:
            moment = datetime.fromisoformat(raw if len(raw) != 13 else f"{raw}:00")
        except ValueError:
            raise ValueError(f"{text!r} is not an ISO hour such as 2026-11-01T13:00 (UTC)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    if floor_hour(moment) != moment:
        raise ValueError(f"{text!r} is not the start of an hour (minutes and seconds must be zero)")
    return moment
