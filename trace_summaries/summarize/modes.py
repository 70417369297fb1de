"""The two summary modes and the size rules each one promises.

The LLM learns the rules from its system prompt; the heuristic summarizer applies them directly. Both read
them from here so that a minimal summary looks the same size whichever provider wrote it (a test checks the
prompt files state these very numbers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

SummaryMode = Literal["minimal", "detailed"]
SUMMARY_MODES: tuple[SummaryMode, ...] = get_args(SummaryMode)

TITLE_MAX_WORDS = 10


@dataclass(frozen=True)
class ModeRules:
    """How much a summary of one mode says: ranges are inclusive."""

    min_bullets: int
    max_bullets: int
    max_notes: int
    min_flow_steps: int
    max_flow_steps: int
    # Minimal summaries keep notes for what is critical (errors, user feedback); detailed ones also point at
    # cost and latency outliers.
    notes_for_outliers: bool


MODE_RULES: dict[SummaryMode, ModeRules] = {
    "minimal": ModeRules(
        min_bullets=3,
        max_bullets=5,
        max_notes=2,
        min_flow_steps=3,
        max_flow_steps=7,
        notes_for_outliers=False,
    ),
    "detailed": ModeRules(
        min_bullets=5,
        max_bullets=10,
        max_notes=5,
        min_flow_steps=5,
        max_flow_steps=10,
        notes_for_outliers=True,
    ),
}
