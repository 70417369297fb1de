"""4. Orchestration overhead: one run per team versus sharded ranged runs, through the real daemon.

100 teams x 1 hour (20 with ``--quick``), one tiny trace per team-hour and the offline heuristic summarizer,
so what is measured is orchestration: queueing, launching a run process, loading the code, the steps'
framework work and the event log, not summarizing.

Each mode gets a fresh stack (``trace_summaries_harness/dagster_stack.py``: ``dagster-webserver`` +
``dagster-daemon`` on a new instance with the repository's ``dagster.yaml``: QueuedRunCoordinator, at most 4
concurrent runs; the embedded trace store, seeded beforehand). The runs are exactly what the hourly schedule
emits, obtained the way the UI's *Test schedule -> Launch all runs* does: a ``scheduleDryRun`` of
``hourly_trace_summaries_schedule`` evaluates the real schedule code in the stack's code server (with
``TRACE_SUMMARIES_SCHEDULE_MODE=per_team``, or ``sharded`` with ``TRACE_SUMMARIES_SHARD_SIZE`` = half the
teams), and ``launchMultipleRuns`` submits its run requests (job ``trace_summaries_job``, in-process executor;
per team: ``dagster/partition``; sharded: ``dagster/asset_partition_range_start|end``) to the run queue, from
which the daemon launches them.

Overhead per team-partition = (wall time from the schedule evaluation until the last run ended) / teams,
nothing subtracted. Target (perf issue): sharded overhead at most 10% of per-team.

The stacks' own schedule is kept from ticking during the measurement (its minute is set 30 minutes ahead).
Run standalone: ``python bench/bench_orchestration.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from _common import Row, print_rows, row

from trace_summaries.demo import seed_store
from trace_summaries.store import TraceStore
from trace_summaries_harness.dagster_stack import Stack, StackError, dagster_stack

HOUR = datetime(2026, 11, 20, 9, tzinfo=UTC)
TEAMS_FULL = 100
TEAMS_QUICK = 20
TRACES_PER_TEAM_HOUR = 1
TARGET_RATIO = 0.10
SCHEDULE = "hourly_trace_summaries_schedule"
RUNS_TIMEOUT_S = 1500.0  # 100 runs at 4 at a time, on 2 possibly loaded cores

DRY_RUN_MUTATION = """
mutation ScheduleDryRun($selector: ScheduleSelector!, $timestamp: Float) {
  scheduleDryRun(selectorData: $selector, timestamp: $timestamp) {
    __typename
    ... on DryRunInstigationTick {
      timestamp
      evaluationResult {
        skipReason
        error { message stack }
        runRequests { runKey jobName runConfigYaml tags { key value } }
      }
    }
    ... on PythonError { message stack }
    ... on ScheduleNotFoundError { message }
    ... on UnauthorizedError { message }
  }
}
"""

SCHEDULE_JOB_QUERY = """
query ScheduleJob($selector: ScheduleSelector!) {
  scheduleOrError(scheduleSelector: $selector) { __typename ... on Schedule { pipelineName } }
}
"""

LAUNCH_MULTIPLE_MUTATION = """
mutation LaunchMultipleRuns($executionParamsList: [ExecutionParams!]!) {
  launchMultipleRuns(executionParamsList: $executionParamsList) {
    __typename
    ... on LaunchMultipleRunsResult {
      launchMultipleRunsResult {
        __typename
        ... on LaunchRunSuccess { run { runId } }
        ... on PythonError { message }
        ... on RunConfigValidationInvalid { errors { message } }
        ... on InvalidSubsetError { message }
        ... on RunConflict { message }
        ... on UnauthorizedError { message }
      }
    }
    ... on PythonError { message stack }
  }
}
"""


def log(message: str) -> None:
    print(f"[bench_orchestration] {message}", file=sys.stderr, flush=True)


def stack_env(mode: str, teams: int) -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "TRACE_SUMMARIES_START_DATE": HOUR.strftime("%Y-%m-%d"),
        "TRACE_SUMMARIES_ALLOWED_TEAM_IDS": ",".join(str(team) for team in range(1, teams + 1)),
        "TRACE_SUMMARIES_SCHEDULE_MODE": mode,
        "TRACE_SUMMARIES_SHARD_SIZE": str(max(1, teams // 2)),
        # The daemon's own tick must not add runs for the current hour while we measure.
        "TRACE_SUMMARIES_SCHEDULE_MINUTE": str((now.minute + 30) % 60),
    }


def schedule_run_requests(stack: Stack) -> list[dict[str, Any]]:
    """The schedule's run requests for the tick after ``HOUR`` (its last complete hour is ``HOUR``), each
    with its job name (a request without one runs the schedule's job, as the UI fills it in)."""
    selector = {**stack.repository_selector, "scheduleName": SCHEDULE}
    schedule = stack.graphql(SCHEDULE_JOB_QUERY, {"selector": selector})["scheduleOrError"]
    schedule_job = schedule["pipelineName"]
    tick = HOUR + timedelta(hours=1)
    result = stack.graphql(DRY_RUN_MUTATION, {"selector": selector, "timestamp": tick.timestamp()})[
        "scheduleDryRun"
    ]
    evaluation = result.get("evaluationResult") or {}
    if result["__typename"] != "DryRunInstigationTick" or evaluation.get("error"):
        raise StackError(f"schedule dry run failed: {result}")
    requests = evaluation.get("runRequests") or []
    if not requests:
        raise StackError(f"the schedule requested no run: {evaluation.get('skipReason')}")
    return [{**request, "jobName": request["jobName"] or schedule_job} for request in requests]


def launch(stack: Stack, requests: list[dict[str, Any]]) -> list[str]:
    """``launchMultipleRuns`` with the parameters the UI builds from a dry run (buildExecutionParamsList)."""
    params = [
        {
            "selector": {**stack.repository_selector, "jobName": request["jobName"]},
            "runConfigData": yaml.safe_load(request["runConfigYaml"] or "{}") or {},
            "mode": "default",
            "executionMetadata": {"tags": [{"key": t["key"], "value": t["value"]} for t in request["tags"]]},
        }
        for request in requests
    ]
    result = stack.graphql(LAUNCH_MULTIPLE_MUTATION, {"executionParamsList": params}, timeout_s=600)[
        "launchMultipleRuns"
    ]
    launched = result.get("launchMultipleRunsResult") or []
    failed = [item for item in launched if item["__typename"] != "LaunchRunSuccess"]
    if result["__typename"] != "LaunchMultipleRunsResult" or failed or len(launched) != len(requests):
        raise StackError(f"launchMultipleRuns: {result if not failed else failed[:3]}")
    return [item["run"]["runId"] for item in launched]


def summary_events_per_team(dsn: str) -> dict[int, int]:
    with TraceStore(dsn).session() as client:
        rows = client.query(
            "SELECT team_id, count() FROM events WHERE event = '$ai_trace_summary' GROUP BY team_id"
        ).result_rows
    return {int(team): int(count) for team, count in rows}


def measure(tmp: Path, mode: str, teams: int) -> dict[str, Any]:
    """One mode on a fresh stack: seconds from schedule evaluation to the last run's end, and run figures."""
    store = TraceStore(f"chdb://{tmp / 'data' / 'clickhouse'}")
    store.ensure_schema()
    team_ids = list(range(1, teams + 1))
    seed_store(
        store,
        team_ids,
        [HOUR],
        TRACES_PER_TEAM_HOUR,
        progress=False,
        neighbours=False,
        include_non_ai=False,
        oversized_fraction=0.0,
    )
    teams_partitions = {"teams": [str(team) for team in team_ids]}
    with dagster_stack(tmp, stack_env(mode, teams), dynamic_partitions=teams_partitions) as stack:
        log(f"{mode}: stack up, {teams} teams registered; evaluating the schedule and launching")
        load_before = os.getloadavg()[0]
        started = time.time()
        requests = schedule_run_requests(stack)
        run_ids = launch(stack, requests)
        launched = time.time()
        runs = stack.wait_for_runs(run_ids, timeout_s=RUNS_TIMEOUT_S)
        failed = [run["runId"] for run in runs if run["status"] != "SUCCESS"]
        if failed:
            raise StackError(f"{mode}: {len(failed)} runs did not succeed: {failed[:5]}\n{stack.logs()}")
        finished = max(run["endTime"] for run in runs)
        load_after = os.getloadavg()[0]
        written = summary_events_per_team(stack.dsn)
    if written != dict.fromkeys(team_ids, TRACES_PER_TEAM_HOUR):
        raise RuntimeError(f"{mode}: summary events per team {written} (expected 1 per team)")
    in_run = sum(run["endTime"] - run["startTime"] for run in runs)
    wall = finished - started
    log(f"{mode}: {len(runs)} runs, {wall:.1f} s wall, {wall / teams:.3f} s per team-partition")
    return {
        "runs": len(runs),
        "wall_s": wall,
        "submit_s": launched - started,
        "in_run_s": in_run,
        "per_partition_s": wall / teams,
        # Other work on the machine inflates per-team mode most (many short processes): say how busy it was.
        "load": (load_before, load_after),
    }


def run(quick: bool = False) -> list[Row]:
    teams = TEAMS_QUICK if quick else TEAMS_FULL
    results: dict[str, dict[str, Any]] = {}
    for mode in ("per_team", "sharded"):
        with tempfile.TemporaryDirectory(prefix=f"bench-orchestration-{mode}-") as tmp:
            results[mode] = measure(Path(tmp), mode, teams)
    per_team, sharded = results["per_team"], results["sharded"]
    ratio = sharded["per_partition_s"] / per_team["per_partition_s"]
    rows: list[Row] = []
    for mode, figures in results.items():
        rows += [
            row(
                f"{mode}: wall time, {teams} teams x 1 h",
                figures["wall_s"],
                "s",
                note=(
                    f"{figures['runs']} runs (schedule mode {mode}), max 4 concurrent; "
                    f"submission {figures['submit_s']:.1f} s; "
                    f"sum of in-run times {figures['in_run_s']:.1f} s; "
                    f"1-min load average {figures['load'][0]:.1f} before, {figures['load'][1]:.1f} after"
                ),
                digits=1,
            ),
            row(
                f"{mode}: overhead per team-partition",
                figures["per_partition_s"],
                "s",
                baseline=per_team["per_partition_s"] if mode == "sharded" else None,
                target=f"<= {TARGET_RATIO:.0%} of per-team" if mode == "sharded" else "",
                met=ratio <= TARGET_RATIO if mode == "sharded" else None,
                note="(launch to last run end) / teams; 1 trace per team-hour, heuristic summarizer",
            ),
        ]
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{TEAMS_QUICK} teams instead of {TEAMS_FULL}")
    args = parser.parse_args()
    print_rows(run(quick=args.quick or bool(os.environ.get("TRACE_SUMMARIES_BENCH_QUICK"))))
    sys.exit(0)
