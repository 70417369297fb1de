"""The hourly schedule: the last complete hour for every scheduled team, per team or in shards, per summary
mode, each run with its parameters as run config (TRACE_SUMMARIES_MAX_TRACES, _SUMMARY_MODES, the team
overrides file)."""

from datetime import timedelta

import dagster as dg

from trace_summaries.config import LLMConfig, ScheduleConfig, TeamsConfig, load
from trace_summaries.defs.jobs import trace_summaries_job
from trace_summaries.defs.partition_sets import TEAMS_NAME
from trace_summaries.defs.resources import ClickHouseResource
from trace_summaries.partitions import window_cron
from trace_summaries.scheduling.run_plan import RunDefaults, last_complete_hour, plan_scheduled_runs
from trace_summaries.scheduling.team_overrides import load_team_overrides
from trace_summaries.scheduling.team_set import discover_teams, scheduled_teams

MODE_TAG = "trace_summaries/mode"

# Checked when the code location loads: a bad overrides file stops it with an error naming the team, rather
# than failing the first tick.
load_team_overrides(load(ScheduleConfig).team_overrides)


def wanted_teams(context: dg.ScheduleEvaluationContext, clickhouse: ClickHouseResource) -> set[str]:
    """The team keys a tick schedules: the allowlist, plus (discovery on) teams with recent `$ai_*` events."""
    team_config = load(TeamsConfig)
    discovered: list[int] = []
    if team_config.discover_teams:
        with clickhouse.session() as client:
            discovered = discover_teams(client, context.scheduled_execution_time)
    return {str(team) for team in scheduled_teams(team_config, discovered)}


@dg.schedule(
    name="hourly_trace_summaries_schedule",
    # Every window (an hour by default), at TRACE_SUMMARIES_SCHEDULE_MINUTE into it (modulo a shorter window).
    cron_schedule=window_cron(load(ScheduleConfig).window_minutes, load(ScheduleConfig).schedule_minute),
    execution_timezone="UTC",
    job=trace_summaries_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def hourly_trace_summaries_schedule(
    context: dg.ScheduleEvaluationContext, clickhouse: ClickHouseResource
) -> dg.SkipReason | list[dg.RunRequest]:
    schedule = load(ScheduleConfig)
    scheduled_time = context.scheduled_execution_time
    wanted = wanted_teams(context, clickhouse)
    partitions = context.instance.get_dynamic_partitions(TEAMS_NAME)
    missing = sorted(wanted - set(partitions))
    if missing:
        context.log.warning(f"teams not yet registered as partitions (the team sensor adds them): {missing}")
    hour = last_complete_hour(
        scheduled_time, timedelta(minutes=schedule.schedule_lateness_minutes), schedule.window
    )
    llm = load(LLMConfig)
    defaults = RunDefaults(
        modes=schedule.summary_modes,
        max_traces=schedule.max_traces,
        model=llm.model,
        batch_size=llm.concurrency,
    )
    plan = plan_scheduled_runs(
        hour,
        partitions,
        wanted,
        mode=schedule.schedule_mode,
        shard_threshold=schedule.shard_threshold,
        shard_size=schedule.shard_size,
        defaults=defaults,
        overrides=load_team_overrides(schedule.team_overrides),
    )
    if not plan:
        return dg.SkipReason(f"no scheduled team for {hour:%Y-%m-%d %H}:00 (allowlist empty, discovery off?)")
    requests = []
    for planned in plan:
        run = planned.run
        tags = {
            "trace_summaries/trigger": "schedule",
            "trace_summaries/teams": str(len(run.teams)),
            MODE_TAG: planned.params.mode,
        }
        config = planned.params.run_config()
        if run.is_range:
            tags |= {
                "dagster/asset_partition_range_start": run.first_key,
                "dagster/asset_partition_range_end": run.last_key,
            }
            requests.append(dg.RunRequest(run_key=planned.run_key, run_config=config, tags=tags))
        else:
            requests.append(
                dg.RunRequest(
                    run_key=planned.run_key, partition_key=run.first_key, run_config=config, tags=tags
                )
            )
    return requests
