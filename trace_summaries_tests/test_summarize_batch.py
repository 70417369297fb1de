"""Many traces at once: bounded concurrency, isolation of failures, progress, systemic failure detection."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from trace_summaries.summarize import (
    HeuristicSummarizer,
    LLMSummarizer,
    Provider,
    SummaryMode,
    TraceSummaryResult,
    summarize_prepared,
    systemic_failure_reason,
)
from trace_summaries.text_repr import TraceText
from trace_summaries_harness.one_partition import summarize_many
from trace_summaries_harness.openai_server import Fault, OpenAICompatibleServer
from trace_summaries_tests.support.fixtures_llm import (
    checkout_events,
    checkout_text,
    fast_settings,
    numbered_text,
)


def items(count: int) -> list[tuple[str, TraceText, list[dict[str, Any]]]]:
    """Traces whose text carries their key, so the llm_server can be told to fail one of them."""
    return [
        (
            f"trace-{i}",
            numbered_text([(f"TRACE-{i}", None, "header"), ("└─ [+] [GEN] chat", "g", "tree")]),
            [],
        )
        for i in range(count)
    ]


def test_no_more_than_batch_size_calls_are_in_flight(llm_server: OpenAICompatibleServer) -> None:
    llm_server.latency_s = 0.1
    results = asyncio.run(
        summarize_many(LLMSummarizer(fast_settings(llm_server)), items(12), "minimal", batch_size=3)
    )
    assert all(result.generated for result in results.values())
    assert llm_server.max_in_flight == 3
    # One call a trace, and a retry after each refusal or cut-off answer of the fake's repertoire.
    assert len(llm_server.chat_requests()) == 12 + len(llm_server.unusable_answers())


def test_traces_are_prepared_only_when_a_slot_frees_up(llm_server: OpenAICompatibleServer) -> None:
    # Rendering up front would delay the first call; each trace is prepared just before its own call.
    llm_server.latency_s = 0.05
    texts = {key: (text, events) for key, text, events in items(9)}
    prepared: list[str] = []
    done = [0]
    done_when_prepared: list[int] = []

    def prepare(key: str) -> tuple[TraceText, list[dict[str, Any]]]:
        prepared.append(key)
        done_when_prepared.append(done[0])
        return texts[key]

    def progress(finished: int, _total: int, _failed: int) -> None:
        done[0] = finished

    summarizer = LLMSummarizer(fast_settings(llm_server))
    results = asyncio.run(
        summarize_prepared(summarizer, list(texts), prepare, "minimal", batch_size=3, on_progress=progress)
    )

    assert list(results) == list(texts) and all(result.generated for result in results.values())
    assert prepared == list(texts)  # each once, in order
    # Three slots: the first three are prepared at once, the k-th only after k - 2 summaries finished.
    assert done_when_prepared[:3] == [0, 0, 0]
    assert all(done_when_prepared[k] >= k - 2 for k in range(3, len(texts)))
    assert llm_server.max_in_flight == 3


def test_one_failing_trace_does_not_affect_the_others(llm_server: OpenAICompatibleServer) -> None:
    llm_server.add_fault_rule("TRACE-4", [Fault.invalid_json()], repeat=True)
    progress: list[tuple[int, int, int]] = []
    results = asyncio.run(
        summarize_many(
            LLMSummarizer(fast_settings(llm_server)),
            items(8),
            "detailed",
            batch_size=4,
            on_progress=lambda done, total, failed: progress.append((done, total, failed)),
        )
    )
    assert list(results) == [f"trace-{i}" for i in range(8)]
    assert results["trace-4"].reason == "invalid_json" and results["trace-4"].attempts == 2
    assert all(result.generated for key, result in results.items() if key != "trace-4")
    assert [done for done, _, _ in progress] == list(range(1, 9))
    assert progress[-1] == (8, 8, 1)


class _BrokenOnSecondTrace:
    """A summarizer with a bug that raises on one trace: the batch must carry on."""

    provider: Provider = "heuristic"
    model = "broken"

    async def summarize(
        self, trace_text: TraceText, events: Sequence[Any], mode: SummaryMode
    ) -> TraceSummaryResult:
        if "TRACE-1" in trace_text.text:
            raise KeyError("boom")
        return await HeuristicSummarizer().summarize(trace_text, events, mode)

    async def aclose(self) -> None:
        pass


def test_a_summarizer_that_raises_fails_only_its_trace() -> None:
    results = asyncio.run(summarize_many(_BrokenOnSecondTrace(), items(3), "minimal"))
    assert results["trace-1"].reason == "internal_error"
    assert results["trace-1"].error == "KeyError: 'boom'"
    assert results["trace-0"].generated and results["trace-2"].generated


def test_a_wrong_key_is_reported_as_a_systemic_failure(llm_server: OpenAICompatibleServer) -> None:
    results = asyncio.run(
        summarize_many(LLMSummarizer(fast_settings(llm_server, api_key="sk-wrong")), items(4), "minimal")
    )
    assert {result.reason for result in results.values()} == {"authentication"}
    assert systemic_failure_reason(results.values()) == "authentication"


def test_per_trace_failures_are_not_systemic(llm_server: OpenAICompatibleServer) -> None:
    llm_server.add_fault_rule("TRACE", [Fault.invalid_json()], repeat=True)
    results = asyncio.run(summarize_many(LLMSummarizer(fast_settings(llm_server)), items(3), "minimal"))
    assert {result.reason for result in results.values()} == {"invalid_json"}
    assert systemic_failure_reason(results.values()) is None


def test_mixed_outcomes_and_no_traces_are_not_systemic(llm_server: OpenAICompatibleServer) -> None:
    llm_server.add_fault_rule("TRACE-0", [Fault.unauthorized()], repeat=True)
    results = asyncio.run(summarize_many(LLMSummarizer(fast_settings(llm_server)), items(2), "minimal"))
    assert results["trace-0"].reason == "authentication" and results["trace-1"].generated
    assert systemic_failure_reason(results.values()) is None
    assert systemic_failure_reason([]) is None


def test_the_heuristic_summarizer_runs_a_batch_offline() -> None:
    results = asyncio.run(
        summarize_many(HeuristicSummarizer(), [("t", checkout_text(), checkout_events())], "detailed")
    )
    assert results["t"].generated and results["t"].provider == "heuristic"


def test_batch_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        asyncio.run(summarize_many(HeuristicSummarizer(), items(1), "minimal", batch_size=0))
