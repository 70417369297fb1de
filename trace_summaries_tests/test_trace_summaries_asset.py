"""The `trace_summaries` asset and its IO manager, against the real fake-LLM server and embedded store."""

from __future__ import annotations

import os
import signal
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from trace_summaries.defs.io_managers import SampleIOManager, SummaryEventsIOManager
from trace_summaries.defs.partition_sets import TEAMS
from trace_summaries.defs.resources import ClickHouseResource, LLMResource
from trace_summaries.defs.sampled_traces import sampled_traces
from trace_summaries.defs.trace_summaries import summaries_table, trace_summaries
from trace_summaries.demo import seed_store
from trace_summaries.store import TraceStore
from trace_summaries.summarize import PROMPT_VERSION
from trace_summaries.write.event import SummaryEvent, batch_run_id, summary_event_uuid
from trace_summaries_harness.dagster_cli import PROJECT, materialize_command
from trace_summaries_harness.openai_server import Fault, OpenAICompatibleServer, openai_server
from trace_summaries_harness.ports import running, wait_until
from trace_summaries_tests.support import clock
from trace_summaries_tests.support.environment import child_env
from trace_summaries_tests.support.expected_traces import summaries_by_team
from trace_summaries_tests.support.fixtures_llm import TEST_API_KEY
from trace_summaries_tests.support.pipeline_defs import pipeline_definitions

HOUR = clock.HOUR
TEAM = 5
KEY = f"{clock.HOUR_KEY}|{TEAM}"
TRACES = 6


@pytest.fixture
def seeded(store: TraceStore, instance: dg.DagsterInstance) -> TraceStore:
    seed_store(store, [TEAM], [HOUR], TRACES, progress=False, oversized_fraction=0.0)
    instance.add_dynamic_partitions(TEAMS.name, [str(TEAM)])
    return store


def resources(store: TraceStore, tmp_path: Path, llm: LLMResource) -> dict[str, Any]:
    clickhouse = ClickHouseResource(dsn=store.dsn)
    return {
        "clickhouse": clickhouse,
        "llm": llm,
        "sample_io_manager": SampleIOManager(base_dir=str(tmp_path / "intermediate")),
        "summary_events_io_manager": SummaryEventsIOManager(clickhouse=clickhouse),
    }


def fake_llm(server: OpenAICompatibleServer, api_key: str = TEST_API_KEY) -> LLMResource:
    return LLMResource(api_key=api_key, base_url=server.base_url, timeout_s=5.0)


def run(
    store: TraceStore,
    instance: dg.DagsterInstance,
    tmp_path: Path,
    llm: LLMResource,
    **summary_config: Any,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [sampled_traces, trace_summaries],
        instance=instance,
        partition_key=KEY,
        resources=resources(store, tmp_path, llm),
        run_config={"ops": {"trace_summaries": {"config": summary_config}}} if summary_config else None,
        raise_on_error=False,
    )


def summary_events(store: TraceStore) -> list[tuple[str, str, str]]:
    with store.session() as client:
        rows = client.query(
            "SELECT toString(uuid), JSONExtractString(properties, '$ai_trace_id'),"
            " JSONExtractString(properties, '$ai_summary_mode')"
            " FROM events WHERE event = '$ai_trace_summary' ORDER BY 1"
        ).result_rows
    return [tuple(row) for row in rows]


def metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    [materialization] = result.asset_materializations_for_node("trace_summaries")
    return {key: value.value for key, value in materialization.metadata.items()}


def selected_trace_ids(result: dg.ExecuteInProcessResult) -> list[str]:
    samples = result.output_for_node("sampled_traces")
    return [trace.trace_id for trace in samples[KEY].traces]


