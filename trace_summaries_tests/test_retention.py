"""Run and tick retention on real Dagster instances (sqlite on disk, and PostgreSQL with deploy/dagster.yaml).

Runs are real: partitions of the production job executed on the embedded store, and run records created
through the instance's API for the states a run of ours cannot be held in (queued, started, failed before
it began). Their age is set by moving their timestamps back in the instance's run storage, as N days of
waiting would. What matters, and is asserted: old finished runs go with most of their event-log rows, recent
and unfinished runs stay, and every partition stays exactly as materialized as before, in the raw records
and in Dagster's status cache rebuilt from scratch (what the UI and "backfill missing" read), unlike
Dagster's own ``delete_run``, which makes a partition missing (asserted too, so the check can fail).
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.instance.ref import InstanceRef
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.scheduler.instigation import TickStatus
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value
from dagster._core.storage.runs.schema import RunsTable
from dagster._core.storage.tags import BACKFILL_ID_TAG
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from trace_summaries.defs.partition_sets import TEAMS
from trace_summaries.defs.retention import (
    KEPT_EVENT_TYPES,
    prune_finished_runs,
    run_retention_job,
    run_retention_schedule,
)
from trace_summaries.demo import seed_store
from trace_summaries.store import TraceStore
from trace_summaries_harness.postgres import PostgresInfo, postgres_server
from trace_summaries_tests.support import clock
from trace_summaries_tests.support.pipeline_defs import pipeline_definitions

PROJECT = Path(__file__).resolve().parents[1]
SUMMARIES = dg.AssetKey("trace_summaries")
OLD = timedelta(days=40)  # older than the default retention (30 days)
RETENTION_DAYS = "TRACE_SUMMARIES_RUN_RETENTION_DAYS"
KEPT = {event_type.value for event_type in KEPT_EVENT_TYPES}


@pytest.fixture
def chdb_store(tmp_path: Path) -> TraceStore:
    store = TraceStore(f"chdb://{tmp_path / 'clickhouse'}")
    store.ensure_schema()
    seed_store(store, [3, 5, 7], [clock.HOUR], 3, progress=False, oversized_fraction=0.0, neighbours=False)
    return store


def key(team: int) -> str:
    return f"{clock.HOUR_KEY}|{team}"


def run_partition(defs: dg.Definitions, instance: dg.DagsterInstance, team: int) -> str:
    """One real run of the production job for the team's partition; its run id."""
    result = defs.resolve_job_def("trace_summaries_job").execute_in_process(
        instance=instance, partition_key=key(team), raise_on_error=False
    )
    assert result.success
    return result.run_id


# Where a queued run would be launched from (Dagster requires it of queued runs): the code location.
ORIGIN = RemoteJobOrigin(
    repository_origin=RemoteRepositoryOrigin(
        code_location_origin=InProcessCodeLocationOrigin(
            loadable_target_origin=LoadableTargetOrigin(module_name="trace_summaries.definitions")
        ),
        repository_name="__repository__",
    ),
    job_name=run_retention_job.name,
)


def api_run(instance: dg.DagsterInstance, status: dg.DagsterRunStatus) -> str:
    """A run record in ``status``, created through the instance's API (of the retention job: any job)."""
    return instance.create_run_for_job(run_retention_job, status=status, remote_job_origin=ORIGIN).run_id


def age(instance: dg.DagsterInstance, run_ids: list[str], by: timedelta) -> None:
    """Moves the runs' creation, update, start and end times back by ``by`` in the run storage."""
    storage: Any = instance.run_storage
    with storage.connect() as conn:
        for record in instance.get_run_records(filters=dg.RunsFilter(run_ids=run_ids)):
            shift = {
                "create_timestamp": record.create_timestamp.replace(tzinfo=None) - by,
                "update_timestamp": record.update_timestamp.replace(tzinfo=None) - by,
            }
            if record.start_time is not None:
                shift["start_time"] = record.start_time - by.total_seconds()
            if record.end_time is not None:
                shift["end_time"] = record.end_time - by.total_seconds()
            conn.execute(
                RunsTable.update().where(RunsTable.c.run_id == record.dagster_run.run_id).values(**shift)
            )


