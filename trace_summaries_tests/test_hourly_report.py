"""`hourly_report` and `hourly_report_sensor` on a real on-disk Dagster instance and embedded store: summaries
counted per mode, expected teams never registered listed apart from failed ones, discovered teams expected,
each team's duration, and a report refreshed for any hour whose team partitions change, however old."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from trace_summaries.defs.hourly_report import hourly_report, hourly_report_sensor
from trace_summaries.defs.partition_sets import TEAMS
from trace_summaries.defs.resources import LLMResource
from trace_summaries.defs.sampled_traces import sampled_traces
from trace_summaries.defs.trace_summaries import trace_summaries
from trace_summaries.demo import seed_store
from trace_summaries.partitions import hour_key
from trace_summaries.store import TraceStore
from trace_summaries_harness.ports import free_port
from trace_summaries_tests.support import clock
from trace_summaries_tests.support.pipeline_defs import pipeline_definitions

HOUR = clock.HOUR
HOUR_KEY = clock.HOUR_KEY
TRACES = 4


def run_team(defs: dg.Definitions, instance: dg.DagsterInstance, team: int, mode: str) -> float:
    """One in-process run of the team's partition in ``mode``; returns its wall time."""
    started = time.monotonic()
    result = defs.resolve_job_def("trace_summaries_job").execute_in_process(
        instance=instance,
        partition_key=f"{HOUR_KEY}|{team}",
        run_config={"ops": {"trace_summaries": {"config": {"mode": mode}}}},
        raise_on_error=False,
    )
    assert result.success
    return time.monotonic() - started


def report_metadata(defs: dg.Definitions, instance: dg.DagsterInstance, hour_key: str = HOUR_KEY) -> Any:
    result = dg.materialize(
        [sampled_traces, trace_summaries, hourly_report],
        selection=[hourly_report],
        partition_key=hour_key,
        instance=instance,
        resources=defs.resources,
    )
    assert result.success
    [materialization] = result.asset_materializations_for_node("hourly_report")
    return {key: value.value for key, value in materialization.metadata.items()}


