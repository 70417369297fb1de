"""The original formatter's reference cases (original-system.md section 12, items 13 to 19), reproduced."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from trace_summaries.text_repr import LineSource, format_trace
from trace_summaries.text_repr.bodies import event_summary, format_cost, format_latency
from trace_summaries.text_repr.constants import PRESERVE_HEADER_LINES, SAMPLED_VIEW_HEADER
from trace_summaries.text_repr.events import to_render_event
from trace_summaries.text_repr.line_sampling import sample_lines
from trace_summaries.text_repr.numbering import add_line_numbers, number_width, numbered
from trace_summaries.text_repr.values import truncate_middle

RULE = "=" * 80
SEP = "-" * 80


def strip_numbers(text: str) -> list[str]:
    return [line.split(": ", 1)[1] for line in text.split("\n")]


def generation(uuid: str, timestamp: str, **properties: Any) -> dict[str, Any]:
    return {"uuid": uuid, "event": "$ai_generation", "timestamp": timestamp, "properties": properties}


# --- 13. Line numbering ---------------------------------------------------------------------------------


def test_a_single_line_is_numbered_without_padding() -> None:
    assert add_line_numbers("Hello world") == "L1: Hello world"


def test_one_hundred_lines_are_padded_to_three_digits() -> None:
    result = add_line_numbers("\n".join(f"line {i}" for i in range(1, 101))).split("\n")
    assert result[0] == "L001: line 1"
    assert result[8] == "L009: line 9"
    assert result[99] == "L100: line 100"


def test_an_empty_line_keeps_its_number_and_a_space() -> None:
    assert add_line_numbers("first\n") == "L1: first\nL2: "
    assert add_line_numbers("a\n\nb").split("\n")[1] == "L2: "


def test_trace_text_pads_numbers_to_the_width_of_its_total() -> None:
    events = [generation(f"g{i:02d}", f"2026-11-20T09:00:{i:02d}Z", **{"$ai_input": "x"}) for i in range(20)]
    result = format_trace(events)
    lines = result.text.split("\n")
    assert result.total_lines >= 100
    assert lines[0].startswith("L001: ") and lines[-1].startswith(f"L{result.total_lines}: ")


# --- 14. Header ---------------------------------------------------------------------------------------


def test_a_named_trace_without_events_starts_with_its_upper_cased_name_and_a_rule() -> None:
    result = format_trace([], trace_name="My Trace")
    assert result.text == f"L1: MY TRACE\nL2: {RULE}"
    assert result.line_map == {1: LineSource(None, "header"), 2: LineSource(None, "header")}


def test_a_trace_without_a_name_is_called_trace() -> None:
    assert format_trace([]).text.split("\n")[0] == "L1: TRACE"


def test_the_name_comes_from_the_trace_event() -> None:
    trace = {"uuid": "t", "event": "$ai_trace", "timestamp": "2026-11-20T09:00:00Z"}
    named = [{**trace, "properties": {"$ai_span_name": "Span Named"}}]
    assert format_trace(named).text.startswith("L1: SPAN NAMED\n")
    named = [{**trace, "properties": {"$ai_trace_name": "trace named"}}]
    assert format_trace(named).text.startswith("L1: TRACE NAMED\n")


# --- 15. Formatting helpers -----------------------------------------------------------------------------


@pytest.mark.parametrize(("latency", "shown"), [(1.23456, "1.23s"), (10, "10.00s"), (0.1, "0.10s")])
def test_latency_has_two_decimals(latency: float, shown: str) -> None:
    assert format_latency(latency) == shown


@pytest.mark.parametrize(("cost", "shown"), [(1.23456, "$1.2346"), (0, "$0.0000"), (0.0023, "$0.0023")])
def test_cost_has_four_decimals(cost: float, shown: str) -> None:
    assert format_cost(cost) == shown


def summary(event: str, **properties: Any) -> str:
    return event_summary(to_render_event({"uuid": "e", "event": event, "properties": properties}, 0))


def test_a_full_generation_summary() -> None:
    properties = {"$ai_span_name": "my-generation", "$ai_latency": 0.45, "$ai_total_cost_usd": 0.0023}
    assert summary("$ai_generation", **properties, **{"$ai_model": "gpt-4"}) == (
        "my-generation (0.45s, $0.0023, gpt-4)"
    )
    assert summary("$ai_generation", **properties, **{"$ai_model": "gpt-4", "$ai_is_error": True}) == (
        "my-generation (0.45s, $0.0023, gpt-4, ERROR)"
    )


def test_a_generation_without_a_name_is_named_by_its_model_else_generation() -> None:
    assert summary("$ai_generation", **{"$ai_model": "claude-3"}) == "claude-3 (claude-3)"
    assert summary("$ai_generation") == "generation"
    assert summary("$ai_embedding") == "embedding"


def test_spans_show_name_and_latency_and_unknown_events_their_name() -> None:
    assert summary("$ai_span", **{"$ai_span_name": "my-span", "$ai_latency": 1.2}) == "my-span (1.20s)"
    assert summary("custom_event") == "custom_event"


# --- 16. Siblings and markers ---------------------------------------------------------------------------


def test_siblings_use_tee_then_corner_and_no_frontend_markers() -> None:
    events = [
        generation("g1", "2026-11-20T09:00:01Z", **{"$ai_span_name": "first"}),
        generation("g2", "2026-11-20T09:00:02Z", **{"$ai_span_name": "second"}),
        {"uuid": "m1", "event": "$ai_metric", "timestamp": "2026-11-20T09:00:03Z", "properties": {}},
    ]
    lines = strip_numbers(format_trace(events).text)
    tree = [line for line in lines if line.startswith(("├─", "└─"))]
    assert tree == ["├─ [+] [GEN] first", "├─ [+] [GEN] second", "└─ [EVENT] $ai_metric"]
    assert not any("<<<" in line for line in lines)
    # The body of a non-last sibling hangs from a vertical bar, the last one's from spaces.
    assert lines[lines.index("├─ [+] [GEN] first") + 1] == "│      "


# --- 17. The worked example ---------------------------------------------------------------------------


WORKED_EXAMPLE = [
    "L01: TEST TRACE",
    f"L02: {RULE}",
    "L03: ",
    f"L04: {SEP}",
    "L05: ",
    "L06: TRACE HIERARCHY:",
    "L07: ",
    "L08: └─ [+] [GEN] Test Generation (gpt-4)",
    *(
        f"L{number:02d}:        {line}"
        for number, line in enumerate(
            [
                SEP,
                "",
                "INPUT:",
                "",
                "[1] USER",
                "",
                "Hello",
                "",
                SEP,
                "",
                "OUTPUT:",
                "",
                "[1] ASSISTANT",
                "",
                "Hi there!",
            ],
            start=9,
        )
    ),
]


def test_the_worked_example_is_reproduced_exactly() -> None:
    trace = {
        "uuid": "t",
        "event": "$ai_trace",
        "timestamp": "2026-11-20T09:00:00Z",
        "properties": {"$ai_span_name": "Test Trace"},
    }
    gen = generation(
        "g1",
        "2026-11-20T09:00:01Z",
        **{
            "$ai_span_name": "Test Generation",
            "$ai_model": "gpt-4",
            "$ai_input": [{"role": "user", "content": "Hello"}],
            "$ai_output_choices": [{"message": {"role": "assistant", "content": "Hi there!"}}],
        },
    )
    result = format_trace([trace, gen])
    assert result.text.split("\n") == WORKED_EXAMPLE
    assert result.total_lines == 23 and not result.sampled
    assert result.line_map[8] == LineSource("g1", "tree")
    assert {result.line_map[n].section for n in range(9, 16)} == {"input"}
    assert {result.line_map[n].section for n in range(16, 24)} == {"output"}
    assert all(result.line_map[n].event_uuid is None for n in range(1, 8))


def test_the_worked_example_is_the_same_with_the_name_passed_in_and_properties_as_json() -> None:
    import json

    gen = generation(
        "g1",
        "2026-11-20T09:00:01Z",
        **{
            "$ai_span_name": "Test Generation",
            "$ai_model": "gpt-4",
            "$ai_input": [{"role": "user", "content": "Hello"}],
            "$ai_output_choices": [{"message": {"role": "assistant", "content": "Hi there!"}}],
        },
    )
    gen["properties"] = json.dumps(gen["properties"])
    assert format_trace([gen], trace_name="Test Trace").text.split("\n") == WORKED_EXAMPLE


# --- 18. Middle truncation ------------------------------------------------------------------------------


def test_a_long_value_is_cut_in_the_middle() -> None:
    assert (
        truncate_middle("a" * 3000, 1000) == "a" * 500 + "\n\n... (2000 chars truncated) ...\n\n" + "a" * 500
    )
    assert truncate_middle("a" * 1000, 1000) == "a" * 1000


def test_truncate_values_cuts_long_inputs_in_the_trace() -> None:
    event = generation("g1", "2026-11-20T09:00:01Z", **{"$ai_input": "a" * 3000})
    lines = strip_numbers(format_trace([event], truncate_values=True).text)
    at = lines.index(" " * 7 + "a" * 500)
    assert lines[at : at + 5] == [
        " " * 7 + part for part in ("a" * 500, "", "... (2000 chars truncated) ...", "", "a" * 500)
    ]
    # Off by default, as in the original's baseline.
    assert " " * 7 + "a" * 3000 in strip_numbers(format_trace([event]).text)


# --- 19. Uniform sampling -------------------------------------------------------------------------------


def numbered_lines(count: int, content_length: int = 100) -> list[str]:
    width = number_width(count)
    return [numbered(number, width, "x" * content_length) for number in range(1, count + 1)]


def note(width: int):  # type: ignore[no-untyped-def]
    return lambda percent, total: numbered(0, width, SAMPLED_VIEW_HEADER.format(percent=percent, total=total))


def test_text_within_the_limit_empty_text_or_only_header_lines_is_unchanged() -> None:
    lines = numbered_lines(10, 20)
    assert sample_lines(lines, 10_000, note(2)) is None
    assert sample_lines(lines, len("\n".join(lines)), note(2)) is None
    assert sample_lines([""], 1000, note(1)) is None
    assert sample_lines(numbered_lines(PRESERVE_HEADER_LINES, 20), 100, note(1)) is None


def sampled_text(lines: list[str], max_length: int) -> list[str]:
    sample = sample_lines(lines, max_length, note(number_width(len(lines))))
    assert sample is not None and sample.note is not None and not sample.cut
    kept = [lines[index] for index in sample.kept]
    kept.insert(2, sample.note)
    return kept


def test_a_thousand_long_lines_are_sampled_under_the_limit_keeping_header_and_numbers() -> None:
    lines = numbered_lines(1000)  # about 107 characters each
    result = sampled_text(lines, 5000)
    assert len("\n".join(result)) <= 5000
    assert result[:2] == lines[:2] and result[3:6] == lines[2:5]
    assert result[2].split(": ", 1)[1].startswith("[SAMPLED VIEW:")
    numbers = [int(line[1:5]) for line in result if not line.startswith("L0000")]
    assert any(b - a > 1 for a, b in itertools.pairwise(numbers)), "gaps show omitted lines"
    assert all(line in lines for line in result if not line.startswith("L0000")), "original numbers kept"


@pytest.mark.parametrize(("count", "max_length"), [(100, 2000), (500, 5000), (1000, 10_000), (5000, 50_000)])
def test_the_stated_percentage_is_within_five_points(count: int, max_length: int) -> None:
    result = sampled_text(numbered_lines(count), max_length)
    assert len("\n".join(result)) <= max_length
    match = re.search(r"Showing ~(\d+)% of ([\d,]+) lines", result[2])
    assert match is not None
    assert int(match.group(2).replace(",", "")) == count
    shown = (len(result) - 1) / count * 100
    assert abs(int(match.group(1)) - shown) < 5


def test_a_trace_over_max_length_is_sampled_with_valid_line_references() -> None:
    events = [
        generation(
            f"g{i:02d}", f"2026-11-20T09:00:{i:02d}Z", **{"$ai_input": [{"role": "user", "content": f"q{i}"}]}
        )
        for i in range(40)
    ]
    full = format_trace(events)
    result = format_trace(events, max_length=5000)
    assert result.sampled and len(result.text) <= 5000 and result.total_lines == full.total_lines
    lines = result.text.split("\n")
    full_lines = full.text.split("\n")
    assert lines[:2] == full_lines[:2] and lines[3:6] == full_lines[2:5]
    assert lines[2].split(": ", 1)[1].startswith("[SAMPLED VIEW:")
    assert result.line_map[0] == LineSource(None, "sampled_view")
    for line in lines[:2] + lines[3:]:
        number = int(line[1 : line.index(":")])
        assert full_lines[number - 1] == line, "a kept line keeps its original number and content"
        assert result.line_map[number] == full.line_map[number]
    assert set(result.line_map) == {int(line[1 : line.index(":")]) for line in lines}