def test_summaries_from_the_llm_are_written_as_events(
    seeded: TraceStore, instance: dg.DagsterInstance, tmp_path: Path, llm_server: OpenAICompatibleServer
) -> None:
    result = run(seeded, instance, tmp_path, fake_llm(llm_server))

    assert result.success
    traces = selected_trace_ids(result)
    assert len(traces) == TRACES
    meta = metadata(result)
    assert meta["queried"] == TRACES and meta["generated"] == TRACES and meta["failed"] == 0
    assert meta["input_tokens"] > 0 and meta["output_tokens"] > 0
    assert meta["cost_usd"] > 0
    assert meta["llm_latency_p95_s"] >= meta["llm_latency_p50_s"] > 0
    # The fake's repertoire leaves out one item's line_refs now and then: counted as a dropped reference.
    assert meta["line_refs_invalid"] == llm_server.served_shapes()["missing_ref_key"]
    # Every summary of the partition in one Markdown table for the UI: one row per trace, by its id.
    table = meta["summaries"].splitlines()
    assert table[0].startswith("| window | team | title | first bullet | trace id | provider |")
    assert len(table) == 2 + TRACES
    assert all(sum(f"`{trace}`" in row for row in table) == 1 for trace in traces)
    outputs_for_table: dict[str, Any] = result.output_for_node("trace_summaries")
    [partition] = outputs_for_table.values()
    bounded = summaries_table([partition], max_rows=2)
    assert len(bounded.splitlines()) == 2 + 2 + 2
    assert bounded.endswith(f"_{TRACES - 2} more summaries not shown (table bounded at 2)._")

    outputs: dict[str, Any] = result.output_for_node("trace_summaries")
    [summaries] = outputs.values()
    events = {event.properties.trace_id: event for event in summaries.events}
    assert set(events) == set(traces)
    for trace_id, event in events.items():
        props = event.properties
        assert event.uuid == summary_event_uuid(TEAM, trace_id, "detailed", batch_run_id(TEAM, HOUR))
        assert event.timestamp == HOUR + timedelta(hours=1)
        assert event.distinct_id == f"trace_summary_{TEAM}"
        assert props.provider == "openai" and props.model == "gpt-4.1-nano"
        assert props.prompt_version == PROMPT_VERSION
        assert props.batch_run_id == f"{TEAM}_2026-11-20T09:00:00+00:00"
        assert props.bullets and any(b.line_refs.startswith("L") for b in props.bullets)
    assert sorted(uuid for uuid, _, _ in summary_events(seeded)) == sorted(e.uuid for e in events.values())
    # Every call asked for the strict JSON schema.
    formats = [request.body["response_format"] for request in llm_server.chat_requests()]
    assert all(f["type"] == "json_schema" and f["json_schema"]["strict"] is True for f in formats)


def test_a_ranged_run_summarizes_its_partitions_together_under_one_limit_of_calls_in_flight(
    store: TraceStore, instance: dg.DagsterInstance, tmp_path: Path, llm_server: OpenAICompatibleServer
) -> None:
    """Three teams of three traces, six calls allowed: the calls of different teams overlap, never above six.

    One partition after another, no more than three calls could ever be in flight. The step's pacer starts at
    one call and doubles while the endpoint keeps up, so the server's gate holds the answers until four are in
    flight: more than three at once proves the partitions share one limit.
    """
    teams = ["3", "5", "7"]
    seed_store(store, [int(team) for team in teams], [HOUR], 3, progress=False, oversized_fraction=0.0)
    instance.add_dynamic_partitions(TEAMS.name, teams)
    llm_server.hold_chat_until(4, timeout_s=1)
    llm = LLMResource(api_key=TEST_API_KEY, base_url=llm_server.base_url, timeout_s=30.0)
    job = pipeline_definitions(store, tmp_path, llm=llm).resolve_job_def("trace_summaries_job")

    result = job.execute_in_process(
        instance=instance,
        run_config={"ops": {"trace_summaries": {"config": {"batch_size": 6}}}},
        tags={
            "dagster/asset_partition_range_start": f"2026-11-20-09:00|{teams[0]}",
            "dagster/asset_partition_range_end": f"2026-11-20-09:00|{teams[-1]}",
        },
    )

    assert result.success
    assert 3 < llm_server.max_in_flight_for("chat") <= 6
    assert len(llm_server.chat_requests()) == 9 + len(llm_server.unusable_answers())
    outputs: dict[str, Any] = result.output_for_node("trace_summaries")
    assert {key: len(summaries.events) for key, summaries in outputs.items()} == {
        f"2026-11-20-09:00|{team}": 3 for team in teams
    }
    assert summaries_by_team(store) == {3: 3, 5: 3, 7: 3}


def test_the_io_manager_reads_back_what_it_wrote(
    seeded: TraceStore, instance: dg.DagsterInstance, tmp_path: Path, llm_server: OpenAICompatibleServer
) -> None:
    result = run(seeded, instance, tmp_path, fake_llm(llm_server))
    assert result.success
    io_manager = resources(seeded, tmp_path, fake_llm(llm_server))["summary_events_io_manager"]
    context = dg.build_input_context(
        asset_key=dg.AssetKey("trace_summaries"),
        partition_key=KEY,
        asset_partitions_def=trace_summaries.partitions_def,
        instance=instance,
    )
    loaded: dict[str, list[SummaryEvent]] = io_manager.load_input(context)
    written = result.output_for_node("trace_summaries")[KEY].events
    assert sorted(loaded[KEY], key=lambda e: e.uuid) == sorted(written, key=lambda e: e.uuid)


