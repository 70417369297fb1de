"""Teams, the hourly schedule, ranged runs with a failing team, and the re-request sensor, on a real
on-disk Dagster instance and embedded store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from trace_summaries.defs.hourly_report import hourly_report
from trace_summaries.defs.partition_failures import CHECK_NAME, FAILED_PARTITIONS_TAG, RETRY_ATTEMPT_TAG
from trace_summaries.defs.partition_sets import TEAMS
from trace_summaries.defs.resources import ClickHouseResource
from trace_summaries.defs.sampled_traces import sampled_traces
from trace_summaries.defs.sensors import failed_partitions_sensor, team_partitions_sensor
from trace_summaries.defs.trace_summaries import trace_summaries
from trace_summaries.demo import seed_store
from trace_summaries.scheduling.run_plan import PlannedRun, plan_hourly_runs
from trace_summaries.store import TraceStore
from trace_summaries_tests.support import clock
from trace_summaries_tests.support.events import ai_event
from trace_summaries_tests.support.expected_traces import summaries_by_team
from trace_summaries_tests.support.pipeline_defs import pipeline_definitions
from trace_summaries_tests.support.schedule_ticks import tick

HOUR = clock.HOUR
HOUR_KEY = clock.HOUR_KEY
TICK = clock.TICK


def apply(instance: dg.DagsterInstance, result: dg.SensorResult) -> None:
    """What the daemon does with a sensor's partition requests."""
    for request in result.dynamic_partitions_requests or []:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))


