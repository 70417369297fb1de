"""Fit a numbered text under ``max_length`` by keeping evenly spaced lines (the original's later method).

Whole lines are kept with their original numbers, so every line reference into the sampled text is still
valid and gaps in the numbering show where content was left out. The first lines (the trace header) are
always kept and a note saying how much is shown is inserted after the first two. The choice of lines is
deterministic: the same text and limit always give the same sample.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from trace_summaries.text_repr.constants import (
    PRESERVE_HEADER_LINES,
    SAMPLING_MAX_ITERATIONS,
    SAMPLING_REDUCTION_FACTOR,
)

# Given the shown percentage and the total line count, the note line exactly as it will appear.
NoteLine = Callable[[float, int], str]


@dataclass(frozen=True)
class Sample:
    """Which lines to keep (indices into the numbered lines, in order), where the note goes, and whether the
    result still has to be cut to ``max_length`` characters (only when sampling cannot get under it)."""

    kept: list[int]
    note: str | None
    cut: bool


def _joined_length(lengths: Sequence[int]) -> int:
    return sum(lengths) + max(len(lengths) - 1, 0)


def sample_lines(lines: Sequence[str], max_length: int, note_line: NoteLine) -> Sample | None:
    """The sample of ``lines`` (joined by newlines) that fits ``max_length``; None when they already fit or
    are no more than the preserved header."""
    lengths = [len(line) for line in lines]
    if _joined_length(lengths) <= max_length:
        return None
    everything = list(range(len(lines)))
    total = len(lines)
    if total <= PRESERVE_HEADER_LINES:
        # Nothing to sample: the header is all there is (reference case: left unchanged).
        return None

    header = everything[:PRESERVE_HEADER_LINES]
    body = everything[PRESERVE_HEADER_LINES:]
    header_chars = _joined_length(lengths[:PRESERVE_HEADER_LINES])
    note_template_chars = len(note_line(100, total)) + 1
    available = max_length - (header_chars + 1 + note_template_chars)
    if available <= 0:
        return Sample(kept=everything, note=None, cut=True)

    average = sum(lengths[index] + 1 for index in body) / len(body)
    target = int(available / average)
    if target >= len(body):
        return Sample(kept=everything, note=None, cut=True)
    target = max(target, 1)

    def build(target: int) -> tuple[list[int], str, int]:
        step = len(body) / target
        picked = [body[int(i * step)] for i in range(target) if int(i * step) < len(body)]
        note = note_line(len(picked) / len(body) * 100, total)
        chars = header_chars + 1 + len(note) + sum(lengths[index] + 1 for index in picked)
        return picked, note, chars

    picked, note, chars = build(target)
    for _ in range(SAMPLING_MAX_ITERATIONS):
        if chars <= max_length:
            break
        target = max(int(target * (max_length / chars * SAMPLING_REDUCTION_FACTOR)), 1)
        picked, note, chars = build(target)
    return Sample(kept=header + picked, note=note, cut=chars > max_length)
