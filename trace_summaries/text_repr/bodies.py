"""One event: its one-line label in the tree, and the body rendered under it.

Generation bodies read tools, input, output, error (the order things happened); span bodies the span's
title, error, input and output state; embedding bodies the embedded input. Metrics and feedback are single
``[EVENT]`` lines, as in the original, with their values underneath when ``event_details`` is on.
"""

from __future__ import annotations

import json
from typing import Any

from trace_summaries.text_repr.constants import HEADER_RULE, MAX_UNPARSED_DISPLAY_LENGTH, SEPARATOR
from trace_summaries.text_repr.context import RenderContext
from trace_summaries.text_repr.events import (
    EMBEDDING_EVENT,
    FEEDBACK_EVENT,
    GENERATION_EVENT,
    METRIC_EVENT,
    SPAN_EVENT,
    RenderEvent,
)
from trace_summaries.text_repr.lines import Fragment, text_lines
from trace_summaries.text_repr.messages import render_input, render_output
from trace_summaries.text_repr.states import render_span_state
from trace_summaries.text_repr.tools import render_tools
from trace_summaries.text_repr.values import (
    as_number,
    as_text,
    is_set,
    one_line_text,
    yaml_like_lines,
)

NODE_PREFIXES = {GENERATION_EVENT: "[GEN]", SPAN_EVENT: "[SPAN]", EMBEDDING_EVENT: "[EMBED]"}
OTHER_NODE_PREFIX = "[EVENT]"


def is_expandable(event: RenderEvent) -> bool:
    """Generations, spans and embeddings carry a body (``[+]``); other events are a single line."""
    return event.event in NODE_PREFIXES


def format_latency(latency: float) -> str:
    return f"{latency:.2f}s"


def format_cost(cost: float) -> str:
    return f"${cost:.4f}"


def has_error(properties: dict[str, Any]) -> bool:
    return is_set(properties.get("$ai_is_error")) or bool(properties.get("$ai_error"))


def event_summary(event: RenderEvent) -> str:
    """``name (0.45s, $0.0023, gpt-4, ERROR)`` for generations and embeddings, ``name (1.20s)`` for spans,
    the event name for anything else."""
    props = event.properties
    parts: list[str] = []
    latency = as_number(props.get("$ai_latency"))
    if event.event in (GENERATION_EVENT, EMBEDDING_EVENT):
        fallback = "generation" if event.event == GENERATION_EVENT else "embedding"
        name = one_line_text(props.get("$ai_span_name") or props.get("$ai_model") or fallback)
        cost = as_number(props.get("$ai_total_cost_usd"))
        if latency is not None:
            parts.append(format_latency(latency))
        if cost is not None:
            parts.append(format_cost(cost))
        if props.get("$ai_model"):
            parts.append(one_line_text(props["$ai_model"]))
    elif event.event == SPAN_EVENT:
        span_name = props.get("$ai_span_name")
        name = "span" if span_name is None else one_line_text(span_name)
        if latency is not None:
            parts.append(format_latency(latency))
    else:
        return one_line_text(event.event)
    if has_error(props):
        parts.append("ERROR")
    return f"{name} ({', '.join(parts)})" if parts else name


def node_label(event: RenderEvent) -> str:
    """The tree line after its ``├─ `` / ``└─ `` marker."""
    if is_expandable(event):
        return f"[+] {NODE_PREFIXES[event.event]} {event_summary(event)}"
    return f"{OTHER_NODE_PREFIX} {event_summary(event)}"


def _error_fragment(props: dict[str, Any]) -> Fragment:
    """``ERROR:`` then a structured error as ``key: value`` lines, or the raw error."""
    fragment = Fragment()
    if not has_error(props):
        return fragment
    fragment.add("error", "", SEPARATOR, "", "ERROR:", "")
    error = props.get("$ai_error")
    if error:
        structured: Any = error if isinstance(error, dict) else None
        if isinstance(error, str):
            try:
                decoded = json.loads(error)
            except (ValueError, RecursionError):
                decoded = None
            structured = decoded if isinstance(decoded, dict) else None
        if structured:
            for line in yaml_like_lines(structured):
                fragment.add("error", *text_lines(line))
        else:
            fragment.add_text("error", as_text(error))
    else:
        fragment.add("error", "An error occurred (no details available)")
    fragment.add("error", "")
    return fragment


