"""The offline summarizer: deterministic, labelled, and every reference lands on the line that shows it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from trace_summaries.summarize import (
    HEURISTIC_VERSION,
    MODE_RULES,
    SUMMARY_MODES,
    HeuristicSummarizer,
    LLMSettings,
    LLMSummarizer,
    SummaryMode,
    make_summarizer,
    select_provider,
    summarize_extractively,
)
from trace_summaries.text_repr import TraceText
from trace_summaries_tests.support.fixtures_llm import (
    ANSWER_UUID,
    FEEDBACK_UUID,
    LOOKUP_UUID,
    PLAN_UUID,
    checkout_events,
    checkout_rows,
    checkout_text,
    numbered_text,
    rendered_checkout_text,
)


def line_of(text: TraceText, ref: str) -> tuple[int, str]:
    """The number and content of the single line ``ref`` ("L14") points at."""
    assert ref.startswith("L") and "-" not in ref, ref
    number = int(ref[1:])
    assert text.has_line(number), ref
    width = len(str(text.total_lines))
    prefix = f"L{number:0{width}d}: "
    (content,) = [line[len(prefix) :] for line in text.text.splitlines() if line.startswith(prefix)]
    return number, content


def test_the_result_is_labelled_heuristic_and_free() -> None:
    result = asyncio.run(HeuristicSummarizer().summarize(checkout_text(), checkout_events(), "detailed"))
    assert (result.status, result.provider, result.prompt_version) == (
        "generated",
        "heuristic",
        HEURISTIC_VERSION,
    )
    assert (result.input_tokens, result.output_tokens, result.cost_usd) == (0, 0, 0.0)
    assert result.attempts == 1
    assert result.line_refs_invalid == 0


@pytest.mark.parametrize("mode", SUMMARY_MODES)
def test_the_same_trace_always_gives_the_same_summary(mode: SummaryMode) -> None:
    first = summarize_extractively(checkout_text(), checkout_events(), mode)
    again = summarize_extractively(checkout_text(), list(reversed(checkout_events())), mode)
    assert first == again


def test_the_title_is_the_trace_name_or_the_first_user_message() -> None:
    named = summarize_extractively(checkout_text(), checkout_events(), "minimal")
    assert named.title == "Order status assistant (failed)"
    unnamed = summarize_extractively(checkout_text(), checkout_events(named=False), "minimal")
    assert unnamed.title.startswith("Where is my order 1182?")
    assert len(unnamed.title.split()) <= 10


def test_bullets_cite_the_exact_line_of_what_they_state() -> None:
    text = checkout_text()
    summary = summarize_extractively(text, checkout_events(), "detailed")
    bullets = {item.text: item.line_refs for item in summary.summary_bullets}

    request = next(ref for bullet, ref in bullets.items() if bullet.startswith("User asks"))
    number, content = line_of(text, request)
    assert "Where is my order 1182?" in content
    assert text.line_map[number].event_uuid == PLAN_UUID and text.line_map[number].section == "input"

    tool = next(ref for bullet, ref in bullets.items() if "calls lookup_order" in bullet)
    number, content = line_of(text, tool)
    assert "lookup_order(" in content and text.line_map[number].section == "output"

    failure = next(ref for bullet, ref in bullets.items() if "failed" in bullet)
    number, content = line_of(text, failure)
    assert "OrderServiceTimeout" in content
    assert text.line_map[number].event_uuid == LOOKUP_UUID and text.line_map[number].section == "error"

    answer = next(ref for bullet, ref in bullets.items() if "final answer" in bullet)
    number, content = line_of(text, answer)
    assert "cannot reach the order service" in content and text.line_map[number].event_uuid == ANSWER_UUID


def test_notes_cover_errors_feedback_and_outliers_in_detailed_mode() -> None:
    text = checkout_text()
    notes = summarize_extractively(text, checkout_events(), "detailed").interesting_notes
    by_kind = {note.text.split(":")[0].split(" ")[0]: note for note in notes}
    assert set(by_kind) == {"Error", "Slowest", "Most", "User"}
    assert "lookup_order took 5.20s" in by_kind["Slowest"].text
    assert "answer (gpt-4.1-mini) cost $0.0005" in by_kind["Most"].text
    number, content = line_of(text, by_kind["User"].line_refs)
    assert text.line_map[number].event_uuid == FEEDBACK_UUID and "annoyed" in content
    number, _ = line_of(text, by_kind["Slowest"].line_refs)
    assert text.line_map[number].event_uuid == LOOKUP_UUID


def test_minimal_mode_keeps_only_critical_notes_and_fewer_bullets() -> None:
    summary = summarize_extractively(checkout_text(), checkout_events(), "minimal")
    rules = MODE_RULES["minimal"]
    assert len(summary.summary_bullets) <= rules.max_bullets
    assert [note.text.split(" ")[0] for note in summary.interesting_notes] == ["Error", "User"]


def test_the_flow_is_vertical_with_tool_branches_and_failure_marks() -> None:
    flow = summarize_extractively(checkout_text(), checkout_events(), "detailed").flow_diagram.splitlines()
    assert flow[0].startswith('User: "Where is my order')
    assert "plan (gpt-4.1-mini)" in flow
    assert "    └─→ tool: lookup_order" in flow
    assert "lookup_order ✗" in flow
    assert flow[-1] == "Failed ✗"
    assert all(line.strip() != "↓" or line == "    ↓" for line in flow)


def _long_trace(steps: int) -> tuple[TraceText, list[dict[str, Any]]]:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    events = [
        {
            "uuid": f"e{i}",
            "event": "$ai_span",
            "timestamp": start + timedelta(seconds=i),
            "properties": {"$ai_trace_id": "t", "$ai_span_name": f"step-{i}", "$ai_latency": 0.1},
        }
        for i in range(steps)
    ]
    rows = [("LONG TRACE", None, "header")] + [
        (f"├─ [+] [SPAN] step-{i} (0.10s)", f"e{i}", "tree") for i in range(steps)
    ]
    return numbered_text(rows), events


@pytest.mark.parametrize("mode", SUMMARY_MODES)
def test_long_traces_are_cut_to_the_size_of_the_mode(mode: SummaryMode) -> None:
    rules = MODE_RULES[mode]
    text, events = _long_trace(40)
    summary = summarize_extractively(text, events, mode)
    boxes = [line for line in summary.flow_diagram.splitlines() if not line.startswith("    ")]
    assert len(boxes) == rules.max_flow_steps
    assert any(box.startswith("… ") and "more steps" in box for box in boxes)
    assert boxes[-1] == "Done ✓"
    assert len(summary.summary_bullets) == rules.max_bullets


def test_repeated_steps_are_folded_in_the_flow() -> None:
    text, events = _long_trace(3)
    for event in events:
        event["properties"]["$ai_span_name"] = "retry"
    flow = summarize_extractively(text, events, "detailed").flow_diagram.splitlines()
    assert flow == ["retry ×3", "    ↓", "Done ✓"]


def test_steps_sampled_out_of_the_text_get_no_reference() -> None:
    rows = checkout_rows()
    kept = {n for n, (_, uuid, _) in enumerate(rows, start=1) if uuid != LOOKUP_UUID}
    text = numbered_text(rows, keep=kept)
    summary = summarize_extractively(text, checkout_events(), "detailed")
    failure = next(item for item in summary.summary_bullets if "failed" in item.text)
    assert failure.line_refs == ""
    assert all(
        text.has_line(int(item.line_refs[1:]))
        for item in summary.summary_bullets + summary.interesting_notes
        if item.line_refs
    )


def test_an_empty_trace_still_gets_a_summary() -> None:
    text = numbered_text([("TRACE", None, "header")])
    summary = summarize_extractively(text, [], "minimal")
    assert summary.title == "Trace with 0 steps"
    assert summary.flow_diagram == "Done ✓"
    assert summary.summary_bullets == [] and summary.interesting_notes == []


def test_the_provider_follows_the_configuration() -> None:
    assert select_provider(LLMSettings()) == "heuristic"
    assert isinstance(make_summarizer(LLMSettings()), HeuristicSummarizer)
    assert select_provider(LLMSettings(api_key="sk-x")) == "openai"
    assert isinstance(make_summarizer(LLMSettings(base_url="http://127.0.0.1:1/v1")), LLMSummarizer)


@pytest.mark.parametrize("options", [{}, {"nest": True, "dedupe": True}, {"max_length": 2500}])
def test_references_land_on_the_right_lines_of_the_real_rendering(options: dict[str, Any]) -> None:
    text = rendered_checkout_text(**options)
    result = asyncio.run(HeuristicSummarizer().summarize(text, checkout_events(), "detailed"))
    assert result.summary is not None and result.line_refs_invalid == 0
    items = result.summary.summary_bullets + result.summary.interesting_notes
    assert all(text.has_line(int(item.line_refs[1:])) for item in items if item.line_refs)
    failure = next(item for item in result.summary.summary_bullets if "failed" in item.text)
    if failure.line_refs:  # a sampled rendering may have dropped the error line
        number, content = line_of(text, failure.line_refs)
        assert text.line_map[number].event_uuid == LOOKUP_UUID
        assert "OrderServiceTimeout" in content or text.line_map[number].section == "tree"