def test_summaries_are_counted_per_mode_and_unregistered_teams_are_not_failed(
    store: TraceStore, instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_store(store, [3, 5, 9], [HOUR], TRACES, progress=False, oversized_fraction=0.0, neighbours=False)
    instance.add_dynamic_partitions(TEAMS.name, ["3", "5", "9"])
    defs = pipeline_definitions(store, tmp_path)
    walls = {
        (team, mode): 0.0 for team, mode in [(3, "minimal"), (3, "detailed"), (5, "minimal"), (9, "detailed")]
    }
    for team, mode in walls:
        walls[team, mode] = run_team(defs, instance, team, mode)
    # 11 is allowlisted but was never registered; 9 is only discovered (it has `$ai_*` events).
    monkeypatch.setenv("TRACE_SUMMARIES_ALLOWED_TEAM_IDS", "3,5,11")
    monkeypatch.setenv("TRACE_SUMMARIES_DISCOVER_TEAMS", "1")

    meta = report_metadata(defs, instance)

    assert meta["teams_expected"] == 4  # 3, 5, 11 allowlisted, 9 discovered
    assert meta["teams_processed"] == 3 and meta["teams_failed"] == 0 and meta["failed_team_ids"] == []
    assert meta["unregistered_team_ids"] == [11]
    assert meta["total_traces"] == 3 * TRACES
    # Team 3 ran in both modes: its summaries count once in each mode, never added together.
    assert meta["by_mode"] == {
        "detailed": {"teams": 2, "traces": 2 * TRACES, "summaries": 2 * TRACES},
        "minimal": {"teams": 2, "traces": 2 * TRACES, "summaries": 2 * TRACES},
    }
    assert "total_summaries" not in meta
    assert "| 3 | 4 | detailed: 4, minimal: 4 |" in meta["teams"]
    assert "| 11 | - | - | - | not registered as a partition |" in meta["teams"]
    # Each team's duration in each mode: its latest run, from its start to the summaries' write, within the
    # run's wall time.
    durations = meta["duration_seconds"]
    assert {team: sorted(modes) for team, modes in durations.items()} == {
        "3": ["detailed", "minimal"],
        "5": ["minimal"],
        "9": ["detailed"],
    }
    for (team, mode), wall in walls.items():
        assert 0 < durations[str(team)][mode] <= wall


def test_without_discovery_only_the_allowlist_is_expected_and_a_failed_run_fails_its_team(
    store: TraceStore, instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_store(store, [3, 5], [HOUR], TRACES, progress=False, oversized_fraction=0.0, neighbours=False)
    instance.add_dynamic_partitions(TEAMS.name, ["3", "5"])
    defs = pipeline_definitions(store, tmp_path)
    run_team(defs, instance, 3, "detailed")
    run_team(defs, instance, 5, "minimal")
    # Then team 5 is re-run in detailed mode against an LLM endpoint that refuses every connection.
    dead = LLMResource(
        base_url=f"http://127.0.0.1:{free_port()}/v1", api_key="x", context_tokens=8192, max_attempts=1
    )
    failing = pipeline_definitions(store, tmp_path, llm=dead)
    failed = failing.resolve_job_def("trace_summaries_job").execute_in_process(
        instance=instance,
        partition_key=f"{HOUR_KEY}|5",
        run_config={"ops": {"trace_summaries": {"config": {"mode": "detailed"}}}},
        raise_on_error=False,
    )
    assert not failed.success
    monkeypatch.setenv("TRACE_SUMMARIES_ALLOWED_TEAM_IDS", "3")
    monkeypatch.setenv("TRACE_SUMMARIES_DISCOVER_TEAMS", "0")

    meta = report_metadata(defs, instance)

    assert meta["teams_expected"] == 1 and meta["unregistered_team_ids"] == []
    # Team 5 is not expected but ran: processed, and failed by its latest (detailed) run, although its
    # minimal summaries from the earlier run are still stored and counted.
    assert meta["teams_processed"] == 2 and meta["failed_team_ids"] == [5]
    assert meta["by_mode"]["minimal"] == {"teams": 1, "traces": TRACES, "summaries": TRACES}
    assert meta["by_mode"]["detailed"] == {"teams": 2, "traces": 2 * TRACES, "summaries": TRACES}
    assert "| 5 | 4 | minimal: 4 |" in meta["teams"] and "the latest detailed run failed" in meta["teams"]


def sensor(instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    with dg.build_sensor_context(instance=instance, cursor=cursor) as context:
        result = hourly_report_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def test_the_sensor_refreshes_the_report_of_any_hour_whose_team_runs_change(
    store: TraceStore, instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACE_SUMMARIES_ALLOWED_TEAM_IDS", "3,5")
    old_hour = clock.hour(2)  # weeks before today: a backfill, not one of the last hours
    seed_store(
        store, [3, 5], [HOUR, old_hour], TRACES, progress=False, oversized_fraction=0.0, neighbours=False
    )
    instance.add_dynamic_partitions(TEAMS.name, ["3", "5"])
    defs = pipeline_definitions(store, tmp_path)
    old_key = hour_key(old_hour)

    assert sensor(instance, None).run_requests == []  # nothing ran: nothing to report
    run_team(defs, instance, 3, "minimal")
    result = defs.resolve_job_def("trace_summaries_job").execute_in_process(
        instance=instance, partition_key=f"{old_key}|5", raise_on_error=False
    )
    assert result.success
    first = sensor(instance, None)
    assert sorted(r.partition_key or "" for r in first.run_requests) == sorted([HOUR_KEY, old_key])
    for request in first.run_requests:
        report_metadata(defs, instance, request.partition_key or "")

    # Reported, and nothing changed since: no request.
    second = sensor(instance, first.cursor)
    assert second.run_requests == []

    # A manual re-run of one team in the other mode changes its hour only, which is reported again.
    run_team(defs, instance, 3, "detailed")
    third = sensor(instance, second.cursor)
    assert [r.partition_key for r in third.run_requests] == [HOUR_KEY]
    assert third.run_requests[0].run_key not in {r.run_key for r in first.run_requests}

    # A run created for a backfill of the old hour and the next: the hours wait while the run has not ended,
    # and are reported once it has, although it failed before materializing anything.
    next_key = hour_key(old_hour + timedelta(hours=1))
    queued = instance.create_run_for_job(
        defs.resolve_job_def("trace_summaries_job"),
        tags={
            "dagster/asset_partition_range_start": f"{old_key}|3",
            "dagster/asset_partition_range_end": f"{next_key}|5",
        },
        status=dg.DagsterRunStatus.NOT_STARTED,
    )
    waiting = sensor(instance, third.cursor)
    assert waiting.run_requests == []
    instance.report_run_failed(queued)
    fourth = sensor(instance, waiting.cursor)
    # HOUR_KEY was requested already.
    assert [r.partition_key for r in fourth.run_requests] == [old_key, next_key]
    assert sensor(instance, fourth.cursor).run_requests == []
