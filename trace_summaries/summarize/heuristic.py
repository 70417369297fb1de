"""The offline summarizer: a deterministic, extractive summary built from the events themselves.

Used when no LLM endpoint is configured, so the pipeline runs end to end anywhere (a laptop, CI) and the
same input always gives the same summary. It only states facts it can point at: every bullet and note cites
the exact line of the trace text that shows it, found through the text's line map. Its events are labelled
``provider="heuristic"`` so nobody mistakes them for an LLM's reading of the trace.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trace_summaries.summarize.line_refs import check_summary_refs, citable_lines
from trace_summaries.summarize.modes import MODE_RULES, TITLE_MAX_WORDS, ModeRules, SummaryMode
from trace_summaries.summarize.result import Provider, TraceSummaryResult
from trace_summaries.summarize.schema import SummarizationResponse, SummaryItem
from trace_summaries.summarize.steps import TraceStep, trace_name, trace_steps

if TYPE_CHECKING:
    from trace_summaries.text_repr import TraceText

# Stamped as the prompt version of heuristic summaries: bump it when the rules below change.
HEURISTIC_VERSION = "heuristic-v1"
HEURISTIC_MODEL = "heuristic"

_LINE = re.compile(r"^L(\d+): ?(.*)$")
_SNIPPET_CHARS = 80
# Steps that make up the flow; metrics, feedback and custom events are facts about the trace, not steps.
_FLOW_KINDS = frozenset({"generation", "span", "embedding"})


class HeuristicSummarizer:
    """Summarizes a trace without any model: title, flow, bullets and notes straight from the events."""

    provider: Provider = "heuristic"
    model: str = HEURISTIC_MODEL

    async def aclose(self) -> None:
        """Nothing to release: no connections."""

    async def summarize(
        self, trace_text: TraceText, events: Sequence[Any], mode: SummaryMode
    ) -> TraceSummaryResult:
        started = time.monotonic()
        summary, invalid = check_summary_refs(
            summarize_extractively(trace_text, events, mode), citable_lines(trace_text)
        )
        return TraceSummaryResult(
            status="generated",
            summary=summary,
            provider=self.provider,
            model=self.model,
            mode=mode,
            prompt_version=HEURISTIC_VERSION,
            cost_usd=0.0,
            latency_s=time.monotonic() - started,
            attempts=1,
            line_refs_invalid=invalid,
        )


def summarize_extractively(
    trace_text: TraceText, events: Sequence[Any], mode: SummaryMode
) -> SummarizationResponse:
    """The heuristic summary of one trace (pure: same text and events, same summary)."""
    rules = MODE_RULES[mode]
    steps = trace_steps(events)
    lines = _TraceLines(trace_text)
    return SummarizationResponse(
        title=_title(trace_name(events), steps),
        flow_diagram=_flow(steps, rules),
        summary_bullets=_bullets(steps, lines, rules),
        interesting_notes=_notes(steps, lines, rules),
    )


class _TraceLines:
    """The numbered lines of a trace text, grouped by the event they render."""

    def __init__(self, trace_text: TraceText) -> None:
        self.content: dict[int, str] = {}
        for raw in trace_text.text.splitlines():
            match = _LINE.match(raw)
            if match:
                self.content[int(match.group(1))] = match.group(2)
        self.by_event: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for number in sorted(trace_text.line_map):
            source = trace_text.line_map[number]
            if source.event_uuid is not None:
                self.by_event[source.event_uuid].append((number, source.section))

    def ref(self, uuid: str, sections: Iterable[str] = ("tree",), needle: str | None = None) -> str:
        """The first line of the event, in the first of ``sections`` that has one, containing ``needle``.

        Without a match in those sections the whole event is searched, then the event's tree line is used:
        a bullet is better tied to its step than to nothing. "" when the event has no line at all (sampled
        out of a long trace).
        """
        own = self.by_event.get(uuid, [])
        wanted = _normalise(needle) if needle else ""
        for section in (*sections, None):
            for number, line_section in own:
                if section is not None and line_section != section:
                    continue
                if not wanted or wanted in _normalise(self.content.get(number, "")):
                    return f"L{number}"
        tree = [number for number, section in own if section == "tree"]
        if tree:
            return f"L{tree[0]}"
        return f"L{own[0][0]}" if own else ""


@dataclass(frozen=True)
class _Candidate:
    """An item that may make it into the summary: higher priority wins a place, time order is kept."""

    priority: int
    order: int
    item: SummaryItem


# At most this many notable lines go to the LLM (``notable_lines``), the most important first, each of at
# most this many characters: with its item's JSON around it, within ``prompts.NOTABLE_LINES_RESERVE_CHARS``.
NOTABLE_LINES_MAX = 8
NOTABLE_LINE_CHARS = 100


def notable_lines(trace_text: TraceText, events: Sequence[Any]) -> list[str]:
    """The lines an engineer would look at first, as ``"L<n>: <what it shows>"``: every error, the user's
    feedback, the slowest step and the costliest generation (the heuristic summary's note candidates).

    Given to an LLM after the trace text (prompt v3 on): a small model sees where the evidence is and
    cites it, instead of counting line numbers up from the top (benchmark 14's prompt attempts).
    """
    steps = trace_steps(events)
    lines = _TraceLines(trace_text)
    candidates = [
        candidate for candidate in _note_candidates(steps, lines, outliers=True) if candidate.item.line_refs
    ]
    chosen = sorted(candidates, key=lambda c: (-c.priority, c.order))[:NOTABLE_LINES_MAX]
    first = _LINE.match(trace_text.text)
    digits = len(first.group(1)) if first else 1  # written as the text numbers its lines: L045, not L45
    numbered = sorted((int(c.item.line_refs.removeprefix("L")), c.item.text) for c in chosen)
    return [f"L{number:0{digits}d}: {_snippet(text, NOTABLE_LINE_CHARS)}" for number, text in numbered]


def _pick(candidates: list[_Candidate], limit: int) -> list[SummaryItem]:
    chosen = sorted(candidates, key=lambda c: (-c.priority, c.order))[:limit]
    return [candidate.item for candidate in sorted(chosen, key=lambda c: c.order)]


def _title(name: str | None, steps: list[TraceStep]) -> str:
    request = next((step.first_user_message for step in steps if step.first_user_message), None)
    base = name or (_first_line(request) if request else None) or f"Trace with {len(steps)} steps"
    failed = any(step.is_error for step in steps)
    words = base.split()
    limit = TITLE_MAX_WORDS - 1 if failed else TITLE_MAX_WORDS
    title = " ".join(words[:limit]) + ("…" if len(words) > limit else "")
    return f"{title} (failed)" if failed else title


@dataclass
class _FlowBox:
    label: str
    failed: bool = False
    tools: tuple[str, ...] = ()
    repeats: int = 1

    def render(self) -> str:
        times = f" ×{self.repeats}" if self.repeats > 1 else ""
        return f"{self.label}{times}{' ✗' if self.failed else ''}"


def _flow(steps: list[TraceStep], rules: ModeRules) -> str:
    """A vertical ASCII flow: one box per step (repeats folded), tool calls as branches, outcome last."""
    boxes: list[_FlowBox] = []
    request = next((step.first_user_message for step in steps if step.first_user_message), None)
    if request:
        boxes.append(_FlowBox(label=f'User: "{_snippet(_first_line(request), 40)}"'))
    for step in steps:
        if step.kind not in _FLOW_KINDS:
            continue
        box = _FlowBox(
            label=_step_label(step),
            failed=step.is_error,
            tools=tuple(f"tool: {call.name}" for call in step.tool_calls),
        )
        previous = boxes[-1] if boxes else None
        if (
            previous
            and (previous.label, previous.failed) == (box.label, box.failed)
            and not (previous.tools or box.tools)
        ):
            previous.repeats += 1
        else:
            boxes.append(box)
    # The outcome box takes one place of the flow's budget; the hidden middle takes another.
    budget = rules.max_flow_steps - 1
    if len(boxes) > budget:
        hidden = len(boxes) - (budget - 1)
        boxes = [*boxes[: budget - 2], _FlowBox(label=f"… {hidden} more steps"), boxes[-1]]
    failed = any(step.is_error for step in steps)
    boxes.append(_FlowBox(label="Failed ✗" if failed else "Done ✓"))
    lines: list[str] = []
    for index, box in enumerate(boxes):
        if index:
            lines.append("    ↓")
        lines.append(box.render())
        lines.extend(
            f"    {'└─→' if position == len(box.tools) - 1 else '├─→'} {tool}"
            for position, tool in enumerate(box.tools)
        )
    return "\n".join(lines)


def _bullets(steps: list[TraceStep], lines: _TraceLines, rules: ModeRules) -> list[SummaryItem]:
    candidates: list[_Candidate] = []
    request_step = next((step for step in steps if step.first_user_message), None)
    if request_step is not None and request_step.first_user_message:
        text = _first_line(request_step.first_user_message)
        candidates.append(
            _Candidate(
                priority=5,
                order=-1,
                item=SummaryItem(
                    text=f'User asks: "{_snippet(text)}"',
                    line_refs=lines.ref(request_step.uuid, ("input",), _snippet(text, 40, ellipsis=False)),
                ),
            )
        )
    final = next((step for step in reversed(steps) if step.kind == "generation" and step.output_text), None)
    if final is not None and (final.tool_calls or final.is_error):
        final = None
    for order, step in enumerate(steps):
        if step is not final:  # the final answer gets its own bullet below
            candidates.append(
                _Candidate(priority=_step_priority(step), order=order, item=_step_bullet(step, lines))
            )
    if final is not None and final.output_text:
        text = _first_line(final.output_text)
        candidates.append(
            _Candidate(
                priority=4,
                order=len(steps),
                item=SummaryItem(
                    text=f'{_step_label(final)} gives the final answer: "{_snippet(text)}"',
                    line_refs=lines.ref(final.uuid, ("output",), _snippet(text, 40, ellipsis=False)),
                ),
            )
        )
    return _pick(candidates, rules.max_bullets)


def _step_priority(step: TraceStep) -> int:
    if step.is_error:
        return 4
    if step.tool_calls or step.kind == "feedback":
        return 3
    return 2 if step.kind == "generation" else 1


def _step_bullet(step: TraceStep, lines: _TraceLines) -> SummaryItem:
    timing = f" in {step.latency_s:.2f}s" if step.latency_s is not None else ""
    label = _step_label(step)
    if step.is_error and step.error:
        error = _first_line(step.error)
        return SummaryItem(
            text=f"{label} failed{timing}: {_snippet(error)}",
            line_refs=lines.ref(step.uuid, ("error",), _snippet(error, 40, ellipsis=False)),
        )
    if step.kind == "generation" and step.tool_calls:
        names = ", ".join(dict.fromkeys(call.name for call in step.tool_calls))
        return SummaryItem(
            text=f"{label} calls {names}{timing}",
            line_refs=lines.ref(step.uuid, ("output",), step.tool_calls[0].name),
        )
    if step.kind == "generation":
        answer = f': "{_snippet(_first_line(step.output_text), 60)}"' if step.output_text else ""
        return SummaryItem(text=f"{label} answers{timing}{answer}", line_refs=lines.ref(step.uuid))
    if step.kind == "feedback":
        feedback = _snippet(step.feedback_text or "(no text)")
        return SummaryItem(
            text=f'User feedback: "{feedback}"',
            line_refs=lines.ref(
                step.uuid, ("tree", "event"), _snippet(step.feedback_text or "", 40, ellipsis=False)
            ),
        )
    if step.kind == "metric":
        return SummaryItem(text=f"Metric {step.name} = {step.metric_value}", line_refs=lines.ref(step.uuid))
    verb = {"span": "runs", "embedding": "embeds its input"}.get(step.kind, "is recorded")
    return SummaryItem(text=f"{label} {verb}{timing}", line_refs=lines.ref(step.uuid))


def _notes(steps: list[TraceStep], lines: _TraceLines, rules: ModeRules) -> list[SummaryItem]:
    return _pick(_note_candidates(steps, lines, outliers=rules.notes_for_outliers), rules.max_notes)


def _note_candidates(steps: list[TraceStep], lines: _TraceLines, *, outliers: bool) -> list[_Candidate]:
    candidates: list[_Candidate] = []
    for order, step in enumerate(steps):
        if step.is_error and step.error:
            error = _first_line(step.error)
            candidates.append(
                _Candidate(
                    priority=4,
                    order=order,
                    item=SummaryItem(
                        text=f"Error in {_step_label(step)}: {_snippet(error)}",
                        line_refs=lines.ref(step.uuid, ("error",), _snippet(error, 40, ellipsis=False)),
                    ),
                )
            )
        if step.kind == "feedback" and step.feedback_text:
            candidates.append(
                _Candidate(
                    priority=3,
                    order=order,
                    item=SummaryItem(
                        text=f'User left feedback: "{_snippet(step.feedback_text)}"',
                        line_refs=lines.ref(
                            step.uuid, ("tree", "event"), _snippet(step.feedback_text, 40, ellipsis=False)
                        ),
                    ),
                )
            )
    if outliers:
        candidates.extend(_outlier_notes(steps, lines))
    return candidates


def _outlier_notes(steps: list[TraceStep], lines: _TraceLines) -> list[_Candidate]:
    """The slowest step and the most expensive generation, when there is more than one to compare."""
    notes: list[_Candidate] = []
    timed = [(order, step) for order, step in enumerate(steps) if step.latency_s is not None]
    if len(timed) > 1:
        order, slowest = max(timed, key=lambda pair: (pair[1].latency_s or 0.0, -pair[0]))
        total = sum(step.latency_s or 0.0 for _, step in timed)
        share = f" ({100 * (slowest.latency_s or 0.0) / total:.0f}% of all step time)" if total else ""
        notes.append(
            _Candidate(
                priority=2,
                order=order,
                item=SummaryItem(
                    text=f"Slowest step: {_step_label(slowest)} took {slowest.latency_s:.2f}s{share}",
                    line_refs=lines.ref(slowest.uuid),
                ),
            )
        )
    priced = [
        (order, step)
        for order, step in enumerate(steps)
        if step.kind == "generation" and step.cost_usd is not None and step.cost_usd > 0
    ]
    if len(priced) > 1:
        order, costliest = max(priced, key=lambda pair: (pair[1].cost_usd or 0.0, -pair[0]))
        tokens = f"{costliest.input_tokens} in / {costliest.output_tokens} out tokens"
        cost = f"${costliest.cost_usd:.4f}, {tokens}"
        notes.append(
            _Candidate(
                priority=1,
                order=order,
                item=SummaryItem(
                    text=f"Most expensive generation: {_step_label(costliest)} cost {cost}",
                    line_refs=lines.ref(costliest.uuid),
                ),
            )
        )
    return notes


def _step_label(step: TraceStep) -> str:
    if step.kind in ("generation", "embedding") and step.model and step.model != step.name:
        return f"{step.name} ({step.model})"
    return step.name


def _first_line(text: str | None) -> str:
    return next((line.strip() for line in (text or "").splitlines() if line.strip()), "")


def _snippet(text: str, limit: int = _SNIPPET_CHARS, *, ellipsis: bool = True) -> str:
    """``text`` on one line, cut at ``limit`` characters; without ellipsis it is a search needle."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    return flat[:limit].rstrip() + ("…" if ellipsis else "")


def _normalise(text: str) -> str:
    return " ".join(text.split()).lower()
