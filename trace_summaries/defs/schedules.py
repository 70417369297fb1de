"""The hourly schedule: the last complete hour for every scheduled team, per team or in shards."""

import os
from datetime import timedelta

import dagster as dg

from trace_summaries import settings
from trace_summaries.defs.jobs import trace_summaries_job
from trace_summaries.defs.partitions import TEAMS
from trace_summaries.defs.resources import ClickHouseResource
from trace_summaries.run_plan import SCHEDULE_MODES, last_complete_hour, plan_hourly_runs
from trace_summaries.team_set import TeamSetConfig, discover_teams, scheduled_teams

SCHEDULE_MINUTE = settings.configured_int(settings.SCHEDULE_MINUTE)


@dg.schedule(
    name="hourly_trace_summaries_schedule",
    cron_schedule=f"{SCHEDULE_MINUTE} * * * *",
    execution_timezone="UTC",
    job=trace_summaries_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def hourly_trace_summaries_schedule(
    context: dg.ScheduleEvaluationContext, clickhouse: ClickHouseResource
) -> dg.SkipReason | list[dg.RunRequest]:
    lateness = timedelta(minutes=settings.configured_int(settings.SCHEDULE_LATENESS_MINUTES))
    mode = settings.choice_setting(settings.SCHEDULE_MODE, "auto", SCHEDULE_MODES)
    threshold = settings.configured_int(settings.SHARD_THRESHOLD)
    shard_size = settings.configured_int(settings.SHARD_SIZE)

    team_config = TeamSetConfig.from_env(os.environ)
    scheduled_time = context.scheduled_execution_time
    discovered: list[int] = []
    if team_config.discover:
        with clickhouse.session() as client:
            discovered = discover_teams(client, scheduled_time)
    wanted = {str(team) for team in scheduled_teams(team_config, discovered)}
    partitions = context.instance.get_dynamic_partitions(TEAMS.name)
    missing = sorted(wanted - set(partitions))
    if missing:
        context.log.warning(f"teams not yet registered as partitions (the team sensor adds them): {missing}")
    hour = last_complete_hour(scheduled_time, lateness)
    plan = plan_hourly_runs(
        hour,
        partitions,
        wanted,
        mode=mode,
        shard_threshold=threshold,
        shard_size=shard_size,  # type: ignore[arg-type]
    )
    if not plan:
        return dg.SkipReason(f"no scheduled team for {hour:%Y-%m-%d %H}:00 (allowlist empty, discovery off?)")
    requests = []
    for run in plan:
        tags = {"trace_summaries/trigger": "schedule", "trace_summaries/teams": str(len(run.teams))}
        if run.is_range:
            tags |= {
                "dagster/asset_partition_range_start": run.first_key,
                "dagster/asset_partition_range_end": run.last_key,
            }
            requests.append(dg.RunRequest(run_key=run.run_key, tags=tags))
        else:
            requests.append(dg.RunRequest(run_key=run.run_key, partition_key=run.first_key, tags=tags))
    return requests
