"""Property-based tests: whatever the events hold, the text renders, is valid UTF-8, and is numbered."""

from __future__ import annotations

import random
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trace_summaries.text_repr import RenderOptions, TraceText, format_trace
from trace_summaries.text_repr.document import SECTIONS
from trace_summaries_tests.text_repr_strategies import arbitrary_properties, event_lists, render_options

NUMBERED = re.compile(r"L(\d+): ")
REFERENCE = re.compile(r"\(same (?:[^()]*? )?as L(\d+)(?:-L(\d+))?\)")

PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def assert_well_formed(result: TraceText, options: RenderOptions) -> None:
    result.text.encode("utf-8")  # raises on anything that is not valid UTF-8
    lines = result.text.split("\n") if result.text else []
    assert result.text.splitlines() == lines, "a consumer splitting on any line break must see the same lines"
    numbers = []
    widths = set()
    for line in lines:
        match = NUMBERED.match(line)
        assert match, f"line without its number: {line!r}"
        numbers.append(int(match.group(1)))
        widths.add(len(match.group(1)))
    assert len(widths) <= 1, "every line number has the same zero-padded width"
    assert numbers == list(result.line_map), "the line map holds exactly the lines of the text, in order"
    assert all(result.has_line(number) for number in numbers)
    if not result.sampled:
        assert numbers == list(range(1, result.total_lines + 1))
    else:
        body = [number for number in numbers if number != 0]
        assert body == sorted(body) and len(set(body)) == len(body), (
            "sampling keeps original numbers in order"
        )
        if options.max_length and result.total_lines > 5:
            assert len(result.text) <= options.max_length
    for number, source in result.line_map.items():
        assert source.section in SECTIONS
        if source.section in ("header", "sampled_view"):
            assert source.event_uuid is None, number
    if options.nest and not result.sampled:
        # The compact layout: a blank line survives only as all a reference has left to cite (a value that
        # was nothing but line breaks).
        cited = {int(match.group(1)) for match in REFERENCE.finditer(result.text)}
        for line in lines:
            number, _, shown = line.partition(": ")
            assert shown.strip() or int(number[1:]) in cited, f"blank line in the compact layout: {line!r}"


def assert_references_point_back(result: TraceText) -> None:
    """A dedupe reference cites lines that exist and come before it."""
    if result.sampled:
        return
    for line in result.text.split("\n"):
        here = int(NUMBERED.match(line).group(1))  # type: ignore[union-attr]
        for match in REFERENCE.finditer(line[line.index(": ") + 2 :]):
            first = int(match.group(1))
            last = int(match.group(2) or first)
            assert 1 <= first <= last < here and result.has_line(first) and result.has_line(last), line


@PROPERTY_SETTINGS
@given(events=event_lists(), options=render_options, name=st.one_of(st.none(), st.text(max_size=10)))
def test_any_events_render_to_numbered_utf8_text(
    events: list[dict[str, Any]], options: RenderOptions, name: str | None
) -> None:
    result = format_trace(events, trace_name=name, options=options)
    assert_well_formed(result, options)
    assert_references_point_back(result)


@PROPERTY_SETTINGS
@given(
    properties=arbitrary_properties, event=st.sampled_from(["$ai_generation", "$ai_span", "$ai_embedding"])
)
def test_any_property_dict_renders_without_raising(properties: dict[str, Any], event: str) -> None:
    events = [{"uuid": "e1", "event": event, "timestamp": "2026-11-20T09:00:00Z", "properties": properties}]
    # The event's tree line follows the header: 7 lines in the original layout, at most 4 without its blank
    # lines (the name's line is blank too when the name is only whitespace).
    for options, header_lines in (
        (RenderOptions(), range(7, 8)),
        (RenderOptions(nest=True, dedupe=True, truncate_values=True), range(3, 5)),
    ):
        result = format_trace(events, options=options)
        assert_well_formed(result, options)
        tree_line = next(n for n, source in result.line_map.items() if source.section == "tree")
        assert result.line_map[tree_line].event_uuid == "e1" and tree_line - 1 in header_lines


@PROPERTY_SETTINGS
@given(events=event_lists(), options=render_options, seed=st.integers(min_value=0, max_value=2**16))
def test_rendering_is_deterministic_and_independent_of_input_order(
    events: list[dict[str, Any]], options: RenderOptions, seed: int
) -> None:
    first = format_trace(events, options=options)
    again = format_trace(events, options=options)
    shuffled = list(events)
    random.Random(seed).shuffle(shuffled)
    reordered = format_trace(shuffled, options=options)
    assert first == again
    assert first.text == reordered.text and first.line_map == reordered.line_map
