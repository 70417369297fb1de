"""Sensors: keep the team partitions in step with the configured teams, retry failed team partitions, and
name the team and hour of every failed run."""

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import dagster as dg

from trace_summaries.config import ScheduleConfig, TeamsConfig, load
from trace_summaries.defs.jobs import trace_summaries_job
from trace_summaries.defs.partition_failures import (
    FAILED_PARTITIONS_TAG,
    RETRY_ATTEMPT_TAG,
    RETRY_OF_TAG,
    failed_partitions,
    retry_attempt,
    retry_tags,
)
from trace_summaries.defs.partition_sets import TEAMS, TEAMS_NAME
from trace_summaries.defs.resources import ClickHouseResource
from trace_summaries.scheduling.team_set import discover_teams, scheduled_teams

TRIGGER_TAG = "trace_summaries/trigger"
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
# Set by Dagster on a failed run when instance run retries (run_retries) will launch it again.
WILL_RETRY_TAG = "dagster/will_retry"


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


@dataclass
class RetryPlan:
    """One evaluation of the retry sensor: what to launch now, and the cursor (the newest run seen, and the
    failed runs whose retry is not yet due: run id -> when it is due)."""

    requests: list[dg.RunRequest] = field(default_factory=list)
    since: float = 0.0
    waiting: dict[str, float] = field(default_factory=dict)

    @property
    def cursor(self) -> str:
        return json.dumps({"since": self.since, "waiting": self.waiting}, sort_keys=True)

    @classmethod
    def from_cursor(cls, cursor: str | None) -> "RetryPlan":
        if not cursor:
            return cls()
        state = json.loads(cursor)
        if isinstance(state, int | float):  # the cursor of earlier versions: the newest run seen
            return cls(since=float(state))
        return cls(since=float(state["since"]), waiting={k: float(v) for k, v in state["waiting"].items()})


def retry_delay_s(attempt: int, base_delay_s: float) -> float:
    """How long after a failure retry number ``attempt`` (1, 2, ...) is launched: base x 2^(attempt-1)."""
    return base_delay_s * 2 ** (attempt - 1)


def _retryable(run: dg.DagsterRun) -> list[tuple[str, dict[str, str]]]:
    """What to launch again for a finished run: (scope, partition tags) per retry, none if nothing failed.

    A run of the schedule or a retry that failed is retried whole, with its partition or range (whichever
    mode launched it); a run that succeeded except for some partitions of its range gets one run per failed
    partition. A failed run the daemon retries itself (``dagster/will_retry``: its process died, see
    run_retries in deploy/dagster.yaml) is left to it, and failed runs launched by hand are left to their
    launcher.
    """
    tags = run.tags
    if run.status == dg.DagsterRunStatus.SUCCESS:
        return [(key, {PARTITION_TAG: key}) for key in failed_partitions(tags)]
    scheduled = tags.get(TRIGGER_TAG) == "schedule" or retry_attempt(tags) > 0
    if not scheduled or tags.get(WILL_RETRY_TAG) == "true":
        return []
    if PARTITION_TAG in tags:
        return [(tags[PARTITION_TAG], {PARTITION_TAG: tags[PARTITION_TAG]})]
    if RANGE_START_TAG in tags and RANGE_END_TAG in tags:
        scope = f"{tags[RANGE_START_TAG]}...{tags[RANGE_END_TAG]}"
        return [(scope, {RANGE_START_TAG: tags[RANGE_START_TAG], RANGE_END_TAG: tags[RANGE_END_TAG]})]
    return []


def _retry_request(run: dg.DagsterRun, scope: str, partition_tags: dict[str, str]) -> dg.RunRequest:
    """The same partition(s), run config and tags as ``run``, one attempt further."""
    attempt = retry_attempt(run.tags) + 1
    kept = {
        key: value
        for key, value in run.tags.items()
        if not key.startswith("dagster/")
        and key not in (FAILED_PARTITIONS_TAG, RETRY_ATTEMPT_TAG, RETRY_OF_TAG)
    }
    tags = kept | retry_tags(attempt, run.run_id)
    run_key = f"retry:{scope}:{attempt}:{run.run_id}"
    if PARTITION_TAG in partition_tags:
        return dg.RunRequest(
            run_key=run_key,
            partition_key=partition_tags[PARTITION_TAG],
            run_config=dict(run.run_config),
            tags=tags,
        )
    return dg.RunRequest(run_key=run_key, run_config=dict(run.run_config), tags=tags | partition_tags)


def plan_retries(
    instance: dg.DagsterInstance,
    cursor: str | None,
    *,
    now: float,
    max_attempts: int,
    base_delay_s: float,
    log: logging.Logger | dg.DagsterLogManager,
) -> RetryPlan:
    """The retries due at ``now`` (epoch seconds) for the job's runs finished since the cursor and those
    still waiting; each failed run is retried at most once, and a chain at most ``max_attempts`` times."""
    plan = RetryPlan.from_cursor(cursor)
    since = plan.since
    records = list(
        instance.get_run_records(
            filters=dg.RunsFilter(
                job_name=trace_summaries_job.name,
                statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE],
                updated_after=datetime.fromtimestamp(since, UTC),
            ),
            order_by="update_timestamp",
            ascending=True,
            limit=500,
        )
    )
    waiting = dict(plan.waiting)
    if waiting:
        new_ids = {record.dagster_run.run_id for record in records}
        records += instance.get_run_records(
            filters=dg.RunsFilter(run_ids=[run_id for run_id in waiting if run_id not in new_ids])
        )
    result = RetryPlan(since=since)
    for record in records:
        run = record.dagster_run
        if run.run_id not in waiting:
            result.since = max(result.since, record.update_timestamp.timestamp())
        retries = _retryable(run)
        if not retries:
            continue
        attempt = retry_attempt(run.tags) + 1
        if attempt > max_attempts:
            log.warning(f"{retries[0][0]}: giving up after {attempt - 1} retries (run {run.run_id})")
            continue
        ended = record.end_time or record.update_timestamp.timestamp()
        due = ended + retry_delay_s(attempt, base_delay_s)
        if due > now:
            result.waiting[run.run_id] = due
            continue
        result.requests += [_retry_request(run, scope, tags) for scope, tags in retries]
    return result


@dg.sensor(
    job=trace_summaries_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING
)
def failed_partitions_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Retries failed work of the schedule, until TRACE_SUMMARIES_RETRY_FAILED_MAX attempts, the n-th after
    TRACE_SUMMARIES_RETRY_FAILED_DELAY_SECONDS x 2^(n-1): a failed scheduled run (per team or ranged) with
    the same partition(s), run config and tags; each team that failed inside a ranged run, as a run of its
    own; and retries that failed again."""
    schedule = load(ScheduleConfig)
    plan = plan_retries(
        context.instance,
        context.cursor,
        now=time.time(),
        max_attempts=schedule.retry_failed_max,
        base_delay_s=schedule.retry_failed_delay_seconds,
        log=context.log,
    )
    return dg.SensorResult(run_requests=plan.requests, cursor=plan.cursor)


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
