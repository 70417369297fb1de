"""`hourly_report`: one materialization per hour summing up every team's run, visible on the asset page."""

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import dagster as dg

from trace_summaries.config import TeamsConfig, load
from trace_summaries.defs.jobs import trace_summaries_job
from trace_summaries.defs.partition_sets import HOURS, TEAMS_NAME
from trace_summaries.partitions import TeamHour, hour_key, split_key, team_window_key
from trace_summaries.sample import TeamHourSample
from trace_summaries.scheduling.report import build_hourly_report
from trace_summaries.write.event import SummaryEvent

_EVERY_TEAM_OF_THE_HOUR = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="hour")
_IN_PROGRESS = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
Value = TypeVar("Value")


def _by_team(values: Mapping[str, Value]) -> dict[int, Value]:
    by_team: dict[int, Value] = {}
    for key, value in values.items():
        try:
            by_team[TeamHour.parse(key).team_id] = value
        except ValueError:  # InvalidTeamKey too
            continue  # nothing is ever written for a key that is not a team
    return by_team


@dg.asset(
    partitions_def=HOURS,
    ins={
        "sampled_traces": dg.AssetIn(partition_mapping=_EVERY_TEAM_OF_THE_HOUR),
        "trace_summaries": dg.AssetIn(partition_mapping=_EVERY_TEAM_OF_THE_HOUR),
    },
    group_name="reports",
    kinds={"dagster"},
)
def hourly_report(
    context: dg.AssetExecutionContext,
    sampled_traces: dict[str, TeamHourSample],
    trace_summaries: dict[str, list[SummaryEvent]],
) -> dg.MaterializeResult:
    """Teams processed and failed (with ids), traces and summaries of the hour, like the original
    coordinator's result."""
    window = context.partition_time_window
    samples = _by_team(dict(sampled_traces))
    summaries = {team: len(events) for team, events in _by_team(dict(trace_summaries)).items()}
    expected = load(TeamsConfig).allowed_team_ids
    report = build_hourly_report(window.start, expected, samples, summaries)
    if report.failed_team_ids:
        context.log.warning(f"{hour_key(window.start)}: teams failed {report.failed_team_ids}")
    return dg.MaterializeResult(
        metadata={
            "teams_processed": report.teams_processed,
            "teams_failed": report.teams_failed,
            "failed_team_ids": dg.MetadataValue.json(report.failed_team_ids),
            "total_traces": report.total_traces,
            "total_summaries": report.total_summaries,
            "teams": dg.MetadataValue.md(report.markdown()),
        }
    )


hourly_report_job = dg.define_asset_job("hourly_report_job", selection=[hourly_report])


@dg.sensor(job=hourly_report_job, minimum_interval_seconds=120, default_status=dg.DefaultSensorStatus.RUNNING)
def hourly_report_sensor(context: dg.SensorEvaluationContext) -> list[dg.RunRequest]:
    """Reports each of the last few hours once none of its runs is still queued or running, and again
    whenever a later run (a retry, a backfill) materializes one of its partitions."""
    teams = context.instance.get_dynamic_partitions(TEAMS_NAME)
    busy = context.instance.get_runs(
        filters=dg.RunsFilter(job_name=trace_summaries_job.name, statuses=_IN_PROGRESS), limit=1000
    )
    busy_hours = {
        split_key(
            run.tags.get("dagster/partition") or run.tags.get("dagster/asset_partition_range_start") or ""
        )[0]
        for run in busy
    }
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    requests = []
    for back in range(1, 4):
        hour = hour_key(now - timedelta(hours=back))
        if hour in busy_hours or not teams:
            continue
        latest = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey("trace_summaries"),
                asset_partitions=[team_window_key(hour, t) for t in teams],
            ),
            limit=1,
        ).records
        if latest:
            requests.append(
                dg.RunRequest(run_key=f"report:{hour}:{latest[0].storage_id}", partition_key=hour)
            )
    return requests
