"""Retries of failed scheduled runs by `failed_partitions_sensor`, on a real on-disk Dagster instance: the
LLM endpoint (the OpenAI-compatible test server) down for a scheduled run and up for its retry; the max and
the growing delay on real failed runs, evaluated at explicit times; which failed runs are retried."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from trace_summaries.defs.partition_failures import RETRY_ATTEMPT_TAG, RETRY_OF_TAG
from trace_summaries.defs.partition_sets import TEAMS
from trace_summaries.defs.resources import LLMResource
from trace_summaries.defs.schedules import MODE_TAG
from trace_summaries.defs.sensors import RetryPlan, failed_partitions_sensor, plan_retries
from trace_summaries.demo import seed_store
from trace_summaries.store import TraceStore
from trace_summaries_harness.openai_server import Fault, OpenAICompatibleServer
from trace_summaries_tests.reliability.fault_support import step_failure_messages
from trace_summaries_tests.support import clock
from trace_summaries_tests.support.expected_traces import (
    expected_traces,
    summary_count_and_distinct,
    summary_rows,
)
from trace_summaries_tests.support.fixtures_llm import TEST_API_KEY
from trace_summaries_tests.support.pipeline_defs import pipeline_definitions
from trace_summaries_tests.support.schedule_ticks import tick

HOUR_KEY = clock.HOUR_KEY
TICK = clock.TICK
TEAM = 3
LOG = logging.getLogger(__name__)
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


@pytest.fixture
def embedded(tmp_path: Path) -> TraceStore:
    store = TraceStore(f"chdb://{tmp_path / 'clickhouse'}")
    store.ensure_schema()
    return store


def evaluate_sensor(instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    with dg.build_sensor_context(instance=instance, cursor=cursor) as context:
        return failed_partitions_sensor(context)


def execute(
    job: dg.JobDefinition, instance: dg.DagsterInstance, request: dg.RunRequest
) -> dg.ExecuteInProcessResult:
    """What the daemon does with a run request: a run of the job with its partition(s), config and tags."""
    return job.execute_in_process(
        instance=instance,
        partition_key=request.partition_key,
        run_config=request.run_config,
        tags=request.tags,
        raise_on_error=False,
    )


def ended_at(instance: dg.DagsterInstance, run_id: str) -> float:
    [record] = instance.get_run_records(filters=dg.RunsFilter(run_ids=[run_id]))
    assert record.end_time is not None
    return record.end_time


def test_a_scheduled_run_failing_while_the_llm_is_down_is_retried_and_the_hour_ends_summarized(
    embedded: TraceStore,
    instance: dg.DagsterInstance,
    tmp_path: Path,
    llm_server: OpenAICompatibleServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_store(embedded, [TEAM], [clock.HOUR], 4, progress=False, oversized_fraction=0.0)
    expected = expected_traces(embedded, [TEAM], clock.HOUR, clock.HOUR + timedelta(hours=1))
    assert len(expected) == 4
    instance.add_dynamic_partitions(TEAMS.name, [str(TEAM)])
    monkeypatch.setenv("TRACE_SUMMARIES_ALLOWED_TEAM_IDS", str(TEAM))
    monkeypatch.setenv("TRACE_SUMMARIES_RETRY_FAILED_MAX", "2")
    monkeypatch.setenv("TRACE_SUMMARIES_RETRY_FAILED_DELAY_SECONDS", "0")
    llm = LLMResource(api_key=TEST_API_KEY, base_url=llm_server.base_url, max_attempts=1, timeout_s=5.0)
    job = pipeline_definitions(embedded, tmp_path, llm).resolve_job_def("trace_summaries_job")
    [scheduled] = tick(instance, embedded)

    # The endpoint is down for the scheduled run: every call answers 500, past the retry budget.
    llm_server.add_fault_rule("", [Fault.server_error()], repeat=True)
    first = execute(job, instance, scheduled)
    assert not first.success
    assert any("every trace failed with 'server_error'" in m for m in step_failure_messages(first))
    assert {call.status for call in llm_server.chat_requests()} == {500}
    assert summary_count_and_distinct(embedded) == (0, 0)

    # It is back; the sensor asks for the same partition, run config and tags, one attempt further.
    llm_server.clear_faults()
    evaluation = evaluate_sensor(instance, None)
    [retry] = evaluation.run_requests
    assert retry.partition_key == scheduled.partition_key
    assert retry.run_config == scheduled.run_config
    assert retry.tags == scheduled.tags | {RETRY_ATTEMPT_TAG: "1", RETRY_OF_TAG: first.run_id}
    assert retry.tags[MODE_TAG] == "detailed"
    second = execute(job, instance, retry)

    assert second.success
    rows = summary_rows(embedded, [TEAM])
    assert sorted(trace for _, _, _, trace in rows) == sorted(trace for _, _, trace in expected)
    assert summary_count_and_distinct(embedded) == (4, 4)  # exactly one summary per sampled trace
    # Succeeded: nothing further, now or at later evaluations.
    after = evaluate_sensor(instance, evaluation.cursor)
    assert after.run_requests == []
    assert evaluate_sensor(instance, after.cursor).run_requests == []
    assert len(instance.get_run_records(filters=dg.RunsFilter(job_name="trace_summaries_job"))) == 2


def test_retries_wait_longer_each_time_and_stop_at_the_max(
    embedded: TraceStore, instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A team key that is not a team: its run fails at sampling, every time, in a fraction of a second.
    instance.add_dynamic_partitions(TEAMS.name, ["bad-team"])
    job = pipeline_definitions(embedded, tmp_path).resolve_job_def("trace_summaries_job")
    scheduled = dg.RunRequest(
        partition_key=f"{HOUR_KEY}|bad-team",
        run_config={"ops": {"sampled_traces": {"config": {"max_traces": 9}}}},
        tags={"trace_summaries/trigger": "schedule", MODE_TAG: "detailed"},
    )
    runs = [execute(job, instance, scheduled)]
    assert not runs[0].success

    # The sensor itself, default delay (300 s): right after the failure nothing is due, the run waits.
    waiting = evaluate_sensor(instance, None)
    assert waiting.run_requests == []
    assert list(RetryPlan.from_cursor(waiting.cursor).waiting) == [runs[0].run_id]

    base = 60.0
    cursor: str | None = None
    for attempt in (1, 2):
        ended = ended_at(instance, runs[-1].run_id)
        delay = base * 2 ** (attempt - 1)  # 60 s, then 120 s
        early = plan_retries(
            instance, cursor, now=ended + delay - 1, max_attempts=2, base_delay_s=base, log=LOG
        )
        assert early.requests == [] and early.waiting == {runs[-1].run_id: ended + delay}
        due = plan_retries(
            instance, early.cursor, now=ended + delay, max_attempts=2, base_delay_s=base, log=LOG
        )
        [request] = due.requests
        assert request.tags[RETRY_ATTEMPT_TAG] == str(attempt)
        assert request.partition_key == scheduled.partition_key and request.run_config == scheduled.run_config
        # The same evaluation again asks for the same run key: the daemon launches it once.
        again = plan_retries(
            instance, early.cursor, now=ended + delay, max_attempts=2, base_delay_s=base, log=LOG
        )
        assert [r.run_key for r in again.requests] == [request.run_key]
        runs.append(execute(job, instance, request))
        assert not runs[-1].success
        cursor = due.cursor

    # Two retries failed too: the max is reached, nothing more, however long we wait.
    late = plan_retries(
        instance,
        cursor,
        now=ended_at(instance, runs[-1].run_id) + 1e6,
        max_attempts=2,
        base_delay_s=base,
        log=LOG,
    )
    assert late.requests == [] and late.waiting == {}
    assert (
        plan_retries(instance, late.cursor, now=1e12, max_attempts=2, base_delay_s=base, log=LOG).requests
        == []
    )
    assert len(instance.get_run_records(filters=dg.RunsFilter(job_name="trace_summaries_job"))) == 3


def test_a_failed_ranged_scheduled_run_is_retried_whole_and_manual_or_daemon_retried_runs_are_not(
    embedded: TraceStore, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    instance.add_dynamic_partitions(TEAMS.name, ["bad-a", "bad-b"])
    job = pipeline_definitions(embedded, tmp_path).resolve_job_def("trace_summaries_job")
    ranged = {RANGE_START: f"{HOUR_KEY}|bad-a", RANGE_END: f"{HOUR_KEY}|bad-b"}
    config = {"ops": {"sampled_traces": {"config": {"max_traces": 5}}}}
    scheduled = execute(
        job,
        instance,
        dg.RunRequest(run_config=config, tags={"trace_summaries/trigger": "schedule", **ranged}),
    )
    manual = execute(job, instance, dg.RunRequest(partition_key=f"{HOUR_KEY}|bad-a"))
    daemon_retries = execute(
        job,
        instance,
        dg.RunRequest(partition_key=f"{HOUR_KEY}|bad-b", tags={"trace_summaries/trigger": "schedule"}),
    )
    assert not (scheduled.success or manual.success or daemon_retries.success)
    # What Dagster's run retries (run_retries in deploy/dagster.yaml) mark on a run they will launch again.
    instance.add_run_tags(daemon_retries.run_id, {"dagster/will_retry": "true"})

    plan = plan_retries(instance, None, now=1e12, max_attempts=2, base_delay_s=0, log=LOG)

    [retry] = plan.requests
    assert retry.partition_key is None
    assert {key: retry.tags[key] for key in ranged} == ranged
    assert retry.run_config == config and retry.tags[RETRY_OF_TAG] == scheduled.run_id
    result = execute(job, instance, retry)
    run = instance.get_run_by_id(result.run_id)
    assert run is not None and run.tags[RANGE_START] == ranged[RANGE_START]