def event_types(instance: dg.DagsterInstance, run_id: str) -> Counter[str]:
    records = instance.get_records_for_run(run_id, limit=100_000).records
    return Counter(
        r.event_log_entry.dagster_event.event_type_value if r.event_log_entry.dagster_event else "LOG"
        for r in records
    )


def partitions_def(defs: dg.Definitions) -> dg.PartitionsDefinition:
    graph = defs.resolve_job_def("trace_summaries_job").asset_layer.asset_graph
    partitions = graph.get(SUMMARIES).partitions_def
    assert partitions is not None
    return partitions


def status_cache(instance: dg.DagsterInstance, partitions: dg.PartitionsDefinition) -> list[str]:
    """Materialized partitions per Dagster's status cache (what the UI's partition status reads)."""
    value = get_and_update_asset_status_cache_value(
        instance, SUMMARIES, partitions, dynamic_partitions_loader=instance
    )
    assert value is not None
    return sorted(value.deserialize_materialized_partition_subsets(partitions).get_partition_keys())


def rebuilt_status(instance: dg.DagsterInstance, partitions: dg.PartitionsDefinition) -> list[str]:
    """The same, recomputed from the event log (as after a partitions-definition change)."""
    instance.wipe_asset_cached_status([SUMMARIES])
    return status_cache(instance, partitions)


def test_the_retention_job_prunes_old_finished_runs_keeps_the_rest_and_every_partition_status(
    chdb_store: TraceStore, instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance.add_dynamic_partitions(TEAMS.name, ["3", "5", "7"])
    defs = pipeline_definitions(chdb_store, tmp_path)
    partitions = partitions_def(defs)
    old_done = [run_partition(defs, instance, 3), run_partition(defs, instance, 5)]
    old_failed = api_run(instance, dg.DagsterRunStatus.FAILURE)
    old_active = [
        api_run(instance, dg.DagsterRunStatus.QUEUED),
        api_run(instance, dg.DagsterRunStatus.STARTED),
    ]
    recent = run_partition(defs, instance, 7)
    age(instance, [*old_done, old_failed, *old_active], OLD)

    materialized = {key(3), key(5), key(7)}
    assert instance.get_materialized_partitions(SUMMARIES) == materialized
    assert status_cache(instance, partitions) == sorted(materialized)
    before = {run_id: event_types(instance, run_id) for run_id in old_done}
    runs_before = instance.get_runs_count()
    logs_dir = Path(instance.root_directory) / "storage"
    assert all((logs_dir / run_id).is_dir() for run_id in old_done)  # captured stdout/stderr

    monkeypatch.setenv(RETENTION_DAYS, "30")
    result = run_retention_job.execute_in_process(instance=instance)

    assert result.success
    assert result.output_for_node("prune_old_runs")["runs_pruned"] == 3
    for run_id in [*old_done, old_failed]:
        assert instance.get_run_record_by_id(run_id) is None
    for run_id in [*old_active, recent, result.run_id]:
        assert instance.get_run_record_by_id(run_id) is not None
    assert instance.get_runs_count() == runs_before - 3 + 1  # the retention run itself is recent
    for run_id in old_done:
        after = event_types(instance, run_id)
        assert set(after) <= KEPT, after
        # Every asset record is still there, one for one; the run's own rows are gone.
        assert after == Counter({t: n for t, n in before[run_id].items() if t in KEPT})
        assert after["ASSET_MATERIALIZATION"] == 2 and after["ASSET_CHECK_EVALUATION"] == 1
        assert sum(before[run_id].values()) - sum(after.values()) >= 20
        assert not (logs_dir / run_id).exists()

    # The property that matters: no partition looks unmaterialized, in the raw records, in the cached status
    # and in the status rebuilt from scratch.
    assert instance.get_materialized_partitions(SUMMARIES) == materialized
    assert status_cache(instance, partitions) == sorted(materialized)
    assert rebuilt_status(instance, partitions) == sorted(materialized)
    [latest] = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=SUMMARIES, asset_partitions=[key(3)]), limit=1
    ).records
    assert latest.event_log_entry.run_id == old_done[0]
    assert latest.asset_materialization is not None and latest.asset_materialization.metadata

    # Dagster's own delete_run, by contrast, loses the partition: the assertions above can fail.
    instance.delete_run(recent)
    assert instance.get_materialized_partitions(SUMMARIES) == {key(3), key(5)}
    assert rebuilt_status(instance, partitions) == sorted({key(3), key(5)})