def test_without_an_endpoint_the_heuristic_summarizer_runs_end_to_end(
    seeded: TraceStore, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    result = run(seeded, instance, tmp_path, LLMResource())

    assert result.success
    events = result.output_for_node("trace_summaries")[KEY].events
    assert len(events) == TRACES
    assert {event.properties.provider for event in events} == {"heuristic"}
    assert all(event.properties.bullets and event.properties.title for event in events)
    assert metadata(result)["cost_usd"] == 0


def test_one_failing_trace_does_not_fail_the_partition(
    seeded: TraceStore, instance: dg.DagsterInstance, tmp_path: Path, llm_server: OpenAICompatibleServer
) -> None:
    # The first trace gets two schema-violating answers (one retry), then fails; the rest succeed.
    llm_server.enqueue_faults([Fault.schema_violation(), Fault.schema_violation()])

    result = run(seeded, instance, tmp_path, fake_llm(llm_server), batch_size=1)

    assert result.success
    meta = metadata(result)
    assert meta["generated"] == TRACES - 1
    assert meta["failed_by_reason"] == {"schema_violation": 1}
    assert len(summary_events(seeded)) == TRACES - 1


def test_every_trace_unauthorized_fails_the_run_with_a_clear_message(
    seeded: TraceStore, instance: dg.DagsterInstance, tmp_path: Path, llm_server: OpenAICompatibleServer
) -> None:
    wrong_key = "sk-wrong-key-that-must-not-leak"
    result = run(seeded, instance, tmp_path, fake_llm(llm_server, api_key=wrong_key), max_attempts=2)

    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.error.message
    assert "failed with 'authentication'" in message and "OPENAI_API_KEY" in message
    assert wrong_key not in message
    # 401 is not retried: one call per trace.
    assert len(llm_server.chat_requests()) == TRACES
    assert summary_events(seeded) == []


def test_summaries_of_both_modes_coexist(
    seeded: TraceStore, instance: dg.DagsterInstance, tmp_path: Path, llm_server: OpenAICompatibleServer
) -> None:
    assert run(seeded, instance, tmp_path, fake_llm(llm_server), mode="minimal").success
    assert run(seeded, instance, tmp_path, fake_llm(llm_server), mode="detailed").success
    assert run(seeded, instance, tmp_path, fake_llm(llm_server), mode="minimal").success

    modes = [mode for _, _, mode in summary_events(seeded)]
    assert sorted(modes) == ["detailed"] * TRACES + ["minimal"] * TRACES
    prompts = [request.message_text("system") for request in llm_server.chat_requests()]
    assert len(set(prompts)) == 2


def test_rematerializing_a_partition_keeps_event_ids_even_after_a_killed_run(
    seeded: TraceStore, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    with openai_server(require_api_key=TEST_API_KEY) as server:
        first = run(seeded, instance, tmp_path, fake_llm(server))
        assert first.success
        expected = summary_events(seeded)
        assert len(expected) == TRACES

        # A second run, as its own process, killed while its LLM calls are in flight.
        server.latency_s = 30.0
        server.reset_stats()
        env = child_env(
            DAGSTER_HOME=instance.root_directory,
            TRACE_SUMMARIES_CLICKHOUSE_DSN=seeded.dsn,
            TRACE_SUMMARIES_INTERMEDIATE_DIR=str(tmp_path / "intermediate"),
            OPENAI_API_KEY=TEST_API_KEY,
            OPENAI_BASE_URL=server.base_url,
        )
        killed_log = tmp_path / "killed-run.log"
        killed = subprocess.Popen(
            materialize_command("sampled_traces,trace_summaries", KEY),
            env=env,
            cwd=PROJECT,
            stdout=killed_log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until(
                lambda: running(killed, "the dagster run") and server.in_flight > 0,
                timeout_s=120,
                what="the run's first LLM call",
                log=killed_log.read_text,
            )
        finally:
            os.killpg(killed.pid, signal.SIGKILL)
            killed.wait()
        server.latency_s = 0.0

        third = run(seeded, instance, tmp_path, fake_llm(server))
        assert third.success

    assert summary_events(seeded) == expected


def test_a_run_starts_its_calls_where_the_last_run_on_the_same_endpoint_and_model_left_them(
    seeded: TraceStore, instance: dg.DagsterInstance, tmp_path: Path, llm_server: OpenAICompatibleServer
) -> None:
    """The first run starts at one call in flight (nothing known) and doubles; the next run on the same
    endpoint and model starts at half the limit the first ended at (one read of the asset's latest
    materialization); another model starts cold again."""
    llm = fake_llm(llm_server)
    first = metadata(run(seeded, instance, tmp_path, llm, batch_size=6))
    assert first["llm_endpoint"] == f"{llm_server.url.removeprefix('http://')}/v1 gpt-4.1-nano"
    assert TEST_API_KEY not in str(first)
    assert first["llm_concurrency_initial"] == 1
    assert first["llm_concurrency_final"] >= 2

    second = metadata(run(seeded, instance, tmp_path, llm, batch_size=6))
    assert second["llm_concurrency_initial"] == first["llm_concurrency_final"] // 2 > 1
    assert second["generated"] == TRACES

    other_model = metadata(run(seeded, instance, tmp_path, llm, batch_size=6, model="gpt-4.1-mini"))
    assert other_model["llm_endpoint"].endswith(" gpt-4.1-mini")
    assert other_model["llm_concurrency_initial"] == 1
