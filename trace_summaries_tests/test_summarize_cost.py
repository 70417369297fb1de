"""Cheaper per trace on OpenAI: the flex tier with its fall-back, reasoning effort, and prompt-cache pricing,
through the real SDK against the OpenAI-compatible test server."""

from __future__ import annotations

import asyncio

import pytest
from openai.types.chat import ChatCompletion

from trace_summaries.summarize import LLMSummarizer, TraceSummaryResult
from trace_summaries.summarize.llm import _parse_completion
from trace_summaries.summarize.pricing import FLEX_PRICE_FACTOR, estimate_cost_usd
from trace_summaries_harness.openai_server import Fault, OpenAICompatibleServer
from trace_summaries_tests.support.fixtures_llm import checkout_events, checkout_text, fast_settings


def summarize(summarizer: LLMSummarizer) -> TraceSummaryResult:
    async def run() -> TraceSummaryResult:
        async with summarizer:
            return await summarizer.summarize(checkout_text(), checkout_events(), "detailed")

    return asyncio.run(run())


@pytest.mark.parametrize("fault", [Fault.rate_limit(retry_after="30"), Fault.server_error(503)])
def test_a_refused_flex_call_is_retried_at_once_on_the_standard_tier(
    llm_server: OpenAICompatibleServer, fault: Fault
) -> None:
    llm_server.enqueue_faults([fault])

    result = summarize(LLMSummarizer(fast_settings(llm_server, service_tier="flex")))

    assert result.generated and result.attempts == 2
    assert result.retry_waits_s == ()  # no backoff, no Retry-After wait: a different tier answers
    first, second = (request.body for request in llm_server.chat_requests())
    assert first["service_tier"] == "flex" and "service_tier" not in second


def test_flex_is_kept_while_it_answers_and_reasoning_effort_is_sent_when_set(
    llm_server: OpenAICompatibleServer,
) -> None:
    settings = fast_settings(llm_server, service_tier="flex", reasoning_effort="low")
    assert summarize(LLMSummarizer(settings)).generated
    assert summarize(LLMSummarizer(fast_settings(llm_server))).generated

    flex, *_, standard = (request.body for request in llm_server.chat_requests())  # *_: a retried refusal
    assert (flex["service_tier"], flex["reasoning_effort"]) == ("flex", "low")
    assert "service_tier" not in standard and "reasoning_effort" not in standard


def test_cached_input_and_the_flex_tier_are_priced_at_their_own_rates() -> None:
    standard = estimate_cost_usd("gpt-4.1-nano", 1_000_000, 0)
    cached = estimate_cost_usd("gpt-4.1-nano", 1_000_000, 0, cached_input_tokens=1_000_000)
    flex = estimate_cost_usd("gpt-4.1-nano", 1_000_000, 1_000_000, flex=True)
    assert standard == pytest.approx(0.10) and cached == pytest.approx(0.025)
    assert flex == pytest.approx((0.10 + 0.40) * FLEX_PRICE_FACTOR)
    assert estimate_cost_usd("a-self-hosted-model", 1000, 1000) is None


def test_cached_tokens_and_the_serving_tier_are_read_from_the_usage() -> None:
    completion = ChatCompletion.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-4.1-nano",
            "service_tier": "flex",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": '{"title": "x"}'},
                }
            ],
            "usage": {
                "prompt_tokens": 2000,
                "completion_tokens": 300,
                "total_tokens": 2300,
                "prompt_tokens_details": {"cached_tokens": 1536},
            },
        }
    )
    attempt = _parse_completion(completion, "req-1")
    assert (attempt.input_tokens, attempt.cached_input_tokens, attempt.service_tier) == (2000, 1536, "flex")
