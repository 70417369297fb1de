"""The LLM summarizer against a real OpenAI-compatible HTTP llm_server, one fault at a time."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from typing import Any

import openai
import pytest

from trace_summaries.summarize import (
    PROMPT_VERSION,
    SUMMARY_MODES,
    FailureReason,
    LLMSummarizer,
    ModelPrice,
    SummaryMode,
    TraceSummaryResult,
    estimate_cost_usd,
    response_format,
)
from trace_summaries.summarize.heuristic import notable_lines
from trace_summaries.summarize.prompts import chat_messages, system_prompt
from trace_summaries.summarize.schema import ANSWER_LIMITS, SummarizationResponse, SummaryItem, bound_summary
from trace_summaries.summarize.steps import trace_name
from trace_summaries_harness.openai_server import (
    Fault,
    OpenAICompatibleServer,
    answer_for_prompt,
    openai_server,
)
from trace_summaries_tests.support.fixtures_llm import (
    TEST_API_KEY,
    checkout_events,
    checkout_text,
    fast_settings,
    rendered_checkout_text,
)


def summarize(summarizer: LLMSummarizer, mode: SummaryMode = "detailed") -> TraceSummaryResult:
    return asyncio.run(summarizer.summarize(checkout_text(), checkout_events(), mode))


def _last_content(server: OpenAICompatibleServer) -> str:
    """The content of the last answer: the fake's answer for the prompt in the shape it served."""
    request = server.chat_requests()[-1]
    assert request.shape is not None
    content = answer_for_prompt(request.message_text("user"), request.shape).content
    assert content is not None
    return content


def missing_refs_served(server: OpenAICompatibleServer) -> int:
    """Items the last answer gave without ``line_refs`` (the repertoire's ``missing_ref_key`` shape: one)."""
    return 1 if server.chat_requests()[-1].shape == "missing_ref_key" else 0


CANONICAL_REF = re.compile(r"L[1-9]\d*(?:-L[1-9]\d*)?")


@pytest.mark.parametrize("mode", SUMMARY_MODES)
def test_a_trace_is_summarized_with_strict_structured_output(
    llm_server: OpenAICompatibleServer, mode: SummaryMode
) -> None:
    result = summarize(LLMSummarizer(fast_settings(llm_server)), mode)

    assert result.status == "generated", result.error
    assert (result.provider, result.model, result.mode) == ("openai", "gpt-4.1-nano", mode)
    assert result.prompt_version == PROMPT_VERSION
    # One attempt, or two when the fake's answer to this prompt's first call is a refusal or cut off.
    assert result.attempts == len(llm_server.chat_requests()) == len(result.retry_waits_s) + 1 <= 2
    assert result.summary is not None and result.summary.summary_bullets
    assert result.request_id == f"req_test_{result.attempts - 1}"

    request = llm_server.chat_requests()[-1]
    body = request.body
    assert body["model"] == "gpt-4.1-nano"
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["strict"] is True
    assert body["response_format"]["json_schema"]["schema"]["additionalProperties"] is False
    assert request.message_text("system") == system_prompt(mode)
    assert checkout_text().text in request.message_text("user")
    assert "Order status assistant" in request.message_text("user")
    assert request.headers["authorization"] == f"Bearer {TEST_API_KEY}"


