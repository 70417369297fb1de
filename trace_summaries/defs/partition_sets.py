"""The time window x team partitioning (hours by default), declared once and imported everywhere else.

The hours start at the configured ``TRACE_SUMMARIES_START_DATE`` (fixed, so a deployment's partition set
never moves); the teams are a dynamic set kept by ``team_partitions_sensor`` and ``register-teams``.
"""

import dagster as dg

from trace_summaries.config import ScheduleConfig, load
from trace_summaries.partitions import HOUR_KEY_FORMAT, window_cron

_SCHEDULE = load(ScheduleConfig)
# The time windows (an hour by default, TRACE_SUMMARIES_WINDOW_MINUTES); the dimension keeps its name "hour".
WINDOW = _SCHEDULE.window
HOURS: dg.TimeWindowPartitionsDefinition = (
    dg.HourlyPartitionsDefinition(start_date=_SCHEDULE.start_date, timezone="UTC")
    if _SCHEDULE.window_minutes == 60
    else dg.TimeWindowPartitionsDefinition(
        cron_schedule=window_cron(_SCHEDULE.window_minutes),
        start=_SCHEDULE.start_date,
        fmt=HOUR_KEY_FORMAT,
        timezone="UTC",
    )
)
TEAMS_NAME = "teams"
TEAMS = dg.DynamicPartitionsDefinition(name=TEAMS_NAME)
TEAM_HOUR = dg.MultiPartitionsDefinition({"hour": HOURS, "team": TEAMS})
# Days for the daily clusters, from the same start; the current day is a partition already (end_offset=1), so
# a day can be clustered by hand before it ends (the schedule clusters yesterday).
DAYS = dg.DailyPartitionsDefinition(start_date=_SCHEDULE.start_date[:10], timezone="UTC", end_offset=1)
TEAM_DAY = dg.MultiPartitionsDefinition({"day": DAYS, "team": TEAMS})
