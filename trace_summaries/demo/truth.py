"""What the seeder knows about each trace it writes: the ground truth of search, clustering and summary
quality figures.

Derived from the generated events themselves (the seeder marks failures with ``$ai_is_error``, failed tools
are ``tool:<name>`` spans with an error, feedback is the ``$ai_feedback`` event) plus the kind the plan dealt
(``hour_trace_kinds``), so it cannot drift from what is written. Events are named by uuid, which the rendered
text's ``line_map`` ties to its lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from trace_summaries.demo.scenarios import FEEDBACK_CALM, FEEDBACK_STRONG
from trace_summaries.demo.traces import DEFAULT_OVERSIZED_FRACTION, Event, generate_hour, hour_trace_kinds

Sentiment = Literal["negative", "neutral", "positive"]

# The seeder's feedback texts by what they say (scenarios.FEEDBACK_CALM and FEEDBACK_STRONG, by position).
_NEGATIVE = (FEEDBACK_CALM[2], FEEDBACK_STRONG[0], FEEDBACK_STRONG[2])
_POSITIVE = (FEEDBACK_CALM[0], FEEDBACK_CALM[4], FEEDBACK_STRONG[1], FEEDBACK_STRONG[3])
FEEDBACK_SENTIMENT: dict[str, Sentiment] = {
    text: "negative" if text in _NEGATIVE else "positive" if text in _POSITIVE else "neutral"
    for text in (*FEEDBACK_CALM, *FEEDBACK_STRONG)
}
_STEP_EVENTS = frozenset({"$ai_generation", "$ai_span", "$ai_embedding"})


@dataclass(frozen=True, slots=True)
class TraceTruth:
    """One trace's facts, each as the uuids of the events that show it."""

    trace_id: str
    kind: str
    # Every event marked as failed ($ai_is_error): generations, tool spans and their backend calls.
    error_events: frozenset[str]
    # The failed tools' own spans (``tool:<name>``) and the names of those tools.
    failed_tool_events: frozenset[str]
    failed_tools: frozenset[str]
    feedback_event: str | None
    feedback_text: str | None
    feedback_sentiment: Sentiment | None
    # The step with the largest $ai_latency and the one with the largest $ai_total_cost_usd.
    slowest_event: str | None
    costliest_event: str | None

    @property
    def has_error(self) -> bool:
        return bool(self.error_events)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def trace_truths(events: Iterable[Event], kinds: Mapping[str, str]) -> dict[str, TraceTruth]:
    """The truth of every trace of ``kinds`` found in ``events`` (events of other traces are ignored)."""
    by_trace: dict[str, list[Event]] = {}
    for event in events:
        trace_id = event["properties"].get("$ai_trace_id")
        if trace_id in kinds:
            by_trace.setdefault(trace_id, []).append(event)
    truths = {}
    for trace_id, trace_events in by_trace.items():
        failed = [e for e in trace_events if e["properties"].get("$ai_is_error")]
        tools = [e for e in failed if str(e["properties"].get("$ai_span_name", "")).startswith("tool:")]
        feedback = next((e for e in trace_events if e["event"] == "$ai_feedback"), None)
        text = feedback["properties"].get("$ai_feedback_text") if feedback else None
        steps = [e for e in trace_events if e["event"] in _STEP_EVENTS]
        slowest = max(steps, key=lambda e: _number(e["properties"].get("$ai_latency")), default=None)
        costly = [e for e in steps if _number(e["properties"].get("$ai_total_cost_usd")) > 0]
        costliest = max(costly, key=lambda e: _number(e["properties"]["$ai_total_cost_usd"]), default=None)
        truths[trace_id] = TraceTruth(
            trace_id=trace_id,
            kind=kinds[trace_id],
            error_events=frozenset(e["uuid"] for e in failed),
            failed_tool_events=frozenset(e["uuid"] for e in tools),
            failed_tools=frozenset(
                str(e["properties"]["$ai_span_name"]).removeprefix("tool:") for e in tools
            ),
            feedback_event=feedback["uuid"] if feedback else None,
            feedback_text=text,
            feedback_sentiment=FEEDBACK_SENTIMENT.get(text) if text else None,
            slowest_event=slowest["uuid"] if slowest else None,
            costliest_event=costliest["uuid"] if costliest else None,
        )
    return truths


def hour_truths(
    team_id: int,
    hour_start: datetime,
    traces_per_hour: int,
    seed: int,
    *,
    oversized_fraction: float = DEFAULT_OVERSIZED_FRACTION,
) -> tuple[list[Event], dict[str, TraceTruth]]:
    """The chunk ``generate_hour`` returns for these arguments (AI events only) and its traces' truth."""
    events = generate_hour(
        team_id,
        hour_start,
        traces_per_hour,
        seed,
        oversized_fraction=oversized_fraction,
        include_non_ai=False,
    )
    kinds = hour_trace_kinds(
        team_id, hour_start, traces_per_hour, seed, oversized_fraction=oversized_fraction
    )
    return events, trace_truths(events, kinds)
