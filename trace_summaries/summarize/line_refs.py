"""Checking and normalising the line references of a summary against the lines the trace text really has.

Summaries are only useful if a reader can jump from a bullet to the evidence. LLMs cite lines that do not
exist (hallucinated, or sampled out of a long trace) and write ranges in several styles, so every reference
is checked against the text's line map: references to missing lines are dropped and counted, the rest are
rewritten in one canonical form (``L7``, ``L10-L15``) that the UI can link.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trace_summaries.summarize.schema import SummarizationResponse, SummaryItem

if TYPE_CHECKING:
    from trace_summaries.text_repr import TraceText

# Lines that describe the text rather than the trace (the "[SAMPLED VIEW: ...]" note, numbered L0): a
# reference to them supports no statement, so it counts as invalid like a missing line.
NOT_CITABLE_SECTIONS = frozenset({"sampled_view"})

# One reference: "L45", "45", "L010", or a range "L10-15", "L10-L15", "L10 – L15", "L10 to L15".
_ONE_REF = r"L?\s*(\d+)(?:\s*(?:-|–|—|\bto\b)\s*L?\s*(\d+))?"
_REF_TOKEN = re.compile(rf"^(?:lines?\s*)?{_ONE_REF}$", re.IGNORECASE)
_REF_ANYWHERE = re.compile(rf"\b{_ONE_REF}\b", re.IGNORECASE)
# Models list several references with commas, semicolons or "and"; ranges use dashes, so never split on those.
_SEPARATORS = re.compile(r"[,;]|\s+(?:and|&)\s+", re.IGNORECASE)


def citable_lines(trace_text: TraceText) -> Callable[[int], bool]:
    """Whether a line number may be cited: present in the text, and trace content rather than a note."""

    def citable(number: int) -> bool:
        source = trace_text.line_map.get(number)
        return source is not None and source.section not in NOT_CITABLE_SECTIONS

    return citable


@dataclass(frozen=True)
class CheckedRefs:
    """A ``line_refs`` value rewritten in canonical form, and how many references were dropped from it."""

    line_refs: str
    invalid: int


def check_line_refs(raw: str, has_line: Callable[[int], bool]) -> CheckedRefs:
    """Keep the references whose lines exist (both ends, for a range), in canonical form, in order, once.

    A token that is not a reference at all ("see above") counts as invalid too: it cannot be followed.
    """
    kept: list[str] = []
    invalid = 0
    for token in (part.strip() for part in _SEPARATORS.split(raw)):
        if not token:
            continue
        match = _REF_TOKEN.match(token)
        matches = [match] if match else list(_REF_ANYWHERE.finditer(token))
        if not matches:
            invalid += 1
            continue
        for ref in matches:
            canonical = _canonical(int(ref.group(1)), ref.group(2), has_line)
            if canonical is None:
                invalid += 1
            elif canonical not in kept:
                kept.append(canonical)
    return CheckedRefs(line_refs=", ".join(kept), invalid=invalid)


def _canonical(start: int, end_text: str | None, has_line: Callable[[int], bool]) -> str | None:
    end = int(end_text) if end_text is not None else start
    start, end = min(start, end), max(start, end)
    if not (has_line(start) and has_line(end)):
        return None
    return f"L{start}" if start == end else f"L{start}-L{end}"


def check_summary_refs(
    summary: SummarizationResponse, has_line: Callable[[int], bool]
) -> tuple[SummarizationResponse, int]:
    """The summary with every item's references checked, and the total number of references dropped.

    Items keep their text even when all their references go: the statement may still be right, and the empty
    ``line_refs`` tells the reader there is no evidence to jump to.
    """
    invalid = 0

    def checked(items: list[SummaryItem]) -> list[SummaryItem]:
        nonlocal invalid
        result = []
        for item in items:
            refs = check_line_refs(item.line_refs, has_line)
            invalid += refs.invalid
            result.append(SummaryItem(text=item.text, line_refs=refs.line_refs))
        return result

    return (
        summary.model_copy(
            update={
                "summary_bullets": checked(summary.summary_bullets),
                "interesting_notes": checked(summary.interesting_notes),
            }
        ),
        invalid,
    )
