"""Time limits, as the original bounds them: one trace's summary (300 s over all its attempts), each sampling
query (300 s, server-side) and each run (120 minutes, ``dagster/max_runtime``). Each limit is shown firing
for real, made small: a slow fake LLM, a sampling query over many rows, a run launched by Dagster."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
import yaml

from trace_summaries.config import SettingError
from trace_summaries.defs.io_managers import SampleIOManager, SummaryEventsIOManager
from trace_summaries.defs.jobs import MAX_RUNTIME_TAG, max_runtime_tags, trace_summaries_job
from trace_summaries.defs.partition_sets import TEAMS
from trace_summaries.defs.resources import ClickHouseResource, LLMResource
from trace_summaries.defs.sampled_traces import sampled_traces
from trace_summaries.defs.trace_summaries import trace_summaries
from trace_summaries.demo import seed_store
from trace_summaries.sample import sample_team_hour
from trace_summaries.sample.query import SamplingTimeout
from trace_summaries.store import TraceStore
from trace_summaries.summarize import LLMSummarizer, SummaryMode, TraceSummaryResult
from trace_summaries.summarize.batch import summarize_prepared
from trace_summaries.summarize.pacing import CallPacer
from trace_summaries_harness.dagster_cli import PROJECT
from trace_summaries_harness.dagster_stack import dagster_stack
from trace_summaries_harness.openai_server import Fault, OpenAICompatibleServer, openai_server
from trace_summaries_harness.ports import wait_until
from trace_summaries_tests.support import clock
from trace_summaries_tests.support.expected_traces import summaries_by_team
from trace_summaries_tests.support.fixtures_llm import (
    TEST_API_KEY,
    checkout_events,
    checkout_text,
    fast_settings,
)
from trace_summaries_tests.support.pipeline_defs import pipeline_definitions

DEADLINE_SETTING = "TRACE_SUMMARIES_LLM_TRACE_DEADLINE_S"


def summarize(summarizer: LLMSummarizer, mode: SummaryMode = "detailed") -> TraceSummaryResult:
    return asyncio.run(summarizer.summarize(checkout_text(), checkout_events(), mode))


# -- one trace's summary: a deadline across its attempts ----------------------------------------------------


def test_a_running_call_is_cut_at_the_trace_deadline_not_at_its_own_timeout(
    llm_server: OpenAICompatibleServer,
) -> None:
    llm_server.enqueue_faults([Fault.slow(10.0)] * 4)
    settings = fast_settings(llm_server, timeout_s=5.0, max_attempts=4, trace_deadline_s=0.5)

    started = time.monotonic()
    result = summarize(LLMSummarizer(settings))
    elapsed = time.monotonic() - started

    # Without the deadline: 4 attempts x 5 s. With it, the first call is cut at 0.5 s and nothing follows.
    assert (result.status, result.reason) == ("failed", "deadline_exceeded")
    assert result.attempts == 1 and len(llm_server.chat_requests()) == 1
    assert 0.5 <= elapsed < 3.0, elapsed
    assert (
        result.error is not None
        and DEADLINE_SETTING in result.error
        and "cut at the deadline" in result.error
    )


def test_no_attempt_starts_after_the_trace_deadline(llm_server: OpenAICompatibleServer) -> None:
    # Every call fails (5xx) after 0.15 s: with 20 attempts allowed, only the deadline stops the retries.
    llm_server.latency_s = 0.15
    llm_server.enqueue_faults([Fault.server_error()] * 20)
    settings = fast_settings(llm_server, max_attempts=20, trace_deadline_s=0.6)

    started = time.monotonic()
    result = summarize(LLMSummarizer(settings))
    elapsed = time.monotonic() - started

    assert (result.status, result.reason) == ("failed", "deadline_exceeded")
    assert 1 <= result.attempts < 20
    assert len(llm_server.chat_requests()) == result.attempts
    # No request arrived after the deadline (measured from the first request's arrival, a lower bound).
    assert elapsed < 0.6 + 0.15 + 1.0, elapsed
    assert result.error is not None and DEADLINE_SETTING in result.error and "server_error" in result.error


def test_a_backoff_that_would_end_past_the_deadline_fails_the_trace_at_once(
    llm_server: OpenAICompatibleServer,
) -> None:
    # The endpoint asks to come back in 3 s; the trace has 1 s: it fails now instead of sleeping into it.
    llm_server.enqueue_faults([Fault.rate_limit(retry_after="3")])
    settings = fast_settings(llm_server, max_attempts=4, trace_deadline_s=1.0, retry_after_max_s=10.0)

    started = time.monotonic()
    result = summarize(LLMSummarizer(settings))

    assert (result.status, result.reason, result.attempts) == ("failed", "deadline_exceeded", 1)
    assert result.retry_waits_s == ()
    assert time.monotonic() - started < 1.0
    assert result.error is not None and "rate_limited" in result.error


def test_waiting_for_the_first_call_slot_does_not_count_against_the_deadline() -> None:
    """Three traces, one call at a time (the pacer starts at one): the second trace waits for the first
    call's slot, 0.4 s, before its own 0.4 s call. Its deadline (0.7 s) counts from its call, not its wait."""
    with openai_server(require_api_key=TEST_API_KEY, latency_s=0.4, repertoire="clean") as server:
        summarizer = LLMSummarizer(fast_settings(server, trace_deadline_s=0.7))
        results = asyncio.run(
            summarize_prepared(
                summarizer,
                ["a", "b", "c"],
                lambda _key: (checkout_text(), checkout_events()),
                "detailed",
                batch_size=3,
                pacer=CallPacer(3, initial=1),
            )
        )

    assert {key: result.status for key, result in results.items()} == dict.fromkeys("abc", "generated")
    assert max(result.latency_s for result in results.values()) > 0.7


