"""Pacing LLM calls to the endpoint: the real SDK against the test server with a capacity or a rate limit.

The server serves ``capacity`` calls at once and queues the rest (a llama.cpp server with that many slots),
or answers 429 with ``Retry-After`` beyond a number of calls per sliding window. What is asserted is what the
server counted (calls served and queued at once, 429s sent) and what became of every trace; no timings.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from trace_summaries.summarize import LLMSettings, LLMSummarizer, TraceSummaryResult, summarize_prepared
from trace_summaries.summarize.pacing import CallPacer
from trace_summaries.text_repr import TraceText
from trace_summaries_harness.openai_server import OpenAICompatibleServer, openai_server
from trace_summaries_tests.support.fixtures_llm import TEST_API_KEY, fast_settings, numbered_text


@pytest.fixture
def server() -> Iterator[OpenAICompatibleServer]:
    # Clean answers: these tests count calls and failures (one attempt a trace), not what the answers say.
    with openai_server(require_api_key=TEST_API_KEY, repertoire="clean") as started:
        yield started


def traces(count: int) -> dict[str, tuple[TraceText, list[dict[str, Any]]]]:
    return {
        f"trace-{i}": (
            numbered_text([(f"TRACE-{i}", None, "header"), ("└─ [+] [GEN] chat", "g", "tree")]),
            [],
        )
        for i in range(count)
    }


def summarize(settings: LLMSettings, count: int, pacer: CallPacer) -> dict[str, TraceSummaryResult]:
    items = traces(count)

    async def run() -> dict[str, TraceSummaryResult]:
        async with LLMSummarizer(settings) as summarizer:
            return await summarize_prepared(
                summarizer, list(items), items.__getitem__, "minimal", batch_size=pacer.max_limit, pacer=pacer
            )

    return asyncio.run(run())


def failed(results: dict[str, TraceSummaryResult]) -> dict[str, str | None]:
    return {key: result.reason for key, result in results.items() if not result.generated}


# -- the test server's capacity and rate limit -----------------------------------------------------------


def test_the_server_serves_capacity_calls_at_once_and_queues_the_rest(
    server: OpenAICompatibleServer,
) -> None:
    server.capacity = 2
    server.latency_s = 0.05
    results = summarize(fast_settings(server), 8, CallPacer.fixed(4))

    assert not failed(results)
    assert server.max_serving == 2
    # Two served, the rest of the four queued (a fifth may arrive just before the server counts one done).
    assert server.max_queued >= 1 and server.max_in_flight >= 3
    chat = server.chat_requests()
    assert any(request.queued_s > 0 for request in chat)


def test_the_server_answers_429_with_retry_after_beyond_its_rate() -> None:
    body = {"model": "gpt-4.1-nano", "messages": [{"role": "user", "content": "L1: hello"}]}

    def post(url: str) -> tuple[int, dict[str, str], Any]:
        request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, dict(answer.headers), json.load(answer)
        except urllib.error.HTTPError as error:
            with error:
                return error.code, {k.lower(): v for k, v in error.headers.items()}, json.load(error)

    with openai_server(rpm_limit=2, rpm_window_s=60.0) as server:
        answers = [post(f"{server.base_url}/chat/completions") for _ in range(3)]

    assert [status for status, _, _ in answers] == [200, 200, 429]
    _, headers, payload = answers[2]
    assert 1 <= int(headers["retry-after"]) <= 60
    assert 0 < int(headers["retry-after-ms"]) <= 60_000
    assert payload["error"]["code"] == "rate_limit_exceeded"
    assert server.rate_limited == 1


# -- the pacer against them ------------------------------------------------------------------------------


def test_a_two_slot_endpoint_gets_about_two_calls_and_every_trace_without_a_timeout(
    server: OpenAICompatibleServer,
) -> None:
    """batch_size 8 against two slots: the fixed limit would queue six calls; the pacer keeps near two."""
    server.capacity = 2
    server.latency_s = 0.2
    pacer = CallPacer(8)
    results = summarize(fast_settings(server), 24, pacer)

    assert not failed(results)
    stats = pacer.stats()
    assert stats.timeouts == 0 and stats.decreases >= 1
    assert server.max_serving == 2
    # The first rounds double the limit (1, 2, 4) until latency says the endpoint queues; then it probes
    # one above what the endpoint took: never the eight a fixed limit would send.
    assert server.max_in_flight <= 6 and stats.max_reached <= 5


def test_an_endpoint_that_keeps_up_gets_batch_size_calls(server: OpenAICompatibleServer) -> None:
    server.latency_s = 0.05
    pacer = CallPacer(8)
    results = summarize(fast_settings(server), 60, pacer)

    assert not failed(results)
    assert pacer.stats().max_reached == 8 and pacer.stats().timeouts == 0
    assert server.max_in_flight_for("chat") <= 8


def test_a_rate_limited_endpoint_fails_no_trace(server: OpenAICompatibleServer) -> None:
    """10 calls per second, 30 traces at up to 8 calls: 429s with Retry-After pause the step, none fails."""
    server.limit_rate(10, window_s=1.0)
    pacer = CallPacer(8)
    results = summarize(fast_settings(server), 30, pacer)

    assert not failed(results)
    stats = pacer.stats()
    assert server.rate_limited > 0 and stats.rate_limited == server.rate_limited
    assert stats.absorbed == 0  # a 429 uses one of the trace's attempts: the retry budget stays as promised
    assert stats.limit < 8 or stats.decreases >= 1


def test_a_call_queued_past_its_timeout_does_not_use_up_the_trace_attempts(
    server: OpenAICompatibleServer,
) -> None:
    """One slot, 0.3 s per call, a 0.5 s client timeout and a single attempt per trace.

    A second call in flight waits 0.3 s in the server's queue and times out: the pacer takes the timeout as
    its own (the call shared the endpoint), lowers the limit to one, and the trace retries at no cost.
    """
    server.capacity = 1
    server.latency_s = 0.3
    # Two attempts: a queued call the client gave up on can also end as a dropped keep-alive connection
    # on the next call, which is a real failure and uses one.
    settings = fast_settings(server, timeout_s=0.5, max_attempts=2)
    pacer = CallPacer(4)
    results = summarize(settings, 8, pacer)

    assert not failed(results)
    stats = pacer.stats()
    # The endpoint pushed back (a queued call timed out, or its dropped connection failed the next call),
    # the limit came down, and every timeout was absorbed: none used one of the trace's attempts.
    assert stats.timeouts + stats.server_errors >= 1 and stats.decreases >= 1
    assert stats.absorbed == stats.timeouts
    assert any(result.attempts > 1 for result in results.values())
    assert server.max_serving == 1


def test_the_fixed_limit_of_before_fails_those_queued_calls(server: OpenAICompatibleServer) -> None:
    """The same endpoint with four calls in flight from the start: queued calls time out and fail."""
    server.capacity = 1
    server.latency_s = 0.3
    settings = fast_settings(server, timeout_s=0.5, max_attempts=1)
    results = summarize(settings, 4, CallPacer.fixed(4))

    # Queued past the timeout; a call on a connection the server dropped meanwhile fails as "connection".
    assert set(failed(results).values()) <= {"timeout", "connection"} and len(failed(results)) == 3


def test_pacing_figures_are_reported_as_metadata() -> None:
    pacer = CallPacer(5)
    assert pacer.limit == 1
    assert pacer.stats().metadata() == {
        "llm_concurrency_initial": 1,
        "llm_concurrency_final": 1,
        "llm_concurrency_max_reached": 1,
        "llm_concurrency_allowed": 5,
        "llm_concurrency_decreases": 0,
        "llm_calls": 0,
        "llm_timeouts": 0,
        "llm_rate_limited": 0,
        "llm_server_errors": 0,
        "llm_retries_absorbed": 0,
    }
    assert CallPacer.fixed(5).limit == 5
    with pytest.raises(ValueError, match="batch_size"):
        CallPacer(0)
