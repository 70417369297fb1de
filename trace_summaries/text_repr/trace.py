"""A whole trace as line-numbered text: the public entry point :func:`format_trace`.

Layout (the original's ``format_trace_text_repr``): the trace name upper-cased and a ``=`` rule; then, for a
trace without events, its input and output state; otherwise ``TRACE HIERARCHY:`` and one tree line per
event (``├─ `` / ``└─ ``) with the event's body indented under it. Lines are numbered once over the whole
text, then the text is sampled down to ``max_length`` if needed.

A nested trace (``nest=True``, ours) uses a compact layout: no blank lines, and the tree guides (``│  ``) only
on the tree lines. The original repeated the guides on every body line, which tells a reader nothing once
each body sits right under its own tree line; with the blank lines they cost over a quarter of the tokens of
a nested text. Body lines keep a two-space indent, so a tree line stays distinct from body text that happens
to start with ``├─``. Line numbers stay contiguous (see ``document``): a gap still only means sampling.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from trace_summaries.text_repr.bodies import event_body, is_expandable, node_label
from trace_summaries.text_repr.constants import (
    COMPACT_BODY_INDENT,
    DEFAULT_TRACE_NAME,
    HEADER_RULE,
    MAX_TREE_DEPTH,
    SEPARATOR,
)
from trace_summaries.text_repr.context import RenderContext
from trace_summaries.text_repr.document import DocumentBuilder, TraceText
from trace_summaries.text_repr.events import TRACE_EVENT, RenderEvent, TraceFacts, ordered_events, trace_facts
from trace_summaries.text_repr.hierarchy import TreeNode, flat_tree, nested_tree, preorder
from trace_summaries.text_repr.lines import Fragment
from trace_summaries.text_repr.options import RenderOptions
from trace_summaries.text_repr.states import render_trace_state
from trace_summaries.text_repr.values import as_text, one_line

# What an event's body must never take down: the rest of the trace. Anything raised while rendering one
# event (a value of a shape nobody planned for) turns into this fallback for that event only.
_RENDER_FAILURE = "[Unparsed value: rendering failed ({error})]"


def _safe_body(event: RenderEvent, ctx: RenderContext) -> Fragment:
    try:
        return event_body(event, ctx)
    except Exception as error:  # the trace must render whatever one event holds
        fragment = Fragment()
        fragment.add("event", _RENDER_FAILURE.format(error=type(error).__name__))
        return fragment


def _safe_label(event: RenderEvent) -> str:
    try:
        return node_label(event)
    except Exception:
        return f"[EVENT] {one_line(event.event)}"


def _body_prefix(tree_prefix: str, ctx: RenderContext) -> str:
    """What a body line starts with: the original's guides and indent, or only an indent (compact)."""
    return COMPACT_BODY_INDENT if ctx.options.nest else f"{tree_prefix}    "


def _render_tree(
    doc: DocumentBuilder, nodes: list[TreeNode], ctx: RenderContext, prefix: str = "", depth: int = 0
) -> None:
    """The original's ASCII tree; past the maximum depth the remaining events are listed flat (the original
    dropped them behind a ``[... max depth reached]`` line)."""
    if depth > MAX_TREE_DEPTH:
        doc.add(None, "tree", f"{prefix}  [... max depth reached]")
        nodes = preorder(nodes)
    for index, node in enumerate(nodes):
        last = index == len(nodes) - 1
        marker, child_prefix = ("└─ ", "   ") if last else ("├─ ", "│  ")
        event = node.event
        doc.add(event.uuid, "tree", f"{prefix}{marker}{_safe_label(event)}")
        body = _safe_body(event, ctx)
        if is_expandable(event) and not body:
            # The original indented the (empty) body text, which printed one blank line.
            body.add("event", "")
        if body:
            doc.place(body, event.uuid, prefix=_body_prefix(prefix + child_prefix, ctx))
        if node.children:
            _render_tree(doc, node.children, ctx, prefix + child_prefix, depth + 1)


def _trace_error(doc: DocumentBuilder, facts: TraceFacts, ctx: RenderContext) -> None:
    if not facts.error:
        return
    doc.add(facts.trace_event_uuid, "error", "", SEPARATOR, "", "TRACE ERROR:", "")
    error = facts.error
    doc.add(facts.trace_event_uuid, "error", error if isinstance(error, str) else ctx.dumps(error, indent=2))


def _trace_states(doc: DocumentBuilder, facts: TraceFacts, ctx: RenderContext) -> None:
    for state, label, is_input in (
        (facts.input_state, "TRACE INPUT", True),
        (facts.output_state, "TRACE OUTPUT", False),
    ):
        try:
            fragment = render_trace_state(state, label, ctx, "trace_state", is_input=is_input)
        except Exception as error:  # as for event bodies: one odd value must not lose the trace
            fragment = Fragment()
            fragment.add(
                "trace_state", "", f"{label}:", "", _RENDER_FAILURE.format(error=type(error).__name__)
            )
        if fragment:
            doc.add(facts.trace_event_uuid, "trace_state", "", SEPARATOR)
            doc.place(fragment, facts.trace_event_uuid)


def _trace_name(explicit: str | None, facts: TraceFacts) -> str:
    for name in (explicit, facts.name):
        if name:
            return one_line(as_text(name))
    return DEFAULT_TRACE_NAME


def format_trace(
    events: Iterable[Any],
    *,
    trace_name: str | None = None,
    options: RenderOptions | None = None,
    **overrides: Any,
) -> TraceText:
    """Render a trace's events as line-numbered text for the summarizing model.

    ``events`` are dicts (or objects) with ``uuid``, ``event``, ``timestamp`` (datetime or ISO string) and
    ``properties`` (a dict, or the raw JSON string as stored, possibly malformed). A ``$ai_trace`` event
    supplies the trace's name and state and is not itself a line of the hierarchy. ``trace_name`` overrides
    the name. Options come from ``options`` and/or keyword overrides of :class:`RenderOptions` fields
    (``max_length``, ``nest``, ``dedupe``, ``truncate_values``, ...); defaults reproduce the original.

    Never raises for any event content; raises ``TypeError``/``ValueError`` for unknown or invalid options.
    """
    resolved = replace(options or RenderOptions(), **overrides) if overrides else options or RenderOptions()
    ctx = RenderContext.for_options(resolved)
    doc = DocumentBuilder(ctx.registry, drop_blank_lines=resolved.nest)

    everything = ordered_events(events)
    facts = trace_facts(everything)
    hierarchy_events = [event for event in everything if event.event != TRACE_EVENT]

    doc.add(None, "header", _trace_name(trace_name, facts).upper(), HEADER_RULE)
    _trace_error(doc, facts, ctx)
    if not hierarchy_events or resolved.include_trace_state:
        _trace_states(doc, facts, ctx)
    if hierarchy_events:
        doc.add(None, "header", "", SEPARATOR, "", "TRACE HIERARCHY:", "")
        tree = nested_tree(hierarchy_events) if resolved.nest else flat_tree(hierarchy_events)
        _render_tree(doc, tree, ctx)
    return doc.finish(resolved.max_length)