def test_the_request_is_the_one_the_sdk_create_call_sends(
    llm_server: OpenAICompatibleServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The summarizer posts a prebuilt body rather than calling ``chat.completions.create``, whose per-call
    walk of the arguments cost CPU; the endpoint must not be able to tell the difference, headers included.
    An admin key in the environment must not replace the API key."""
    monkeypatch.setenv("OPENAI_ADMIN_KEY", "sk-admin-not-for-completions")
    settings = fast_settings(llm_server)
    notable = notable_lines(checkout_text(), checkout_events())
    messages = chat_messages(
        checkout_text().text, trace_name(checkout_events()), "detailed", notable_lines=notable
    )

    async def summarizer_then_sdk() -> None:
        async with LLMSummarizer(settings) as summarizer:
            result = await summarizer.summarize(checkout_text(), checkout_events(), "detailed")
            assert result.status == "generated", result.error
        async with openai.AsyncOpenAI(
            api_key=settings.api_key, base_url=settings.base_url, timeout=settings.timeout_s, max_retries=0
        ) as client:
            await client.chat.completions.create(
                model=settings.model,
                messages=messages,  # type: ignore[arg-type]
                response_format=response_format(),  # type: ignore[arg-type]
                max_tokens=settings.max_output_tokens,
            )

    asyncio.run(summarizer_then_sdk())
    ours, *_, sdk = llm_server.chat_requests()  # *_: the retry of a refused or cut-off first answer, if any
    assert ours.path == sdk.path == "/v1/chat/completions"
    assert ours.body == sdk.body
    # A compatible endpoint (a base URL) gets the answer's cap as `max_tokens`, which every server reads.
    assert list(ours.body) == ["model", "messages", "response_format", "max_tokens"]
    assert ours.body["response_format"]["json_schema"]["strict"] is True
    assert ours.headers == sdk.headers
    assert ours.headers["authorization"] == f"Bearer {TEST_API_KEY}"


def test_line_refs_are_normalised_and_point_at_existing_lines(llm_server: OpenAICompatibleServer) -> None:
    result = summarize(LLMSummarizer(fast_settings(llm_server)))
    assert result.summary is not None
    text = checkout_text()
    refs = [item.line_refs for item in result.summary.summary_bullets + result.summary.interesting_notes]
    # The llm_server copies refs as written in the prompt ("L08", "L08-10", "L08; L19"); the summary holds
    # them canonical ("L8", "L8-L10", "L8, L19"). An item may cite nothing (""), not all of them.
    cited = [one for ref in refs if ref for one in ref.split(", ")]
    assert cited and all(CANONICAL_REF.fullmatch(one) for one in cited), refs
    assert all(text.has_line(int(end)) for one in cited for end in one[1:].split("-L"))
    assert result.line_refs_invalid == missing_refs_served(llm_server)


def test_token_usage_and_estimated_cost_are_recorded(llm_server: OpenAICompatibleServer) -> None:
    result = summarize(LLMSummarizer(fast_settings(llm_server)))
    assert result.input_tokens > 0 and result.output_tokens > 0
    assert result.cost_usd == pytest.approx(
        estimate_cost_usd("gpt-4.1-nano", result.input_tokens, result.output_tokens)
    )
    assert result.cost_usd == pytest.approx((result.input_tokens * 0.10 + result.output_tokens * 0.40) / 1e6)

    overridden = summarize(
        LLMSummarizer(fast_settings(llm_server, prices={"gpt-4.1-nano": ModelPrice(1_000_000.0, 0.0)}))
    )
    assert overridden.cost_usd == pytest.approx(overridden.input_tokens)

    unknown = summarize(LLMSummarizer(fast_settings(llm_server, model="my-local-llama")))
    assert unknown.status == "generated" and unknown.cost_usd is None
    assert llm_server.chat_requests()[-1].body["model"] == "my-local-llama"


def test_a_429_is_retried_after_the_retry_after_delay(llm_server: OpenAICompatibleServer) -> None:
    llm_server.enqueue_faults([Fault.rate_limit(retry_after="0.3")])
    result = summarize(LLMSummarizer(fast_settings(llm_server)))

    assert result.status == "generated"
    assert result.attempts == 2
    assert result.retry_waits_s[0] >= 0.3
    first, second = llm_server.chat_requests()
    assert (first.status, first.fault, second.status) == (429, "rate_limit", 200)
    assert first.answered_at is not None
    # Measured on the llm_server: the retry arrived no sooner than Retry-After allowed.
    assert second.arrived_at - first.answered_at >= 0.3 - 0.01


def test_a_long_retry_after_is_capped(llm_server: OpenAICompatibleServer) -> None:
    llm_server.enqueue_faults([Fault.rate_limit(retry_after="30")])
    result = summarize(LLMSummarizer(fast_settings(llm_server, retry_after_max_s=0.05)))
    assert result.status == "generated"
    assert 0.05 <= result.retry_waits_s[0] < 1


def test_rate_limits_that_never_end_fail_the_trace_after_max_attempts(
    llm_server: OpenAICompatibleServer,
) -> None:
    llm_server.enqueue_faults([Fault.rate_limit(retry_after=None)] * 3)
    result = summarize(LLMSummarizer(fast_settings(llm_server, max_attempts=3)))
    assert (result.status, result.reason, result.attempts) == ("failed", "rate_limited", 3)
    assert len(llm_server.chat_requests()) == 3
    assert result.summary is None and result.error and "429" in result.error


def test_backoff_grows_exponentially_with_jitter(llm_server: OpenAICompatibleServer) -> None:
    llm_server.enqueue_faults([Fault.server_error()] * 3)
    result = summarize(LLMSummarizer(fast_settings(llm_server, backoff_base_s=0.02, backoff_max_s=1.0)))
    assert result.status == "generated" and result.attempts == 4
    for attempt, wait in enumerate(result.retry_waits_s, start=1):
        step = 0.02 * 2 ** (attempt - 1)
        assert step / 2 <= wait <= step


def test_a_server_error_is_retried(llm_server: OpenAICompatibleServer) -> None:
    llm_server.enqueue_faults([Fault.server_error(500), Fault.server_error(503)])
    result = summarize(LLMSummarizer(fast_settings(llm_server)))
    assert (result.status, result.attempts) == ("generated", 3)
    assert [request.status for request in llm_server.chat_requests()] == [500, 503, 200]


def test_persistent_server_errors_fail_with_server_error(llm_server: OpenAICompatibleServer) -> None:
    llm_server.enqueue_faults([Fault.server_error()] * 4)
    result = summarize(LLMSummarizer(fast_settings(llm_server)))
    assert (result.status, result.reason, result.attempts) == ("failed", "server_error", 4)


def test_a_response_slower_than_the_timeout_is_abandoned_and_retried(
    llm_server: OpenAICompatibleServer,
) -> None:
    llm_server.enqueue_faults([Fault.slow(10.0)])
    # A deadline generous enough for a healthy answer on a loaded 2-core CI machine (new connection
    # included), and far below the slow answer's 10 s.
    result = summarize(LLMSummarizer(fast_settings(llm_server, timeout_s=2.0)))
    assert (result.status, result.attempts) == ("generated", 2)
    assert 2.0 <= result.latency_s < 8


def test_a_trace_that_always_times_out_fails_with_timeout(llm_server: OpenAICompatibleServer) -> None:
    llm_server.enqueue_faults([Fault.slow(10.0)] * 2)
    result = summarize(LLMSummarizer(fast_settings(llm_server, timeout_s=0.2, max_attempts=2)))
    assert (result.status, result.reason, result.attempts) == ("failed", "timeout", 2)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault.invalid_json(), "invalid_json"),
        (Fault.schema_violation(), "schema_violation"),
        (Fault.empty_content(), "empty_content"),
        (Fault.refusal(), "refused"),
        (Fault.cut_off(), "invalid_json"),
    ],
)
def test_an_unusable_answer_is_retried_once(
    llm_server: OpenAICompatibleServer, fault: Fault, reason: str
) -> None:
    llm_server.enqueue_faults([fault])
    recovered = summarize(LLMSummarizer(fast_settings(llm_server)))
    assert (recovered.status, recovered.attempts) == ("generated", 2)

    llm_server.enqueue_faults([fault] * 3)
    failed = summarize(LLMSummarizer(fast_settings(llm_server)))
    # Once, not up to max_attempts: a model that answered badly twice will likely do it again.
    assert (failed.status, failed.reason, failed.attempts) == ("failed", reason, 2)
    assert failed.error is not None and reason in failed.error


def test_a_refusal_and_a_cut_off_answer_say_what_happened(llm_server: OpenAICompatibleServer) -> None:
    llm_server.enqueue_faults([Fault.refusal("I can't help with that.")] * 2)
    refused = summarize(LLMSummarizer(fast_settings(llm_server)))
    assert (refused.reason, refused.error) == ("refused", "the model refused: I can't help with that.")

    llm_server.enqueue_faults([Fault.cut_off()] * 2)
    cut_off = summarize(LLMSummarizer(fast_settings(llm_server, max_output_tokens=300)))
    assert cut_off.reason == "invalid_json" and cut_off.error is not None
    assert cut_off.error.startswith("the answer was cut off at the output cap (finish_reason 'length')")
    # The cut-off answers spent their whole cap, and were paid for.
    assert cut_off.output_tokens == 2 * 300


def test_unusable_answers_can_be_made_final(llm_server: OpenAICompatibleServer) -> None:
    llm_server.enqueue_faults([Fault.invalid_json()])
    result = summarize(LLMSummarizer(fast_settings(llm_server, content_retries=0)))
    assert (result.status, result.reason, result.attempts) == ("failed", "invalid_json", 1)


def test_tokens_of_a_retried_bad_answer_are_counted(llm_server: OpenAICompatibleServer) -> None:
    # The bad answer first: the prompt's later calls all get the same answer from the fake, so the retry
    # and the clean call below are paid alike.
    llm_server.enqueue_faults([Fault.invalid_json()])
    retried = summarize(LLMSummarizer(fast_settings(llm_server)))
    clean = summarize(LLMSummarizer(fast_settings(llm_server)))
    assert (retried.attempts, clean.attempts) == (2, 1)
    assert retried.input_tokens == 2 * clean.input_tokens
    assert retried.output_tokens > clean.output_tokens


def test_refs_to_missing_lines_are_dropped_and_counted(llm_server: OpenAICompatibleServer) -> None:
    llm_server.enqueue_faults([Fault.missing_line_refs()])
    result = summarize(LLMSummarizer(fast_settings(llm_server)))
    assert result.status == "generated"
    assert result.line_refs_invalid == 2
    assert result.summary is not None
    assert [item.line_refs for item in result.summary.summary_bullets] == ["L1", ""]
    assert result.summary.interesting_notes[0].line_refs == ""


@pytest.mark.parametrize("absent", [{}, {"line_refs": None}])
def test_an_item_without_line_refs_keeps_its_text_and_counts_as_a_dropped_reference(
    llm_server: OpenAICompatibleServer, absent: dict[str, Any]
) -> None:
    """A server that ignores the schema may leave ``line_refs`` out: one item's citation, not the summary."""
    content = {
        "title": "t",
        "flow_diagram": "a",
        "summary_bullets": [{"text": "cited", "line_refs": "L08"}, {"text": "uncited", **absent}],
        "interesting_notes": [{"text": "also uncited", **absent}],
    }
    llm_server.enqueue_faults([Fault.with_content(json.dumps(content))])
    result = summarize(LLMSummarizer(fast_settings(llm_server)))
    assert (result.status, result.attempts) == ("generated", 1)
    assert result.summary is not None
    items = result.summary.summary_bullets + result.summary.interesting_notes
    assert [(item.text, item.line_refs) for item in items] == [
        ("cited", "L8"),
        ("uncited", ""),
        ("also uncited", ""),
    ]
    assert result.line_refs_invalid == 2


@pytest.mark.parametrize(("fault", "separator"), [(Fault.ranged_refs(), "-"), (Fault.listed_refs(), ", ")])
def test_ranges_and_lists_of_real_lines_are_valid_citations(
    llm_server: OpenAICompatibleServer, fault: Fault, separator: str
) -> None:
    llm_server.enqueue_faults([fault])
    result = summarize(LLMSummarizer(fast_settings(llm_server)))
    assert result.summary is not None and result.line_refs_invalid == 0
    refs = [item.line_refs for item in result.summary.summary_bullets + result.summary.interesting_notes]
    assert refs and all(separator in ref and CANONICAL_REF.fullmatch(ref.split(", ")[0]) for ref in refs)


def test_an_oversized_answer_is_cut_to_the_answer_limits_with_warnings(
    llm_server: OpenAICompatibleServer,
) -> None:
    llm_server.enqueue_faults([Fault.oversized()])
    result = summarize(LLMSummarizer(fast_settings(llm_server)))
    assert (result.status, result.attempts) == ("generated", 1)
    summary = result.summary
    assert summary is not None
    # Cut strings end with "…" (after any trailing space is dropped), within the limit.
    assert len(summary.title) <= ANSWER_LIMITS["title"] and summary.title.endswith("…")
    assert len(summary.flow_diagram) <= ANSWER_LIMITS["flow_diagram"] and summary.flow_diagram.endswith("…")
    assert len(summary.summary_bullets) == ANSWER_LIMITS["summary_bullets"]
    assert len(summary.interesting_notes) == ANSWER_LIMITS["interesting_notes"]
    texts = [item.text for item in summary.summary_bullets + summary.interesting_notes]
    assert all(len(text) <= ANSWER_LIMITS["text"] and text.endswith("…") for text in texts)
    assert result.warnings == (
        f"title cut from {len(json.loads(_last_content(llm_server))['title'])} to {ANSWER_LIMITS['title']} "
        "characters",
        f"flow_diagram cut from {len(json.loads(_last_content(llm_server))['flow_diagram'])} to "
        f"{ANSWER_LIMITS['flow_diagram']} characters",
        f"summary_bullets cut from 16 to {ANSWER_LIMITS['summary_bullets']} items",
        f"interesting_notes cut from 8 to {ANSWER_LIMITS['interesting_notes']} items",
        f"15 item texts cut to {ANSWER_LIMITS['text']} characters",
    )
    # References of the items kept are checked as usual; those of the items cut away are not counted.
    assert result.line_refs_invalid == 0


def test_references_of_items_cut_away_are_not_counted(llm_server: OpenAICompatibleServer) -> None:
    bullets = [{"text": f"fact {n}", "line_refs": "L8"} for n in range(10)]
    bullets += [{"text": "no reference"}, {"text": "a missing line", "line_refs": "L999"}]
    content = {"title": "t", "flow_diagram": "a", "summary_bullets": bullets, "interesting_notes": []}
    llm_server.enqueue_faults([Fault.with_content(json.dumps(content))])
    result = summarize(LLMSummarizer(fast_settings(llm_server)))
    assert result.summary is not None and len(result.summary.summary_bullets) == 10
    assert (result.line_refs_invalid, result.warnings) == (0, ("summary_bullets cut from 12 to 10 items",))


def test_an_answer_within_the_limits_is_kept_as_it_is() -> None:
    summary = SummarizationResponse(
        title="t" * ANSWER_LIMITS["title"],
        flow_diagram="f",
        summary_bullets=[SummaryItem(text="x" * ANSWER_LIMITS["text"], line_refs="L1")] * 10,
        interesting_notes=[],
    )
    assert bound_summary(summary) == (summary, [])


def test_hand_written_refs_are_normalised(llm_server: OpenAICompatibleServer) -> None:
    content = {
        "title": "t",
        "flow_diagram": "a",
        "summary_bullets": [
            {"text": "range", "line_refs": "L08-14"},
            {"text": "padded", "line_refs": "L021"},
        ],
        "interesting_notes": [{"text": "none", "line_refs": ""}],
    }
    llm_server.enqueue_faults([Fault.with_content(json.dumps(content))])
    result = summarize(LLMSummarizer(fast_settings(llm_server)))
    assert result.summary is not None
    assert [item.line_refs for item in result.summary.summary_bullets] == ["L8-L14", "L21"]
    assert result.line_refs_invalid == 0


def test_a_wrong_api_key_fails_at_once_with_authentication(llm_server: OpenAICompatibleServer) -> None:
    result = summarize(LLMSummarizer(fast_settings(llm_server, api_key="sk-wrong")))
    assert (result.status, result.reason, result.attempts) == ("failed", "authentication", 1)
    assert result.error is not None and "401" in result.error
    assert len(llm_server.chat_requests()) == 1


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault.unauthorized(), "authentication"),
        (Fault.http_status(400, "Invalid value for 'temperature'"), "bad_request"),
        # Not retried as it is: the partition renders the trace smaller and tries once more.
        (Fault.http_status(400, "context_length_exceeded"), "context_exceeded"),
        (Fault.http_status(403), "permission_denied"),
        (Fault.http_status(404, "The model does not exist"), "not_found"),
        (Fault.http_status(422), "bad_request"),
    ],
)
def test_client_errors_other_than_429_are_not_retried(
    llm_server: OpenAICompatibleServer, fault: Fault, reason: FailureReason
) -> None:
    llm_server.enqueue_faults([fault, fault])
    result = summarize(LLMSummarizer(fast_settings(llm_server)))
    assert (result.status, result.reason, result.attempts) == ("failed", reason, 1)
    assert len(llm_server.chat_requests()) == 1