def test_a_trace_within_its_deadline_is_not_affected(llm_server: OpenAICompatibleServer) -> None:
    llm_server.enqueue_faults([Fault.server_error()])
    result = summarize(LLMSummarizer(fast_settings(llm_server, trace_deadline_s=30.0)))

    assert result.status == "generated", result.error
    assert result.attempts >= 2


def test_a_trace_past_its_deadline_is_counted_in_failed_by_reason_and_the_others_are_summarized(
    store: TraceStore, instance: dg.DagsterInstance, tmp_path: Path, llm_server: OpenAICompatibleServer
) -> None:
    seed_store(store, [TEAM], [clock.HOUR], 4, progress=False, oversized_fraction=0.0)
    instance.add_dynamic_partitions(str(TEAMS.name), [str(TEAM)])
    # The first call (one at a time) hangs for 10 s: its trace is cut at its 1 s deadline.
    llm_server.enqueue_faults([Fault.slow(10.0)])
    llm = LLMResource(api_key=TEST_API_KEY, base_url=llm_server.base_url, timeout_s=5.0, trace_deadline_s=1.0)

    result = materialize(store, instance, tmp_path, [sampled_traces, trace_summaries], llm, batch_size=1)

    assert result.success
    metadata = {
        key: value.value
        for event in result.get_asset_materialization_events()
        if event.asset_key == dg.AssetKey("trace_summaries")
        for key, value in event.materialization.metadata.items()
    }
    assert metadata["failed_by_reason"] == {"deadline_exceeded": 1}
    assert metadata["generated"] == 3


# -- sampling queries: max_execution_time on the server ------------------------------------------------------

TEAM = 7
KEY = f"{clock.HOUR_KEY}|{TEAM}"
SAMPLING_SETTING = "TRACE_SUMMARIES_SAMPLING_TIMEOUT_S"
# Enough rows that the selection query (a GROUP BY over the window) takes tens of milliseconds on either
# path, far above the limits below; inserted by the engine itself, so the test stays fast.
MANY_ROWS = 500_000
MANY_TRACES = 20_000


