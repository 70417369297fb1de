"""The Dagster daemon killed (SIGKILL) and restarted while a backfill is in progress: the backfill completes.

The stack is the real one (``dagster-webserver`` and ``dagster-daemon`` on ``workspace.yaml``, the
repository's ``dagster.yaml``: queued runs, at most 2 backfill runs at a time); the backfill of 3 teams x 4
hours is launched through GraphQL as the UI does, so the backfill policy makes it one ranged run per team.
LLM calls go to the OpenAI-compatible test server, slowed down so that runs are still going when the daemon
dies. The daemon is killed at an observed moment: a run of the backfill has started and work is left that
only a live daemon can start, a run still queued (the run queue launches at most 2 backfill runs at a time,
so with 3 runs one waits until another finishes, tens of seconds) or a partition not requested yet. The
state is read again right after the kill (nothing but the daemon launches queued runs or requests
partitions, so it is the state the daemon died in) and the test stops at once if that work is not there.
Then a new daemon is started on the same instance.

What it proves: the restarted daemon launches what the killed one left queued, and the backfill reaches
COMPLETED_SUCCESS with every targeted partition of every asset materialized; the events table holds
exactly one summary per expected trace of every (hour, team) (``count() == uniqExact(uuid)``), whatever runs
the restart may have cost.
"""

from __future__ import annotations

import os
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from trace_summaries.store import TraceStore
from trace_summaries_harness.dagster_stack import (
    BACKFILL_DONE,
    Stack,
    dagster_stack,
    start_daemon,
)
from trace_summaries_harness.openai_server import openai_server
from trace_summaries_harness.ports import wait_until
from trace_summaries_tests.reliability.fault_support import (
    HOUR,
    hour_key,
    record_outcome,
    seed,
    tally,
)
from trace_summaries_tests.support.expected_traces import summary_count_and_distinct
from trace_summaries_tests.support.fixtures_llm import TEST_API_KEY

TEAMS = [61, 62, 63]
HOURS = [HOUR + timedelta(hours=i) for i in range(4)]
TRACES_PER_HOUR = 2
SLOW_LLM_S = 2.0  # per call while the daemon is killed: runs take tens of seconds
BACKFILL_TIMEOUT_S = 900
GROUP = "trace_summaries"
ASSETS_QUERY = "{ assetNodes { assetKey { path } groupName } }"


# Runs nobody has launched yet: only the daemon's run queue launches them.
WAITING = {"NOT_STARTED", "QUEUED"}


def queued_runs(backfill: dict[str, Any]) -> set[str]:
    return {run["runId"] for run in backfill["runs"] if run["status"] in WAITING}


def unrequested_partitions(backfill: dict[str, Any]) -> int:
    """Targeted partitions the backfill daemon has not requested a run for yet (most over the assets)."""
    return max(
        (
            status["numPartitionsTargeted"]
            - status["numPartitionsInProgress"]
            - status["numPartitionsMaterialized"]
            - status["numPartitionsFailed"]
            for status in backfill["assetBackfillData"]["assetBackfillStatuses"]
        ),
        default=0,
    )


def work_only_a_daemon_can_start(backfill: dict[str, Any]) -> bool:
    return bool(queued_runs(backfill)) or unrequested_partitions(backfill) > 0


def moment_to_kill(stack: Stack, backfill_id: str) -> bool:
    """A run of the backfill is going and work is left for the daemon; raises once that cannot happen."""
    backfill = stack.backfill(backfill_id)
    if backfill["status"] in BACKFILL_DONE:
        raise AssertionError(f"the backfill finished before the daemon could be killed: {backfill}")
    if not work_only_a_daemon_can_start(backfill):
        raise AssertionError(
            f"every run of the backfill was launched before the daemon was killed: {backfill}"
        )
    return any(run["status"] == "STARTED" for run in backfill["runs"])


@pytest.mark.slow
def test_a_daemon_killed_and_restarted_during_a_backfill_lets_it_complete_exactly_once(
    tmp_path: Path,
) -> None:
    store = TraceStore(f"chdb://{tmp_path / 'data' / 'clickhouse'}")
    store.ensure_schema()
    expected = seed(store, TEAMS, HOURS, TRACES_PER_HOUR)

    with (
        openai_server(require_api_key=TEST_API_KEY, latency_s=SLOW_LLM_S) as llm,
        dagster_stack(tmp_path, {"OPENAI_API_KEY": TEST_API_KEY, "OPENAI_BASE_URL": llm.base_url}) as stack,
    ):
        assert stack.dsn == store.dsn
        stack.add_dynamic_partitions("teams", [str(team) for team in TEAMS])
        assets = [
            {"path": node["assetKey"]["path"]}
            for node in stack.graphql(ASSETS_QUERY)["assetNodes"]
            if node["groupName"] == GROUP
        ]
        backfill_id = stack.launch_backfill(
            {
                "tags": [{"key": "dagster/from_ui", "value": "true"}],
                "assetSelection": assets,
                "partitionNames": [f"{hour_key(hour)}|{team}" for hour in HOURS for team in TEAMS],
                "fromFailure": False,
            }
        )
        wait_until(
            lambda: moment_to_kill(stack, backfill_id),
            timeout_s=300,
            what="a started run of the backfill, with a run queued or a partition not requested",
            interval_s=0.5,
        )

        [killed] = [process for process in stack.processes if process.name == "daemon"]
        os.kill(killed.popen.pid, signal.SIGKILL)  # the daemon only: its runs keep going, as on a real host
        killed.popen.wait(timeout=30)
        # With the daemon dead nothing launches a queued run or requests a partition: this is the state it was
        # killed in, and the scenario needs work in it that only the restarted daemon can start.
        at_kill = stack.backfill(backfill_id)
        assert at_kill["status"] not in BACKFILL_DONE, at_kill
        assert work_only_a_daemon_can_start(at_kill), f"nothing was left for the restarted daemon: {at_kill}"
        queued_at_kill = queued_runs(at_kill)
        restarted = start_daemon(stack, tmp_path / "daemon-restarted.log", name="daemon (restarted)")
        stack.processes[stack.processes.index(killed)] = restarted
        try:
            llm.latency_s = 0.0
            wait_until(stack.daemons_healthy, timeout_s=240, what="the restarted daemon's heartbeats")
            done = stack.wait_for_backfill(backfill_id, timeout_s=BACKFILL_TIMEOUT_S)
        finally:
            # What the killed daemon left in its process group (its code server), if anything is left.
            killed.stop(timeout_s=30)

    outcome = tally(store, expected)
    completed = done["status"] == "COMPLETED_SUCCESS"
    record_outcome("dagster daemon SIGKILLed and restarted during a backfill", ran=completed, events=outcome)
    assert done["status"] == "COMPLETED_SUCCESS", done
    assert done["numPartitions"] == len(TEAMS) * len(HOURS)
    for status in done["assetBackfillData"]["assetBackfillStatuses"]:
        assert status["numPartitionsMaterialized"] == len(TEAMS) * len(HOURS), status
        assert status["numPartitionsFailed"] == 0, status
    # One ranged run per team, none added by the restart; the runs queued at the kill were launched by the
    # restarted daemon (and the ones not requested yet were requested by it).
    assert len(done["runs"]) == len(TEAMS), done["runs"]
    assert all(run["status"] == "SUCCESS" for run in done["runs"]), done["runs"]
    assert queued_at_kill <= {run["runId"] for run in done["runs"]}, (at_kill["runs"], done["runs"])
    assert outcome.exact, outcome
    assert summary_count_and_distinct(store) == (len(expected), len(expected))