def test_team_sensor_adds_configured_and_discovered_teams_and_retires_without_deleting(
    store: TraceStore, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    store.insert_events(
        [ai_event(9, "recent", now - timedelta(hours=2)), ai_event(8, "old", now - timedelta(days=3))]
    )
    resources = {"clickhouse": ClickHouseResource(dsn=store.dsn)}

    monkeypatch.setenv("TRACE_SUMMARIES_ALLOWED_TEAM_IDS", "1,2")
    monkeypatch.setenv("TRACE_SUMMARIES_DISCOVER_TEAMS", "1")
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        first = team_partitions_sensor(context)
    apply(instance, first)
    assert instance.get_dynamic_partitions(TEAMS.name) == ["1", "2", "9"]

    monkeypatch.setenv("TRACE_SUMMARIES_ALLOWED_TEAM_IDS", "2,3")
    monkeypatch.setenv("TRACE_SUMMARIES_DISCOVER_TEAMS", "0")
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        second = team_partitions_sensor(context)
    apply(instance, second)
    # Team 1 and 9 left the set: kept as partitions (history, manual runs), no longer scheduled.
    assert instance.get_dynamic_partitions(TEAMS.name) == ["1", "2", "9", "3"]
    assert '"retired": ["1", "9"]' in (second.cursor or "")
    requests = tick(instance, store)
    assert [request.partition_key for request in requests] == [f"{HOUR_KEY}|2", f"{HOUR_KEY}|3"]


def test_schedule_tick_requests_one_run_per_team_below_the_threshold(
    store: TraceStore, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance.add_dynamic_partitions(TEAMS.name, ["1", "2", "3"])
    monkeypatch.setenv("TRACE_SUMMARIES_ALLOWED_TEAM_IDS", "1,2,3")

    requests = tick(instance, store)

    assert [(r.partition_key, r.run_key) for r in requests] == [
        (f"{HOUR_KEY}|{team}", f"{HOUR_KEY}|{team}:detailed") for team in ("1", "2", "3")
    ]
    assert tick(instance, store) == requests  # same tick, same run keys: idempotent


def test_schedule_tick_requests_sharded_ranged_runs_above_the_threshold(
    store: TraceStore, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance.add_dynamic_partitions(TEAMS.name, ["1", "2", "3"])
    monkeypatch.setenv("TRACE_SUMMARIES_ALLOWED_TEAM_IDS", "1,2,3")
    monkeypatch.setenv("TRACE_SUMMARIES_SHARD_THRESHOLD", "2")
    monkeypatch.setenv("TRACE_SUMMARIES_SHARD_SIZE", "2")
    monkeypatch.setenv("TRACE_SUMMARIES_SCHEDULE_LATENESS_MINUTES", "30")

    requests = tick(instance, store)

    # 10:15 minus 30 minutes of lateness: the last complete hour is 08:00.
    ranges = [
        (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
        for r in requests
        if "dagster/asset_partition_range_start" in r.tags
    ]
    assert ranges == [("2026-11-20-08:00|1", "2026-11-20-08:00|2")]
    assert [r.partition_key for r in requests if r.partition_key] == ["2026-11-20-08:00|3"]


def test_shards_never_span_a_team_that_is_not_scheduled() -> None:
    plan = plan_hourly_runs(
        HOUR,
        ["1", "2", "3", "4", "5"],
        {"1", "2", "4", "5"},
        mode="sharded",
        shard_threshold=0,
        shard_size=10,
    )
    assert plan == [PlannedRun(HOUR_KEY, ("1", "2")), PlannedRun(HOUR_KEY, ("4", "5"))]


def test_a_ranged_run_with_a_failing_team_writes_the_others_and_the_sensor_retries_it(
    store: TraceStore, instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACE_SUMMARIES_RETRY_FAILED_DELAY_SECONDS", "0")
    seed_store(store, [3, 5], [HOUR], 4, progress=False, oversized_fraction=0.0)
    instance.add_dynamic_partitions(TEAMS.name, ["3", "bad-team", "5"])
    job = pipeline_definitions(store, tmp_path).resolve_job_def("trace_summaries_job")

    ranged: Any = job.execute_in_process(
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": f"{HOUR_KEY}|3",
            "dagster/asset_partition_range_end": f"{HOUR_KEY}|5",
        },
    )

    assert ranged.success
    assert summaries_by_team(store) == {3: 4, 5: 4}
    run = instance.get_run_by_id(ranged.run_id)
    assert run is not None and run.tags[FAILED_PARTITIONS_TAG] == f"{HOUR_KEY}|bad-team"
    evaluations = [
        entry.dagster_event.event_specific_data
        for entry in instance.all_logs(ranged.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        if entry.dagster_event is not None
    ]
    by_partition = {(e.check_name, e.partition): e for e in evaluations}
    failed_check = by_partition[(CHECK_NAME, f"{HOUR_KEY}|bad-team")]
    assert failed_check.passed is False and "no sample" in failed_check.metadata["reason"].value
    # The range's own evaluation warns rather than blocking the teams that succeeded.
    range_check = by_partition[(CHECK_NAME, None)]
    assert range_check.passed is False and range_check.severity == dg.AssetCheckSeverity.WARN

    with dg.build_sensor_context(instance=instance) as context:
        sensor_result = failed_partitions_sensor(context)
    assert [(r.partition_key, r.tags[RETRY_ATTEMPT_TAG]) for r in sensor_result.run_requests] == [
        (f"{HOUR_KEY}|bad-team", "1")
    ]
    # Evaluated again from its cursor, the sensor does not request it twice.
    with dg.build_sensor_context(instance=instance, cursor=sensor_result.cursor) as context:
        again = failed_partitions_sensor(context)
    assert again.run_requests == []


def test_the_hourly_report_counts_teams_traces_and_summaries_and_names_failed_teams(
    store: TraceStore, instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_store(store, [3, 5], [HOUR], 4, progress=False, oversized_fraction=0.0)
    instance.add_dynamic_partitions(TEAMS.name, ["3", "5", "7"])
    defs = pipeline_definitions(store, tmp_path)
    for team in ("3", "5"):
        run = defs.resolve_job_def("trace_summaries_job").execute_in_process(
            instance=instance, partition_key=f"{HOUR_KEY}|{team}"
        )
        assert run.success
    # Team 7 was scheduled but never ran: the report must say so.
    monkeypatch.setenv("TRACE_SUMMARIES_ALLOWED_TEAM_IDS", "3,5,7")

    report = dg.materialize(
        [sampled_traces, trace_summaries, hourly_report],
        selection=[hourly_report],
        partition_key=HOUR_KEY,
        instance=instance,
        resources=defs.resources,
    )

    assert report.success
    [materialization] = report.asset_materializations_for_node("hourly_report")
    meta = {key: value.value for key, value in materialization.metadata.items()}
    assert meta["teams_processed"] == 3 and meta["teams_failed"] == 1
    assert meta["failed_team_ids"] == [7]
    assert meta["total_traces"] == 8
    assert meta["by_mode"] == {"detailed": {"teams": 2, "traces": 8, "summaries": 8}}
    assert "| 7 | 0 | - | - | no sample" in meta["teams"]
