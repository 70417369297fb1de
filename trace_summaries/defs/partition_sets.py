"""The hour x team partitioning, declared once and imported everywhere else.

The hours start at the configured ``TRACE_SUMMARIES_START_DATE`` (fixed, so a deployment's partition set
never moves); the teams are a dynamic set kept by ``team_partitions_sensor`` and ``register-teams``.
"""

import dagster as dg

from trace_summaries.config import ScheduleConfig, load

HOURS = dg.HourlyPartitionsDefinition(start_date=load(ScheduleConfig).start_date, timezone="UTC")
TEAMS_NAME = "teams"
TEAMS = dg.DynamicPartitionsDefinition(name=TEAMS_NAME)
TEAM_HOUR = dg.MultiPartitionsDefinition({"hour": HOURS, "team": TEAMS})
