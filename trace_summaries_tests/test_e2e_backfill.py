"""End to end through the real webserver and daemon: a UI-style backfill of 24 hours x 3 teams, twice.

The backfill is launched with exactly the ``launchPartitionBackfill`` input the 1.13 UI sends from an asset
page's *Materialize* dialog (``ui-core/src/assets/LaunchAssetChoosePartitionsDialog.tsx``, the asset-job
branch): ``assetSelection`` = the assets of the dialog, ``partitionNames`` = the hour x team keys of the
chosen ranges, hour-major (``explodePartitionKeysInSelectionMatching``), ``fromFailure: false`` and the tag
``dagster/from_ui=true``. The backfill daemon then applies the assets' ``BackfillPolicy.single_run()``.

What it proves: the daemon turns the backfill into one ranged run per team (24 hours each) that runs every
pipeline asset; every (hour, team) gets exactly one `$ai_trace_summary` event per trace whose first event
falls in that hour; and a second identical backfill rewrites the same events (same uuids, no duplicates).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from trace_summaries.demo import seed_store
from trace_summaries.store import TraceStore
from trace_summaries_harness.dagster_stack import Stack, dagster_stack
from trace_summaries_tests.support import clock
from trace_summaries_tests.support.expected_traces import (
    expected_traces,
    summary_count_and_distinct,
    summary_rows,
)

DAY = clock.DAY
HOURS = [DAY + timedelta(hours=i) for i in range(24)]
TEAMS = ["1", "2", "3"]
TRACES_PER_HOUR = 2
BACKFILL_TIMEOUT_S = 600
GROUP = "trace_summaries"

ASSETS_QUERY = "{ assetNodes { assetKey { path } groupName } }"


# A summary event is stamped with its window's end; its partition's hour starts one hour earlier.
def hour_key(hour: datetime) -> str:
    return hour.strftime("%Y-%m-%d-%H:00")


def partition_names() -> list[str]:
    """The dialog's keys for hours 00:00-23:00 x teams 1-3, hour-major as the UI explodes them."""
    return [f"{hour_key(hour)}|{team}" for hour in HOURS for team in TEAMS]


def pipeline_assets(stack: Stack) -> list[dict[str, list[str]]]:
    """Every asset of the pipeline's group, as the asset page's *Materialize all* selects them."""
    nodes = stack.graphql(ASSETS_QUERY)["assetNodes"]
    return [{"path": node["assetKey"]["path"]} for node in nodes if node["groupName"] == GROUP]


def backfill_like_the_ui(stack: Stack, assets: list[dict[str, list[str]]]) -> dict[str, Any]:
    backfill_id = stack.launch_backfill(
        {
            "tags": [{"key": "dagster/from_ui", "value": "true"}],
            "assetSelection": assets,
            "partitionNames": partition_names(),
            "fromFailure": False,
        }
    )
    return stack.wait_for_backfill(backfill_id, timeout_s=BACKFILL_TIMEOUT_S)


def assert_completed_one_run_per_team(backfill: dict[str, Any], assets: list[dict[str, list[str]]]) -> None:
    assert backfill["status"] == "COMPLETED_SUCCESS", backfill
    assert backfill["numPartitions"] == len(HOURS) * len(TEAMS)
    statuses = {
        tuple(status["assetKey"]["path"]): status
        for status in backfill["assetBackfillData"]["assetBackfillStatuses"]
    }
    assert set(statuses) == {tuple(asset["path"]) for asset in assets}
    for key, status in statuses.items():
        assert status["numPartitionsTargeted"] == len(HOURS) * len(TEAMS), key
        assert status["numPartitionsMaterialized"] == len(HOURS) * len(TEAMS), (key, status)
        assert status["numPartitionsFailed"] == 0, (key, status)

    # single_run over hour x team: one run per team, spanning the 24 hours, each running every asset.
    runs = backfill["runs"]
    assert all(run["status"] == "SUCCESS" for run in runs), runs
    ranges = sorted(
        (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"])
        for tags in ({tag["key"]: tag["value"] for tag in run["tags"]} for run in runs)
    )
    assert ranges == [(f"{hour_key(HOURS[0])}|{t}", f"{hour_key(HOURS[-1])}|{t}") for t in TEAMS], ranges


@pytest.mark.slow
def test_ui_backfill_of_24_hours_x_3_teams_writes_every_partition_once_and_is_idempotent(
    tmp_path: Path,
) -> None:
    store = TraceStore(f"chdb://{tmp_path / 'data' / 'clickhouse'}")
    store.ensure_schema()
    seed_store(store, [int(t) for t in TEAMS], HOURS, TRACES_PER_HOUR, progress=False, oversized_fraction=0.0)
    expected = expected_traces(store, [int(t) for t in TEAMS], HOURS[0], HOURS[-1] + timedelta(hours=1))
    # Every (hour, team) has traces to summarize, so "each partition has its events" is a real check.
    assert {(team, hour) for team, hour, _ in expected} == {(int(t), h) for t in TEAMS for h in HOURS}

    with dagster_stack(tmp_path) as stack:
        assert stack.dsn == store.dsn
        stack.add_dynamic_partitions("teams", TEAMS)
        assets = pipeline_assets(stack)
        assert {"sampled_traces", "trace_summaries"} <= {asset["path"][-1] for asset in assets}

        first = backfill_like_the_ui(stack, assets)
        assert_completed_one_run_per_team(first, assets)
        events = summary_rows(store, [int(t) for t in TEAMS])
        assert Counter((team, hour) for _, team, hour, _ in events) == Counter(
            (team, hour) for team, hour, _ in expected
        )
        assert {(team, hour, trace) for _, team, hour, trace in events} == expected
        assert summary_count_and_distinct(store) == (len(expected), len(expected))

        second = backfill_like_the_ui(stack, assets)
        assert_completed_one_run_per_team(second, assets)
        assert {run["runId"] for run in second["runs"]}.isdisjoint(run["runId"] for run in first["runs"])
        again = summary_rows(store, [int(t) for t in TEAMS])
        assert sorted(again) == sorted(events)  # same uuids, same partitions, same traces
        assert summary_count_and_distinct(store) == (len(expected), len(expected))
