"""Fitting traces into the model's context: the window, the text budget, and the shrink-and-retry path,
through the `trace_summaries` asset against the real OpenAI-compatible test server."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from trace_summaries.defs.io_managers import SampleIOManager, SummaryEventsIOManager
from trace_summaries.defs.partition_sets import TEAMS
from trace_summaries.defs.resources import ClickHouseResource, LLMResource
from trace_summaries.defs.sampled_traces import sampled_traces
from trace_summaries.defs.trace_summaries import trace_summaries
from trace_summaries.demo import seed_store
from trace_summaries.store import TraceStore
from trace_summaries.summarize.context_window import (
    MIN_TEXT_CHARS,
    UNKNOWN_CONTEXT_TOKENS,
    context_tokens,
    table_context_tokens,
    text_budget_chars,
)
from trace_summaries.summarize.prompts import NOTABLE_LINES_RESERVE_CHARS
from trace_summaries.write.event import SummaryEvent
from trace_summaries_harness.one_partition import read_summary_events
from trace_summaries_harness.openai_server import Fault, OpenAICompatibleServer
from trace_summaries_tests.support import clock
from trace_summaries_tests.support.fixtures_llm import TEST_API_KEY

HOUR = clock.HOUR
END = clock.hour(10)
TEAM = 11
KEY = f"{clock.HOUR_KEY}|{TEAM}"
TRACES = 5


def test_the_window_comes_from_the_setting_then_the_endpoint_then_the_table() -> None:
    assert table_context_tokens("gpt-4.1-nano-2025-04-14") == 1_047_576
    assert table_context_tokens("SmolLM2-135M-Instruct.Q4_1.gguf") == 8_192
    assert table_context_tokens("some-local-model") is None
    assert context_tokens("gpt-4.1-nano", override=4096, reported=16_384) == 4096
    assert context_tokens("gpt-4.1-nano", reported=16_384) == 16_384
    assert context_tokens("some-local-model") == UNKNOWN_CONTEXT_TOKENS


def test_the_text_gets_what_the_prompt_and_the_answer_leave() -> None:
    roomy = text_budget_chars(8192, answer_tokens=1500, prompt_chars=3000)
    assert 15_000 < roomy < 8192 * 3
    assert text_budget_chars(8192, answer_tokens=3000, prompt_chars=3000) < roomy
    assert text_budget_chars(2048, answer_tokens=1500, prompt_chars=6000) == MIN_TEXT_CHARS


def materialize(
    store: TraceStore, instance: dg.DagsterInstance, tmp_path: Path, llm: LLMResource
) -> tuple[dg.ExecuteInProcessResult, list[SummaryEvent]]:
    seed_store(store, [TEAM], [HOUR], TRACES, progress=False, oversized_fraction=0.0)
    instance.add_dynamic_partitions(TEAMS.name, [str(TEAM)])
    clickhouse = ClickHouseResource(dsn=store.dsn)
    result = dg.materialize(
        [sampled_traces, trace_summaries],
        instance=instance,
        partition_key=KEY,
        resources={
            "clickhouse": clickhouse,
            "llm": llm,
            "sample_io_manager": SampleIOManager(base_dir=str(tmp_path / "intermediate")),
            "summary_events_io_manager": SummaryEventsIOManager(clickhouse=clickhouse),
        },
        raise_on_error=False,
    )
    with store.session() as client:
        events = read_summary_events(client, team_id=TEAM, window_start=HOUR, window_end=END)
    return result, events


def step_metadata(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    (materialization,) = result.asset_materializations_for_node("trace_summaries")
    return {key: value.value for key, value in materialization.metadata.items()}


@pytest.mark.parametrize("store", ["chdb"], indirect=True)
def test_a_small_context_samples_each_trace_text_down_to_its_budget(
    store: TraceStore, instance: dg.DagsterInstance, tmp_path: Path, llm_server: OpenAICompatibleServer
) -> None:
    llm = LLMResource(api_key=TEST_API_KEY, base_url=llm_server.base_url, timeout_s=10.0, context_tokens=2048)

    result, events = materialize(store, instance, tmp_path, llm)

    assert result.success
    metadata = step_metadata(result)
    assert metadata["llm_context_tokens"] == 2048 and metadata["text_max_chars"] == MIN_TEXT_CHARS
    assert len(events) == TRACES
    assert all(event.properties.text_repr_length <= MIN_TEXT_CHARS for event in events)
    assert any(event.properties.text_repr_sampled for event in events)
    # What reached the model is what was budgeted: the user message holds the sampled text.
    prompts = [request.body["messages"][1]["content"] for request in llm_server.chat_requests()]
    assert max(len(prompt) for prompt in prompts) < MIN_TEXT_CHARS + 500 + NOTABLE_LINES_RESERVE_CHARS


@pytest.mark.parametrize("store", ["chdb"], indirect=True)
def test_a_trace_the_endpoint_finds_too_long_is_rendered_smaller_and_tried_once_more(
    store: TraceStore, instance: dg.DagsterInstance, tmp_path: Path, llm_server: OpenAICompatibleServer
) -> None:
    too_long = "This model's maximum context length is 8192 tokens. However, your messages resulted in 9001."
    llm_server.enqueue_faults([Fault.http_status(400, too_long)])
    llm = LLMResource(api_key=TEST_API_KEY, base_url=llm_server.base_url, timeout_s=10.0)

    result, events = materialize(store, instance, tmp_path, llm)

    assert result.success
    assert len(events) == TRACES  # the refused trace too
    requests = llm_server.chat_requests()
    # Plus a retry after each refusal or cut-off answer of the fake's repertoire.
    assert len(requests) == TRACES + 1 + len(llm_server.unusable_answers())
    refused, *_ = requests
    retried = [
        r for r in requests[1:] if r.body["messages"][1]["content"] != refused.body["messages"][1]["content"]
    ]
    first_text = refused.body["messages"][1]["content"]
    assert any(len(r.body["messages"][1]["content"]) < len(first_text) for r in retried)
    assert sum(event.properties.text_repr_sampled for event in events) >= 1