def test_pruning_goes_oldest_first_in_bounded_passes(instance: dg.DagsterInstance) -> None:
    runs = [api_run(instance, dg.DagsterRunStatus.SUCCESS) for _ in range(5)]
    for n, run_id in enumerate(runs):  # runs[0] is the oldest
        age(instance, [run_id], OLD + timedelta(hours=len(runs) - n))
    cutoff = datetime.now(UTC) - timedelta(days=30)

    first = prune_finished_runs(instance, cutoff, max_runs=3, batch_size=2)

    assert first.runs_pruned == 3
    assert [instance.get_run_record_by_id(r) is None for r in runs] == [True, True, True, False, False]
    second = prune_finished_runs(instance, cutoff, max_runs=3, batch_size=2)
    assert second.runs_pruned == 2 and instance.get_runs_count() == 0
    assert prune_finished_runs(instance, cutoff, max_runs=3).runs_pruned == 0


def test_the_runs_of_a_backfill_in_progress_wait_until_it_is_done(
    chdb_store: TraceStore, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    instance.add_dynamic_partitions(TEAMS.name, ["3"])
    defs = pipeline_definitions(chdb_store, tmp_path)
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id="retentiontest",
        asset_graph=defs.resolve_asset_graph(),
        partition_names=[key(3)],
        asset_selection=[SUMMARIES],
        backfill_timestamp=time.time(),
        tags={},
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=None,
        description=None,
        run_config=None,
    )
    instance.add_backfill(backfill)  # REQUESTED: the daemon is still working through it
    of_backfill = instance.create_run_for_job(
        run_retention_job, status=dg.DagsterRunStatus.FAILURE, tags={BACKFILL_ID_TAG: backfill.backfill_id}
    ).run_id
    alone = api_run(instance, dg.DagsterRunStatus.FAILURE)
    age(instance, [of_backfill, alone], OLD)
    cutoff = datetime.now(UTC) - timedelta(days=30)

    while_running = prune_finished_runs(instance, cutoff, max_runs=10, batch_size=1)

    assert (while_running.runs_pruned, while_running.runs_skipped) == (1, 1)
    assert instance.get_run_record_by_id(of_backfill) is not None
    assert instance.get_run_record_by_id(alone) is None
    instance.update_backfill(backfill.with_status(BulkActionStatus.COMPLETED_FAILED))
    assert prune_finished_runs(instance, cutoff, max_runs=10).runs_pruned == 1
    assert instance.get_run_record_by_id(of_backfill) is None


