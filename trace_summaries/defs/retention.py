"""Run retention: a daily job that prunes finished runs older than TRACE_SUMMARIES_RUN_RETENTION_DAYS.

Why: Dagster OSS never deletes runs. Hour x team partitions at 1,000 teams make 24,000 partition runs a
day (per-team mode), each with its run row, its tags and dozens of event-log rows (step events, logs,
engine events), plus captured stdout/stderr; nothing bounds them. Schedule and sensor ticks are bounded by
the ``retention:`` section of ``dagster.yaml`` instead (Dagster purges them itself).

What pruning a run deletes, and what it keeps (the design decision):

* ``instance.delete_run`` is NOT used: it deletes every event of the run, its ``ASSET_MATERIALIZATION``
  and ``ASSET_CHECK_EVALUATION`` events included. Those events are the partitions' status: measured on a
  real instance, a partition whose only run was deleted is no longer in
  ``get_materialized_partitions``, and once Dagster's status cache is rebuilt (a new partitions
  definition, a wiped cache) the UI shows it missing, so "backfill missing" would summarize it again (LLM
  cost), and ``hourly_report`` would lose the report's own materialization metadata.
* Pruning deletes the run's event-log rows EXCEPT the records that describe assets rather than the run
  (``KEPT_EVENT_TYPES``: materializations, observations, check evaluations, failures to materialize,
  freshness changes), then its captured logs, then the run row (its tags go with it). Dagster reads a
  materialization whose run is gone as materialized, and a planned materialization whose run is gone as
  neither failed nor in progress (``partition_status_cache``), so partition status is unchanged.
* Trade-offs, accepted: a pruned run's page, logs and config are gone (the UI's link from a
  materialization to its run answers "run not found"); a partition whose latest attempt failed and was
  pruned no longer shows as failed once the status cache is rebuilt; ``hourly_report`` re-materialized for
  an hour older than the retention counts only the teams whose runs remain (its earlier materializations
  keep their figures). What still grows is a few rows per partition and materialization (the kept records,
  and Dagster's check-execution rows): the price of partition status itself.

Never touched: queued, starting, running or canceling runs (only finished statuses are selected), and the
runs of a backfill still in progress (the backfill daemon reads them to know what is left to do). Ordering
makes a crash harmless: the events go first and the run row last, so a run interrupted half-way is still
selected, and pruned, by the next run of the job.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster._core.events import DagsterEventType
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
from dagster._core.storage.tags import BACKFILL_ID_TAG

from trace_summaries.config import RetentionConfig, load

# Records of assets, not of the run that wrote them: what the UI's partition status, the asset pages, check
# history, backfills and the hourly report read. Pruning keeps them.
KEPT_EVENT_TYPES: frozenset[DagsterEventType] = frozenset(
    {
        DagsterEventType.ASSET_MATERIALIZATION,
        DagsterEventType.ASSET_OBSERVATION,
        DagsterEventType.ASSET_CHECK_EVALUATION,
        DagsterEventType.ASSET_FAILED_TO_MATERIALIZE,
        DagsterEventType.FRESHNESS_STATE_CHANGE,
    }
)
FINISHED_STATUSES = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
# Runs fetched and pruned per batch: each batch is one bounded read, then one short delete per run.
BATCH_SIZE = 200


@dataclass
class PruneResult:
    """What one pruning pass did: runs deleted, event-log rows deleted, runs skipped (backfill running)."""

    runs_pruned: int = 0
    events_deleted: int = 0
    runs_skipped: int = 0


def prune_run(instance: dg.DagsterInstance, run_id: str) -> int:
    """Deletes one run but not its asset records (``KEPT_EVENT_TYPES``); returns the event rows deleted.

    Events first, captured logs next, the run row last: interrupted anywhere, the run is still there to be
    pruned again. Needs a SQL event log (sqlite or PostgreSQL, the only ones the project ships).
    """
    storage = instance.event_log_storage
    if not isinstance(storage, SqlEventLogStorage):
        raise TypeError(f"run retention needs a SQL event log storage, not {type(storage).__name__}")
    table = SqlEventLogStorageTable
    kept = [event_type.value for event_type in KEPT_EVENT_TYPES]
    condition = (table.c.run_id == run_id) & (
        table.c.dagster_event_type.is_(None) | table.c.dagster_event_type.not_in(kept)
    )
    deleted = 0
    # sqlite keeps a run's events in a file of its own and copies asset events to an index; PostgreSQL has
    # one table behind both connections (the second delete then finds nothing).
    with storage.run_connection(run_id) as conn:
        deleted += conn.execute(table.delete().where(condition)).rowcount or 0
    with storage.index_connection() as conn:
        deleted += conn.execute(table.delete().where(condition)).rowcount or 0
    instance.compute_log_manager.delete_logs(prefix=[run_id])
    instance.run_storage.delete_run(run_id)
    return deleted


def prune_finished_runs(
    instance: dg.DagsterInstance, ended_before: datetime, *, max_runs: int, batch_size: int = BATCH_SIZE
) -> PruneResult:
    """Prunes (``prune_run``) up to ``max_runs`` runs that finished before ``ended_before``, oldest first.

    A run's last update is when it finished, so ``updated_before`` selects by end time. Runs of a backfill
    that is still in progress are skipped until it is done.
    """
    result = PruneResult()
    backfill_running: dict[str, bool] = {}
    seen_skipped: set[str] = set()
    while result.runs_pruned < max_runs:
        records = instance.get_run_records(
            filters=dg.RunsFilter(statuses=FINISHED_STATUSES, updated_before=ended_before),
            limit=min(batch_size, max_runs - result.runs_pruned) + len(seen_skipped),
            order_by="update_timestamp",
            ascending=True,
        )
        batch = [record.dagster_run for record in records if record.dagster_run.run_id not in seen_skipped]
        if not batch:
            break
        for run in batch:
            backfill_id = run.tags.get(BACKFILL_ID_TAG)
            if backfill_id is not None and backfill_id not in backfill_running:
                backfill = instance.get_backfill(backfill_id)
                backfill_running[backfill_id] = (
                    backfill is not None and backfill.status == BulkActionStatus.REQUESTED
                )
            if backfill_id is not None and backfill_running[backfill_id]:
                seen_skipped.add(run.run_id)
                result.runs_skipped += 1
                continue
            result.events_deleted += prune_run(instance, run.run_id)
            result.runs_pruned += 1
            if result.runs_pruned >= max_runs:
                break
    return result


@dg.op
def prune_old_runs(context: dg.OpExecutionContext) -> dg.Output[dict[str, int]]:
    """Prunes finished runs older than TRACE_SUMMARIES_RUN_RETENTION_DAYS (at most
    TRACE_SUMMARIES_RUN_RETENTION_MAX_RUNS), keeping their asset records; 0 days prunes nothing."""
    config = load(RetentionConfig)
    if config.run_retention_days == 0:
        context.log.info("TRACE_SUMMARIES_RUN_RETENTION_DAYS=0: every run is kept")
        return dg.Output({"runs_pruned": 0, "events_deleted": 0, "runs_skipped": 0})
    ended_before = datetime.now(UTC) - timedelta(days=config.run_retention_days)
    result = prune_finished_runs(context.instance, ended_before, max_runs=config.run_retention_max_runs)
    context.log.info(
        f"pruned {result.runs_pruned} runs that ended before {ended_before:%Y-%m-%d %H:%M} UTC "
        f"({result.events_deleted} event-log rows; {result.runs_skipped} runs of running backfills kept)"
    )
    summary = {
        "runs_pruned": result.runs_pruned,
        "events_deleted": result.events_deleted,
        "runs_skipped": result.runs_skipped,
    }
    return dg.Output(summary, metadata={**summary, "ended_before": ended_before.isoformat()})


@dg.job(executor_def=dg.in_process_executor, tags={"trace_summaries/trigger": "retention"})
def run_retention_job() -> None:
    """Prunes old finished runs (``prune_old_runs``): one op, in process."""
    prune_old_runs()


@dg.schedule(
    name="run_retention_schedule",
    # Daily, away from the hourly schedule's minute (15 by default) and the clusters' 01:30.
    cron_schedule="45 3 * * *",
    execution_timezone="UTC",
    job=run_retention_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def run_retention_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    """Requests the daily pruning run, or skips it when TRACE_SUMMARIES_RUN_RETENTION_DAYS is 0."""
    if load(RetentionConfig).run_retention_days == 0:
        return dg.SkipReason("TRACE_SUMMARIES_RUN_RETENTION_DAYS=0: runs are kept forever")
    return dg.RunRequest()