def test_an_unreachable_endpoint_fails_with_connection_after_retries() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = fast_settings(base_url=f"http://127.0.0.1:{port}/v1", max_attempts=2)
    result = summarize(LLMSummarizer(settings))
    assert (result.status, result.reason, result.attempts) == ("failed", "connection", 2)


def test_one_summarizer_serves_several_event_loops(llm_server: OpenAICompatibleServer) -> None:
    """A Dagster asset runs one ``asyncio.run`` per partition with the same resource."""
    summarizer = LLMSummarizer(fast_settings(llm_server))
    assert summarize(summarizer).status == "generated"
    assert summarize(summarizer).status == "generated"


def test_a_base_url_alone_is_enough_for_a_local_endpoint() -> None:
    with openai_server() as keyless:
        result = summarize(LLMSummarizer(fast_settings(keyless, api_key=None)))
        assert result.status == "generated"
        assert keyless.chat_requests()[0].headers["authorization"].startswith("Bearer ")


@pytest.mark.parametrize("options", [{"nest": True, "dedupe": True}, {"max_length": 1500}])
def test_a_real_rendering_is_sent_whole_and_cited_correctly(
    llm_server: OpenAICompatibleServer, options: dict[str, Any]
) -> None:
    text = rendered_checkout_text(**options)
    result = asyncio.run(
        LLMSummarizer(fast_settings(llm_server)).summarize(text, checkout_events(), "minimal")
    )
    assert result.status == "generated" and result.line_refs_invalid == missing_refs_served(llm_server)
    assert text.text in llm_server.chat_requests()[0].message_text("user")