def test_zero_days_keeps_every_run_and_the_schedule_skips(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = api_run(instance, dg.DagsterRunStatus.SUCCESS)
    age(instance, [old], timedelta(days=3650))
    monkeypatch.setenv(RETENTION_DAYS, "0")
    with dg.build_schedule_context(instance=instance) as context:
        skipped = run_retention_schedule(context)
    result = run_retention_job.execute_in_process(instance=instance)

    assert isinstance(skipped, dg.SkipReason) and RETENTION_DAYS in str(skipped.skip_message)
    assert result.success and result.output_for_node("prune_old_runs")["runs_pruned"] == 0
    assert instance.get_run_record_by_id(old) is not None

    monkeypatch.delenv(RETENTION_DAYS)  # the documented default (30 days): the schedule requests a run
    with dg.build_schedule_context(instance=instance) as context:
        assert isinstance(run_retention_schedule(context), dg.RunRequest)


# ----------------------------------------------------------------------------------------------------------
# Tick retention: the shipped instance files, read by Dagster itself
# ----------------------------------------------------------------------------------------------------------

EXPECTED_TICK_DAYS = {
    TickStatus.SKIPPED: 7,
    TickStatus.SUCCESS: 30,
    TickStatus.FAILURE: 30,
    TickStatus.STARTED: 30,
}


def tick_retention(instance: dg.DagsterInstance) -> dict[InstigatorType, dict[TickStatus, int]]:
    return {
        kind: dict(instance.get_tick_retention_settings(kind))
        for kind in (InstigatorType.SCHEDULE, InstigatorType.SENSOR)
    }


def chart_retention(values: dict[str, Any]) -> dict[str, Any]:
    """The ``retention:`` the chart's configmap-instance.yaml renders from ``values``."""
    retention = values.get("retention") or {}
    if not retention.get("enabled"):
        return {}
    names = {"sensor": "sensor", "schedule": "schedule", "autoMaterialize": "auto_materialize"}
    return {
        names[name]: {"purge_after_days": retention[name]["purgeAfterDays"]}
        for name in names
        if retention.get(name)
    }


def test_the_local_dagster_yaml_purges_ticks_by_status(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(PROJECT / "dagster.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        settings = tick_retention(instance)
    assert settings == {
        InstigatorType.SCHEDULE: EXPECTED_TICK_DAYS,
        InstigatorType.SENSOR: EXPECTED_TICK_DAYS,
    }


def test_values_render_the_same_tick_retention_as_both_dagster_yaml_files() -> None:
    rendered = chart_retention(yaml.safe_load((PROJECT / "deploy" / "values.yaml").read_text()))
    deployed = yaml.safe_load((PROJECT / "deploy" / "dagster.yaml").read_text())["retention"]
    local = yaml.safe_load((PROJECT / "dagster.yaml").read_text())["retention"]
    assert rendered == deployed == local
    assert set(rendered) == {"schedule", "sensor"}


@pytest.fixture
def deploy_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[dg.DagsterInstance, PostgresInfo]]:
    """deploy/dagster.yaml as shipped, on a real PostgreSQL (credentials from DAGSTER_PG_*, as in
    production)."""
    home = tmp_path / "deploy_home"
    home.mkdir()
    shutil.copyfile(PROJECT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    with postgres_server() as pg:
        for name, value in {
            "DAGSTER_PG_USERNAME": pg.user,
            "DAGSTER_PG_PASSWORD": pg.password,
            "DAGSTER_PG_HOST": pg.host,
            "DAGSTER_PG_DB": pg.database,
            "DAGSTER_PG_PORT": str(pg.port),
        }.items():
            monkeypatch.setenv(name, value)
        with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
            yield instance, pg


def sql_count(pg: PostgresInfo, query: str, *params: object) -> int:
    import psycopg2  # dagster-postgres' driver, as the harness imports it

    with psycopg2.connect(**pg.connect_kwargs()) as conn, conn.cursor() as cursor:
        cursor.execute(query, params)
        (count,) = cursor.fetchone()
    conn.close()
    return int(count)


def test_on_postgres_with_deploy_dagster_yaml_old_runs_shrink_to_their_asset_records(
    deploy_instance: tuple[dg.DagsterInstance, PostgresInfo], chdb_store: TraceStore, tmp_path: Path
) -> None:
    instance, pg = deploy_instance
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert tick_retention(instance) == {
        InstigatorType.SCHEDULE: EXPECTED_TICK_DAYS,
        InstigatorType.SENSOR: EXPECTED_TICK_DAYS,
    }
    instance.add_dynamic_partitions(TEAMS.name, ["3", "5"])
    defs = pipeline_definitions(chdb_store, tmp_path)
    partitions = partitions_def(defs)
    old = run_partition(defs, instance, 3)
    queued = api_run(instance, dg.DagsterRunStatus.QUEUED)
    recent = run_partition(defs, instance, 5)
    age(instance, [old, queued], OLD)
    rows_before = sql_count(pg, "SELECT count(*) FROM event_logs")
    old_rows = sql_count(pg, "SELECT count(*) FROM event_logs WHERE run_id = %s", old)
    kept_types = tuple(sorted(KEPT))
    old_kept = sql_count(
        pg, "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type IN %s", old, kept_types
    )
    tags_before = sql_count(pg, "SELECT count(*) FROM run_tags WHERE run_id = %s", old)

    result = prune_finished_runs(instance, datetime.now(UTC) - timedelta(days=30), max_runs=100)

    assert result.runs_pruned == 1 and result.events_deleted == old_rows - old_kept
    assert old_kept == 3 and tags_before > 0
    assert sql_count(pg, "SELECT count(*) FROM event_logs") == rows_before - (old_rows - old_kept)
    assert sql_count(pg, "SELECT count(*) FROM event_logs WHERE run_id = %s", old) == old_kept
    assert sql_count(pg, "SELECT count(*) FROM runs WHERE run_id = %s", old) == 0
    assert sql_count(pg, "SELECT count(*) FROM run_tags WHERE run_id = %s", old) == 0
    assert {instance.get_run_record_by_id(r) is not None for r in (queued, recent)} == {True}
    assert instance.get_materialized_partitions(SUMMARIES) == {key(3), key(5)}
    assert rebuilt_status(instance, partitions) == sorted({key(3), key(5)})


def deployed_event_batch_size() -> str:
    """``DAGSTER_EVENT_BATCH_SIZE`` as deploy/secrets.example.env sets it for the code server and run pods."""
    lines = (PROJECT / "deploy" / "secrets.example.env").read_text().splitlines()
    [value] = [line.split("=", 1)[1] for line in lines if line.startswith("DAGSTER_EVENT_BATCH_SIZE=")]
    return value


def test_on_postgres_a_ranged_run_with_the_deployed_event_batch_records_every_partition_once(
    deploy_instance: tuple[dg.DagsterInstance, PostgresInfo],
    chdb_store: TraceStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the deployed batch size, a ranged step's materializations are written together (Dagster's
    batch path, one statement for the step's partitions); each partition is still recorded exactly once per
    asset, with its tags, so partition status, run retention and the retry sensor read the same."""
    instance, pg = deploy_instance
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", deployed_event_batch_size())
    assert int(deployed_event_batch_size()) >= 50  # a 50-team shard's step in one batch
    teams = ["3", "5", "7"]
    instance.add_dynamic_partitions(TEAMS.name, teams)
    job = pipeline_definitions(chdb_store, tmp_path).resolve_job_def("trace_summaries_job")

    result = job.execute_in_process(
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": key(3),
            "dagster/asset_partition_range_end": key(7),
        },
    )

    assert result.success
    keys = {key(int(team)) for team in teams}
    for asset in ("sampled_traces", "trace_summaries"):  # the first two stages (pipeline_definitions)
        assert instance.get_materialized_partitions(dg.AssetKey(asset)) == keys, asset
    per_partition = sql_count(
        pg,
        "SELECT count(DISTINCT partition) FROM event_logs WHERE run_id = %s AND asset_key = %s"
        " AND dagster_event_type = 'ASSET_MATERIALIZATION'",
        result.run_id,
        SUMMARIES.to_string(),
    )
    rows = sql_count(
        pg,
        "SELECT count(*) FROM event_logs WHERE run_id = %s AND asset_key = %s"
        " AND dagster_event_type = 'ASSET_MATERIALIZATION'",
        result.run_id,
        SUMMARIES.to_string(),
    )
    assert per_partition == rows == len(teams)
    records = instance.fetch_materializations(SUMMARIES, limit=10).records
    assert sorted(record.partition_key for record in records) == sorted(keys)
    latest = instance.get_latest_materialization_event(SUMMARIES)
    assert latest is not None and latest.run_id == result.run_id
