"""Every bullet verified (``verify: true``): the lexical check, the LLM check on the fake server and on a real
small model, and the verdicts and their cost on the summary events."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from trace_summaries.defs.partition_sets import TEAMS
from trace_summaries.defs.resources import LLMResource
from trace_summaries.demo import seed_store
from trace_summaries.store import TraceStore
from trace_summaries.summarize import HeuristicSummarizer, LLMSummarizer, estimate_cost_usd
from trace_summaries.summarize.partition import PartitionSummaries
from trace_summaries.summarize.schema import SummarizationResponse, SummaryItem
from trace_summaries.summarize.verify import (
    VERIFY_SCHEMA_NAME,
    LexicalVerifier,
    LLMVerifier,
    SummaryVerification,
    make_verifier,
    parse_verdicts,
    verify_lexically,
    verify_summary,
)
from trace_summaries.text_repr import TraceText
from trace_summaries.write.event import build_summary_event
from trace_summaries_harness.llama_server import running_llama_server
from trace_summaries_harness.openai_server import Fault, OpenAICompatibleServer
from trace_summaries_tests.support.fixtures_llm import fast_settings, numbered_text
from trace_summaries_tests.test_trace_summaries_asset import HOUR, TEAM, fake_llm, metadata, run

ROWS = [
    ("[user] What is the weather in Paris today?", "u1", "input"),
    ('[tool call] get_weather(city="Paris")', "t1", "output"),
    ("[tool result] 18°C, sunny", "t1", "output"),
    ("[assistant] It is 18°C and sunny in Paris today.", "a1", "output"),
    ("", None, "header"),
    ("", None, "header"),
    ("", None, "header"),
    ("", None, "header"),
    ("[tool call] book_flight(destination=Tokyo) failed: PaymentDeclined", "t2", "error"),
]


def weather_text() -> TraceText:
    return numbered_text(ROWS)


def item(text: str, refs: str) -> SummaryItem:
    return SummaryItem(text=text, line_refs=refs)


def summary(bullets: list[SummaryItem], notes: list[SummaryItem] | None = None) -> SummarizationResponse:
    return SummarizationResponse(
        title="Weather in Paris",
        flow_diagram="ask ↓ tool ✓",
        summary_bullets=bullets,
        interesting_notes=notes or [],
    )


SUPPORTED = item("The weather tool reported sunny weather in Paris", "L2-L3")
UNSUPPORTED = item("The booking of a hotel in Rome succeeded with a refund", "L1")
NO_LINE = item("The assistant was helpful", "")
SCRIPTED_VERDICTS = json.dumps(
    {
        "verdicts": [
            {"item": 1, "verdict": "supported"},
            {"item": 2, "verdict": "unsupported"},
            {"item": 3, "verdict": "unverifiable"},
        ]
    }
)


# --- The lexical check (offline) ------------------------------------------------------------------------


def test_lexical_check_supports_copied_words_rejects_others_and_cannot_judge_without_lines() -> None:
    text = weather_text()
    result = verify_lexically(
        text, summary([SUPPORTED, UNSUPPORTED, item("Sunny in Paris", "L99")], [NO_LINE])
    )
    assert result.method == "lexical"
    assert result.bullets == (True, False, None) and result.notes == (None,)
    assert (result.supported, result.unsupported, result.unverifiable) == (1, 1, 2)
    assert result.faithfulness == 0.5
    assert result.cost_usd == 0.0 and result.input_tokens == 0 and result.attempts == 0


def test_lexical_check_reads_two_lines_around_the_cited_one_and_no_further() -> None:
    text = weather_text()
    # L4 says sunny Paris; cited L2 reaches it (L2 + 2), cited L9 does not (L7 is the nearest line kept).
    near = verify_lexically(text, summary([item("Sunny weather in Paris", "L2")]))
    far = verify_lexically(text, summary([item("Sunny weather in Paris", "L9")]))
    assert near.bullets == (True,) and far.bullets == (False,)


def test_lexical_check_is_weak_it_cannot_read_negation() -> None:
    """Documented weakness: the words are there, the meaning is the opposite, and it still says supported."""
    text = weather_text()
    negated = verify_lexically(text, summary([item("The flight booking to Tokyo never failed", "L9")]))
    assert negated.bullets == (True,)


def test_without_an_endpoint_the_lexical_check_is_used() -> None:
    assert isinstance(make_verifier(HeuristicSummarizer()), LexicalVerifier)
    result = asyncio.run(verify_summary(weather_text(), summary([SUPPORTED])))
    assert result.method == "lexical" and result.bullets == (True,)


# --- The LLM check on the fake server -------------------------------------------------------------------


def test_one_call_gives_a_supported_an_unsupported_and_an_unverifiable_item_and_is_paid_for(
    llm_server: OpenAICompatibleServer,
) -> None:
    llm_server.add_fault_rule(VERIFY_SCHEMA_NAME, [Fault.with_content(SCRIPTED_VERDICTS)], repeat=True)
    summarizer = LLMSummarizer(fast_settings(llm_server, model="gpt-4.1-nano"))
    third = item("The answer was in French", "L4")
    result = asyncio.run(
        LLMVerifier(summarizer).verify(weather_text(), summary([SUPPORTED, UNSUPPORTED], [third, NO_LINE]))
    )

    assert result.method == "llm" and result.error is None and result.attempts == 1
    assert result.bullets == (True, False) and result.notes == (None, None)
    assert result.faithfulness == 0.5
    # The call is counted: its tokens, and its cost at the model's price.
    assert result.input_tokens > 0 and result.output_tokens > 0
    assert result.cost_usd == estimate_cost_usd("gpt-4.1-nano", result.input_tokens, result.output_tokens)
    assert result.cost_usd is not None and result.cost_usd > 0
    [call] = llm_server.chat_requests()
    assert call.body["temperature"] == 0
    schema = call.body["response_format"]["json_schema"]
    assert schema["name"] == VERIFY_SCHEMA_NAME and schema["strict"] is True
    # A self-hosted server (base_url) is held to exactly one verdict per item asked about.
    verdicts = schema["schema"]["properties"]["verdicts"]
    assert verdicts["minItems"] == verdicts["maxItems"] == 3
    assert verdicts["items"]["properties"]["item"]["enum"] == [1, 2, 3]
    # The item citing no line is not asked about; each asked item comes with its lines and two around them.
    prompt = call.message_text("user")
    assert "Item 3: The answer was in French" in prompt and "Item 4" not in prompt
    assert "The assistant was helpful" not in prompt
    assert "L1: [user] What is the weather" in prompt and "L9:" not in prompt


def test_an_unusable_answer_is_retried_once_and_both_calls_are_counted(
    llm_server: OpenAICompatibleServer,
) -> None:
    llm_server.add_fault_rule(
        VERIFY_SCHEMA_NAME, [Fault.invalid_json(), Fault.with_content(SCRIPTED_VERDICTS)]
    )
    verifier = LLMVerifier(LLMSummarizer(fast_settings(llm_server, model="gpt-4.1-nano")))
    checked = summary([SUPPORTED, UNSUPPORTED, item("Sunny", "L3")])
    result = asyncio.run(verifier.verify(weather_text(), checked))
    assert result.bullets == (True, False, None) and result.error is None
    assert result.attempts == 2 == len(llm_server.chat_requests())
    # Both calls are paid for: twice the prompt of a single call.
    llm_server.add_fault_rule(VERIFY_SCHEMA_NAME, [Fault.with_content(SCRIPTED_VERDICTS)])
    single = asyncio.run(verifier.verify(weather_text(), checked))
    assert single.attempts == 1 and result.input_tokens == 2 * single.input_tokens > 0
    assert result.output_tokens > single.output_tokens
    assert result.cost_usd is not None and single.cost_usd is not None and result.cost_usd > single.cost_usd


def test_an_answer_unusable_twice_leaves_the_items_unverifiable_without_failing(
    llm_server: OpenAICompatibleServer,
) -> None:
    llm_server.add_fault_rule(VERIFY_SCHEMA_NAME, [Fault.refusal()], repeat=True)
    result = asyncio.run(
        LLMVerifier(LLMSummarizer(fast_settings(llm_server))).verify(weather_text(), summary([SUPPORTED]))
    )
    assert result.bullets == (None,) and result.faithfulness is None
    assert result.attempts == 2 and result.error is not None and "refused" in result.error


def test_a_summary_citing_nothing_costs_no_call(llm_server: OpenAICompatibleServer) -> None:
    result = asyncio.run(
        LLMVerifier(LLMSummarizer(fast_settings(llm_server))).verify(weather_text(), summary([NO_LINE]))
    )
    assert result.bullets == (None,) and result.attempts == 0 and result.cost_usd == 0.0
    assert llm_server.chat_requests() == []


def test_verdicts_are_read_leniently_but_an_answer_without_any_is_rejected() -> None:
    answer = (
        '```json\n{"verdicts": [{"item": 2, "verdict": "Supported"}, {"item": 2, "verdict": "unsupported"},'
    )
    answer += ' {"item": 7, "verdict": "supported"}, {"item": true, "verdict": "supported"}]}\n```'
    assert parse_verdicts(answer, 3) == [None, True, None]
    # One verdict per item, numbered from the text (SmolLM2 wrote 18 for each): read in order.
    numbered_wrong = [{"item": 18, "verdict": v} for v in ("supported", "unsupported", "unverifiable")]
    assert parse_verdicts(json.dumps({"verdicts": numbered_wrong}), 3) == [True, False, None]
    for bad in ("not json", '{"verdicts": "none"}', '{"verdicts": [{"item": 9, "verdict": "supported"}]}'):
        with pytest.raises(ValueError):
            parse_verdicts(bad, 3)


# --- On the events -------------------------------------------------------------------------------------


def test_without_verification_the_event_has_no_verification_keys() -> None:
    properties: dict[str, Any] = {
        "mode": "minimal",
        "title": "t",
        "flow_diagram": "f",
        "bullets": [SUPPORTED.model_dump()],
        "interesting_notes": [],
        "text_repr_length": 1,
        "event_count": 1,
        "model": "m",
        "provider": "heuristic",
        "prompt_version": "v",
        "input_tokens": 0,
        "output_tokens": 0,
        "cost_usd": None,
    }
    now = datetime(2025, 1, 15, 12, tzinfo=UTC)
    plain = build_summary_event(
        team_id=1,
        window_start=now,
        window_end=now,
        trace_id="t",
        trace_first_timestamp=now,
        properties=properties,
    )
    data = json.loads(plain.properties_json())
    assert "supported" not in data["$ai_summary_bullets"][0]
    assert not [key for key in data if "faithfulness" in key or "verification" in key]
    verified = build_summary_event(
        team_id=1,
        window_start=now,
        window_end=now,
        trace_id="t",
        trace_first_timestamp=now,
        properties=properties
        | {"bullets": [SUPPORTED.model_dump() | {"supported": None}], "faithfulness": None},
    )
    data = json.loads(verified.properties_json())
    assert data["$ai_summary_bullets"][0]["supported"] is None and data["$ai_summary_faithfulness"] is None
    # Read back from the table, the null verdict stays a verdict (null), not an unverified item.
    assert (
        json.loads(type(verified).from_row("u", 1, "d", now, verified.properties_json()).properties_json())
        == data
    )


SCRIPTED_SUMMARY = json.dumps(
    {
        "title": "Scripted summary",
        "flow_diagram": "start ↓ end ✓",
        "summary_bullets": [
            {"text": "First bullet", "line_refs": "L1"},
            {"text": "Second bullet", "line_refs": "L2"},
            {"text": "Third bullet", "line_refs": "L3"},
        ],
        "interesting_notes": [{"text": "A note citing nothing", "line_refs": ""}],
    }
)


@pytest.mark.parametrize("store", ["chdb"], indirect=True)
def test_verified_events_carry_the_flags_the_score_and_the_cost_of_the_extra_call(
    store: TraceStore,
    instance: dg.DagsterInstance,
    tmp_path: Path,
    llm_server: OpenAICompatibleServer,
) -> None:
    traces = 2
    seed_store(store, [TEAM], [HOUR], traces, progress=False, oversized_fraction=0.0)
    instance.add_dynamic_partitions(TEAMS.name, [str(TEAM)])
    llm_server.add_fault_rule("summarization_response", [Fault.with_content(SCRIPTED_SUMMARY)], repeat=True)
    llm_server.add_fault_rule(VERIFY_SCHEMA_NAME, [Fault.with_content(SCRIPTED_VERDICTS)], repeat=True)

    result = run(store, instance, tmp_path, fake_llm(llm_server), verify=True)

    assert result.success
    [partition] = result.output_for_node("trace_summaries").values()
    assert isinstance(partition, PartitionSummaries)
    assert len(partition.events) == traces
    verify_calls = [r for r in llm_server.chat_requests() if VERIFY_SCHEMA_NAME in json.dumps(r.body)]
    assert len(verify_calls) == traces  # one call per trace
    summary_cost = verification_cost = 0.0
    for event in partition.events:
        data = json.loads(event.properties_json())
        assert [bullet["supported"] for bullet in data["$ai_summary_bullets"]] == [True, False, None]
        assert [note["supported"] for note in data["$ai_summary_interesting_notes"]] == [None]
        assert data["$ai_summary_faithfulness"] == 0.5
        assert data["$ai_summary_verification_method"] == "llm"
        assert data["$ai_summary_verification_input_tokens"] > 0
        assert data["$ai_summary_verification_output_tokens"] > 0
        assert data["$ai_summary_verification_cost_usd"] == estimate_cost_usd(
            event.properties.model,
            data["$ai_summary_verification_input_tokens"],
            data["$ai_summary_verification_output_tokens"],
        )
        summary_cost += data["$ai_summary_cost_usd"]
        verification_cost += data["$ai_summary_verification_cost_usd"]
    meta = metadata(result)
    assert meta["faithfulness"] == 0.5
    assert (meta["items_supported"], meta["items_unsupported"], meta["items_unverifiable"]) == (2, 2, 4)
    assert meta["verified_traces"] == traces
    assert (
        meta["verification_cost_usd"] == pytest.approx(verification_cost, abs=1e-6) and verification_cost > 0
    )
    # The step's cost is what it spent: the summaries and their verification.
    assert meta["cost_usd"] == pytest.approx(summary_cost + verification_cost, abs=1e-6)
    assert meta["input_tokens"] > meta["verification_input_tokens"] > 0


# --- A real small model ----------------------------------------------------------------------------------


def test_a_real_small_model_gives_a_valid_verdict_per_item(tmp_path: Path) -> None:
    """Not whether SmolLM2 is right, only that verification completes with a verdict per item."""
    text = numbered_text(ROWS[:4])
    checked = summary([SUPPORTED, UNSUPPORTED], [item("It is 18°C in Paris", "L4")])
    with running_llama_server("smollm2", log_path=tmp_path / "llama-server.log") as server:
        llm = LLMResource(base_url=server.base_url, model=server.model)
        summarizer = llm.summarizer(model=None, max_attempts=None)
        assert isinstance(summarizer, LLMSummarizer)
        result = asyncio.run(_verify_and_close(LLMVerifier(summarizer), text, checked))
    print(f"SmolLM2 verdicts: {result.verdicts} faithfulness={result.faithfulness} error={result.error}")
    assert len(result.bullets) == 2 and len(result.notes) == 1
    assert all(verdict in (True, False, None) for verdict in result.verdicts)
    assert result.faithfulness is None or 0.0 <= result.faithfulness <= 1.0
    assert 1 <= result.attempts <= 2 and result.input_tokens > 0 and result.output_tokens > 0
    assert result.cost_usd is None or result.cost_usd >= 0


async def _verify_and_close(
    verifier: LLMVerifier, text: TraceText, checked: SummarizationResponse
) -> SummaryVerification:
    try:
        return await verifier.verify(text, checked)
    finally:
        await verifier.summarizer.aclose()
