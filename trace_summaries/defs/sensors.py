"""Sensors: keep the team partitions in step with the configured teams, retry failed team partitions, and
name the team and hour of every failed run."""

import json
from datetime import UTC, datetime

import dagster as dg

from trace_summaries.config import ScheduleConfig, TeamsConfig, load
from trace_summaries.defs.jobs import trace_summaries_job
from trace_summaries.defs.partition_failures import failed_partitions, retry_attempt, retry_tags
from trace_summaries.defs.partition_sets import TEAMS, TEAMS_NAME
from trace_summaries.defs.resources import ClickHouseResource
from trace_summaries.scheduling.team_set import discover_teams, scheduled_teams


@dg.sensor(minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.RUNNING)
def team_partitions_sensor(
    context: dg.SensorEvaluationContext, clickhouse: ClickHouseResource
) -> dg.SensorResult:
    """Adds configured teams as partitions. Teams that leave the set are not deleted: their history stays
    and they remain available for manual runs; the schedule simply stops requesting them."""
    config = load(TeamsConfig)
    discovered: list[int] = []
    if config.discover_teams:
        with clickhouse.session() as client:
            discovered = discover_teams(client, datetime.now(UTC))
    wanted = [str(team) for team in scheduled_teams(config, discovered)]
    existing = context.instance.get_dynamic_partitions(TEAMS_NAME)
    new = [team for team in wanted if team not in set(existing)]
    retired = sorted(set(existing) - set(wanted), key=int)
    if new:
        context.log.info(f"adding team partitions {new}")
    if retired:
        context.log.info(f"teams no longer scheduled (history kept): {retired}")
    return dg.SensorResult(
        dynamic_partitions_requests=[TEAMS.build_add_request(new)] if new else [],
        cursor=json.dumps({"scheduled": wanted, "retired": retired}),
    )


@dg.sensor(
    job=trace_summaries_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING
)
def failed_partitions_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Re-requests, one run per partition, the teams that failed inside a ranged run, and retries of those
    that failed again, until TRACE_SUMMARIES_RETRY_FAILED_MAX attempts."""
    max_attempts = load(ScheduleConfig).retry_failed_max
    since = float(context.cursor) if context.cursor else 0.0
    records = context.instance.get_run_records(
        filters=dg.RunsFilter(
            job_name=trace_summaries_job.name,
            statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE],
            updated_after=datetime.fromtimestamp(since, UTC),
        ),
        order_by="update_timestamp",
        ascending=True,
        limit=500,
    )
    requests: list[dg.RunRequest] = []
    for record in records:
        run = record.dagster_run
        since = max(since, record.update_timestamp.timestamp())
        attempt = retry_attempt(run.tags)
        if run.status == dg.DagsterRunStatus.SUCCESS:
            failed = failed_partitions(run.tags)
        elif attempt > 0 and "dagster/partition" in run.tags:
            failed = [run.tags["dagster/partition"]]
        else:
            failed = []  # an ordinary failed run: run retries (dagster.yaml) and the UI handle it
        for key in failed:
            if attempt + 1 > max_attempts:
                context.log.warning(f"{key}: giving up after {attempt} retries (run {run.run_id})")
                continue
            requests.append(
                dg.RunRequest(
                    run_key=f"retry:{key}:{attempt + 1}:{run.run_id}",
                    partition_key=key,
                    tags=retry_tags(attempt + 1, run.run_id),
                )
            )
    return dg.SensorResult(run_requests=requests, cursor=str(since))


@dg.run_failure_sensor(monitored_jobs=[trace_summaries_job], default_status=dg.DefaultSensorStatus.RUNNING)
def trace_summaries_failure_sensor(context: dg.RunFailureSensorContext) -> None:
    """One log line per failed run naming the team(s) and hour(s): the hook to alert from."""
    tags = context.dagster_run.tags
    scope = tags.get("dagster/partition") or (
        f"{tags.get('dagster/asset_partition_range_start')}...{tags.get('dagster/asset_partition_range_end')}"
    )
    context.log.error(
        f"trace summaries run {context.dagster_run.run_id} failed for {scope}: "
        f"{context.failure_event.message or 'see the run'}"
    )