def _then(body: Fragment, section: str, part: Fragment, *, gap: bool = True) -> None:
    """Append a section: a blank line if something precedes it (when ``gap``), a rule, the section."""
    if not part:
        return
    if body and gap:
        body.add(section, "")
    body.add(section, SEPARATOR)
    body.append(part)


def generation_body(event: RenderEvent, ctx: RenderContext) -> Fragment:
    props = event.properties
    body = Fragment()
    _then(body, "tools", render_tools(props.get("$ai_tools"), ctx))
    _then(body, "input", render_input(props.get("$ai_input"), ctx))
    _then(body, "output", render_output(props.get("$ai_output"), props.get("$ai_output_choices"), ctx))
    error = _error_fragment(props)
    if error:
        if body:
            body.add("error", "")
        body.append(error)
    return body


def embedding_body(event: RenderEvent, ctx: RenderContext) -> Fragment:
    props = event.properties
    body = Fragment()
    _then(body, "embedding", render_input(props.get("$ai_input"), ctx, section="embedding"))
    if body:
        body.add("embedding", "")
    body.add("embedding", SEPARATOR, "", "OUTPUT:", "", "Embedding vector generated", "")
    error = _error_fragment(props)
    if error:
        body.add("error", "")
        body.append(error)
    return body


def span_body(event: RenderEvent, ctx: RenderContext) -> Fragment:
    props = event.properties
    body = Fragment()
    span_name = props.get("$ai_span_name")
    body.add("event", ("Span" if span_name is None else one_line_text(span_name)).upper(), HEADER_RULE)
    error = props.get("$ai_error")
    if error:
        body.add("error", SEPARATOR, "", "ERROR:", "")
        if isinstance(error, str):
            body.add_text("error", error)
        elif isinstance(error, dict):
            body.add_text("error", ctx.dumps(error, indent=2))
        else:
            body.add_text("error", as_text(error))
    _then(
        body,
        "state_input",
        render_span_state(props.get("$ai_input_state"), "INPUT STATE", ctx, "state_input"),
        gap=False,
    )
    _then(
        body,
        "state_output",
        render_span_state(props.get("$ai_output_state"), "OUTPUT STATE", ctx, "state_output"),
        gap=False,
    )
    return body


def details_body(event: RenderEvent, ctx: RenderContext) -> Fragment:
    """Metric and feedback values under their ``[EVENT]`` line (``event_details``, ours)."""
    props = event.properties
    body = Fragment()
    if event.event == METRIC_EVENT:
        name = one_line_text(props.get("$ai_metric_name", "metric"))
        value = props.get("$ai_metric_value")
        shown = value if isinstance(value, str) else ctx.dumps(value)
        body.add_text("event", f"METRIC: {name} = {shown}")
    elif event.event == FEEDBACK_EVENT:
        feedback = props.get("$ai_feedback_text")
        if feedback not in (None, ""):
            body.add("event", "FEEDBACK:")
            body.append(
                ctx.value_block("event", feedback if isinstance(feedback, str) else ctx.dumps(feedback))
            )
    return body


def undecoded_body(raw: str) -> Fragment:
    """Properties that are not a JSON object: a clear label and the start of the raw text."""
    body = Fragment()
    shown = raw if len(raw) <= MAX_UNPARSED_DISPLAY_LENGTH else raw[:MAX_UNPARSED_DISPLAY_LENGTH] + "..."
    body.add("event", "[Unparsed properties: not a JSON object]")
    body.add_text("event", shown)
    return body


def event_body(event: RenderEvent, ctx: RenderContext) -> Fragment:
    """The lines under an event's tree line (empty for a plain ``[EVENT]`` without details)."""
    if event.undecoded_properties is not None:
        return undecoded_body(event.undecoded_properties)
    if event.event == GENERATION_EVENT:
        return generation_body(event, ctx)
    if event.event == SPAN_EVENT:
        return span_body(event, ctx)
    if event.event == EMBEDDING_EVENT:
        return embedding_body(event, ctx)
    if ctx.options.event_details:
        return details_body(event, ctx)
    return Fragment()
