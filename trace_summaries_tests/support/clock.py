"""The tests' one pinned clock: the partition set's first day and the hours tests run partitions for.

The partition set is declared at import from ``TRACE_SUMMARIES_START_DATE``; the suite pins it to
``PARTITIONS_START`` (``support/environment.py``), whatever the shell says, and every test hour is derived
from ``DAY``, which lies inside that set. Nothing here depends on today's date.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from trace_summaries.partitions import hour_key

PARTITIONS_START = date(2026, 11, 1)
# A day well inside the partition set (and in the past of any real run of the suite).
DAY = datetime(2026, 11, 20, tzinfo=UTC)


def hour(at: int, *, days: int = 0) -> datetime:
    """``at`` o'clock (UTC) of ``DAY`` plus ``days``."""
    return DAY + timedelta(days=days, hours=at)


HOUR = hour(9)
HOUR_KEY = hour_key(HOUR)
# The hourly schedule's tick that runs HOUR (at minute 15 of the next hour).
TICK = hour(10) + timedelta(minutes=15)