def seed_many_rows(store: TraceStore) -> None:
    with store.session() as client:
        client.command(
            "INSERT INTO events (uuid, event, properties, timestamp, team_id, distinct_id) "
            "SELECT generateUUIDv4(), '$ai_generation', "
            "concat('{\"$ai_trace_id\":\"t', toString(number % {traces:UInt64}), '\"}'), "
            "{hour:DateTime64(6, 'UTC')} + toIntervalMicrosecond(number % 3600000000), {team:Int64}, 'd' "
            "FROM numbers({rows:UInt64})",
            parameters={"traces": MANY_TRACES, "hour": clock.HOUR, "team": TEAM, "rows": MANY_ROWS},
        )


def materialize(
    store: TraceStore,
    instance: dg.DagsterInstance,
    tmp_path: Path,
    assets: list[dg.AssetsDefinition],
    llm: LLMResource | None = None,
    **summary_config: object,
) -> dg.ExecuteInProcessResult:
    clickhouse = ClickHouseResource(dsn=store.dsn)
    return dg.materialize(
        assets,
        instance=instance,
        partition_key=f"{clock.HOUR_KEY}|{TEAM}",
        resources={
            "clickhouse": clickhouse,
            "llm": llm or LLMResource(),
            "sample_io_manager": SampleIOManager(base_dir=str(tmp_path / "intermediate")),
            "summary_events_io_manager": SummaryEventsIOManager(clickhouse=clickhouse),
        },
        run_config={"ops": {"trace_summaries": {"config": summary_config}}} if summary_config else None,
        raise_on_error=False,
    )


def test_a_sampling_query_past_its_limit_is_stopped_by_the_server_and_names_the_setting(
    store: TraceStore,
) -> None:
    seed_many_rows(store)
    window = (clock.HOUR, clock.HOUR + timedelta(hours=1))

    with store.session() as client:
        with pytest.raises(SamplingTimeout, match=SAMPLING_SETTING) as raised:
            sample_team_hour(client, TEAM, *window, timeout_s=0.005)
        # The server stopped it (ClickHouse's TIMEOUT_EXCEEDED), not a client-side timer.
        assert "TIMEOUT_EXCEEDED" in str(raised.value.__cause__)
        # The same query with the default limit reads the whole window.
        sample = sample_team_hour(client, TEAM, *window)
    assert sample.stats.traces_in_window == MANY_TRACES


