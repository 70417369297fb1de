"""Line references are checked against the lines the trace text really has, and normalised."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trace_summaries.summarize import SummarizationResponse, SummaryItem, check_line_refs, check_summary_refs
from trace_summaries.summarize.line_refs import citable_lines
from trace_summaries_tests.support.fixtures_llm import numbered_text, rendered_checkout_text

LINES = set(range(1, 31))


def has_line(number: int) -> bool:
    return number in LINES


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("L10", "L10"),
        ("L010", "L10"),
        ("10", "L10"),
        ("l7", "L7"),
        ("L10-15", "L10-L15"),
        ("L10-L15", "L10-L15"),
        ("L10 - L15", "L10-L15"),
        ("L10–L15", "L10-L15"),
        ("L10 to L15", "L10-L15"),
        ("L15-L10", "L10-L15"),
        ("L5-L5", "L5"),
        ("L3, L4", "L3, L4"),
        ("L3 and L4", "L3, L4"),
        ("L3; L3", "L3"),
        ("lines 3-4", "L3-L4"),
        ("", ""),
    ],
)
def test_valid_refs_are_normalised(raw: str, expected: str) -> None:
    assert check_line_refs(raw, has_line).line_refs == expected
    assert check_line_refs(raw, has_line).invalid == 0


@pytest.mark.parametrize(
    ("raw", "expected", "invalid"),
    [
        ("L99", "", 1),
        ("L0", "", 1),
        ("L10-L99", "", 1),
        ("L3, L99", "L3", 1),
        ("L99, L98-L100, L4", "L4", 2),
        ("see above", "", 1),
    ],
)
def test_refs_to_missing_lines_are_dropped_and_counted(raw: str, expected: str, invalid: int) -> None:
    checked = check_line_refs(raw, has_line)
    assert (checked.line_refs, checked.invalid) == (expected, invalid)


def test_lines_sampled_out_of_the_text_count_as_missing() -> None:
    text = numbered_text([(f"line {n}", None, "header") for n in range(1, 21)], keep={1, 2, 3, 10, 20})
    assert check_line_refs("L5", text.has_line).invalid == 1
    assert check_line_refs("L10", text.has_line).line_refs == "L10"
    # A range whose ends both survived is kept even though lines in between were sampled out.
    assert check_line_refs("L3-L10", text.has_line).line_refs == "L3-L10"


def test_a_summary_is_checked_item_by_item_and_items_keep_their_text() -> None:
    summary = SummarizationResponse(
        title="t",
        flow_diagram="",
        summary_bullets=[SummaryItem(text="a", line_refs="L2-3"), SummaryItem(text="b", line_refs="L40")],
        interesting_notes=[SummaryItem(text="n", line_refs="L41, L1")],
    )
    checked, invalid = check_summary_refs(summary, has_line)
    assert invalid == 2
    assert [(item.text, item.line_refs) for item in checked.summary_bullets] == [("a", "L2-L3"), ("b", "")]
    assert checked.interesting_notes[0].line_refs == "L1"


@given(st.text(alphabet="L0123456789-–, ;and", max_size=40))
def test_whatever_the_model_writes_only_existing_lines_survive(raw: str) -> None:
    checked = check_line_refs(raw, has_line)
    for ref in filter(None, checked.line_refs.split(", ")):
        match = re.fullmatch(r"L(\d+)(?:-L(\d+))?", ref)
        assert match is not None
        numbers = [int(group) for group in match.groups() if group is not None]
        assert all(has_line(number) for number in numbers)
        assert numbers == sorted(numbers)


def test_the_sampled_view_note_cannot_be_cited() -> None:
    text = rendered_checkout_text(max_length=1500)
    assert text.sampled and text.line_map[0].section == "sampled_view"
    citable = citable_lines(text)
    assert check_line_refs("L0", citable).invalid == 1
    assert check_line_refs("L1", citable).line_refs == "L1"
    missing = next(n for n in range(1, text.total_lines + 1) if not text.has_line(n))
    assert not citable(missing)