def test_a_partition_whose_sampling_query_times_out_fails_with_the_setting_named(
    store: TraceStore,
    instance: dg.DagsterInstance,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_many_rows(store)
    instance.add_dynamic_partitions(str(TEAMS.name), [str(TEAM)])
    monkeypatch.setenv(SAMPLING_SETTING, "0.005")

    result = materialize(store, instance, tmp_path, [sampled_traces])

    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.error.message if failure.step_failure_data.error else ""
    description = failure.step_failure_data.user_failure_data
    text = f"{message} {description.description if description else ''}"
    assert KEY in text and f"{SAMPLING_SETTING}=0.005 s" in text, text
    assert instance.get_materialized_partitions(dg.AssetKey("sampled_traces")) == set()

    # With the setting back at its default, the same partition samples every trace of the window.
    monkeypatch.delenv(SAMPLING_SETTING)
    assert materialize(store, instance, tmp_path, [sampled_traces]).success
    assert instance.get_materialized_partitions(dg.AssetKey("sampled_traces")) == {KEY}


# -- runs: dagster/max_runtime, enforced by run monitoring ---------------------------------------------------

DEFAULT_MAX_RUNTIME_S = 120 * 60


def test_a_run_of_the_pipeline_job_carries_the_max_runtime_tag(
    store: TraceStore, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    seed_store(store, [TEAM], [clock.HOUR], 2, progress=False, oversized_fraction=0.0)
    instance.add_dynamic_partitions(str(TEAMS.name), [str(TEAM)])
    job = pipeline_definitions(store, tmp_path).resolve_job_def(trace_summaries_job.name)

    result = job.execute_in_process(instance=instance, partition_key=KEY)

    assert result.success
    run = instance.get_run_by_id(result.run_id)
    assert run is not None and run.tags[MAX_RUNTIME_TAG] == str(DEFAULT_MAX_RUNTIME_S)
    # A run launched with its own limit keeps it.
    result = job.execute_in_process(instance=instance, partition_key=KEY, tags={MAX_RUNTIME_TAG: "60"})
    run = instance.get_run_by_id(result.run_id)
    assert run is not None and run.tags[MAX_RUNTIME_TAG] == "60"


def test_the_max_runtime_follows_its_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert max_runtime_tags() == {MAX_RUNTIME_TAG: str(DEFAULT_MAX_RUNTIME_S)}
    monkeypatch.setenv("TRACE_SUMMARIES_MAX_RUNTIME_MINUTES", "30")
    assert max_runtime_tags() == {MAX_RUNTIME_TAG: "1800"}
    monkeypatch.setenv("TRACE_SUMMARIES_MAX_RUNTIME_MINUTES", "0")
    with pytest.raises(SettingError, match="TRACE_SUMMARIES_MAX_RUNTIME_MINUTES"):
        max_runtime_tags()


@pytest.mark.parametrize("path", ["dagster.yaml", "deploy/dagster.yaml"])
def test_both_instances_enforce_max_runtime_and_bound_untagged_runs_at_the_default(path: str) -> None:
    """Run monitoring reads ``dagster/max_runtime``; runs without it (the implicit asset job's UI
    materializations and backfills) get the instance's ``max_runtime_seconds``."""
    instance_config = yaml.safe_load((PROJECT / path).read_text())
    monitoring = instance_config["run_monitoring"]
    assert monitoring["enabled"] is True
    assert monitoring["max_runtime_seconds"] == DEFAULT_MAX_RUNTIME_S


def test_the_local_instance_loads_with_run_monitoring_on(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT / "dagster.yaml").read_text())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_max_runtime_seconds == DEFAULT_MAX_RUNTIME_S


@pytest.mark.slow
def test_run_monitoring_fails_a_launched_run_past_its_max_runtime(tmp_path: Path) -> None:
    """The real stack (daemon, repository dagster.yaml): a run of the job, launched as the launchpad does,
    carries the tag from TRACE_SUMMARIES_MAX_RUNTIME_MINUTES; its LLM hangs, and run monitoring fails it."""
    store = TraceStore(f"chdb://{tmp_path / 'data' / 'clickhouse'}")
    store.ensure_schema()
    seed_store(store, [TEAM], [clock.HOUR], 1, progress=False, oversized_fraction=0.0)
    with (
        openai_server(require_api_key=TEST_API_KEY, latency_s=600.0) as llm,
        dagster_stack(
            tmp_path,
            {
                "OPENAI_API_KEY": TEST_API_KEY,
                "OPENAI_BASE_URL": llm.base_url,
                "TRACE_SUMMARIES_MAX_RUNTIME_MINUTES": "1",
            },
            dynamic_partitions={"teams": [str(TEAM)]},
        ) as stack,
    ):
        run_id = stack.launch_run(trace_summaries_job.name, {"dagster/partition": KEY})
        wait_until(lambda: len(llm.chat_requests()) >= 1, timeout_s=180, what="the run's first LLM call")
        # 60 s of runtime, then at most one poll of run monitoring (30 s in dagster.yaml).
        [run] = stack.wait_for_runs([run_id], timeout_s=60 + 30 + 60)

    tags = {tag["key"]: tag["value"] for tag in run["tags"]}
    assert tags[MAX_RUNTIME_TAG] == "60"
    assert run["status"] == "FAILURE", run
    assert 60 <= run["endTime"] - run["startTime"] < 60 + 30 + 30, run
    assert summaries_by_team(store) == {}
