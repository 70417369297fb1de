"""Events as the renderer sees them: decoded properties, a deterministic order, trace-level facts.

Events arrive as dicts (or the sampling stage's ``TraceEvent`` models) whose ``properties`` may be a dict or
the raw JSON string as stored, possibly malformed, and whose ``timestamp`` may be a datetime or an ISO
string. Nothing here raises: what cannot be decoded is kept so that it can be shown as such.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from trace_summaries.text_repr.values import as_text

TRACE_EVENT = "$ai_trace"
GENERATION_EVENT = "$ai_generation"
SPAN_EVENT = "$ai_span"
EMBEDDING_EVENT = "$ai_embedding"
METRIC_EVENT = "$ai_metric"
FEEDBACK_EVENT = "$ai_feedback"

# Sort keys: parsed timestamps first (in time order), then unparseable ones (by text), then missing ones.
_PARSED, _UNPARSED, _MISSING = 0, 1, 2


@dataclass(frozen=True)
class RenderEvent:
    uuid: str
    event: str
    properties: dict[str, Any]
    # The raw properties when they could not be decoded into an object (rendered as a fallback).
    undecoded_properties: str | None = None
    order_key: tuple[Any, ...] = field(default=(), compare=False)


def _field(event: Any, name: str) -> Any:
    if isinstance(event, Mapping):
        return event.get(name)
    return getattr(event, name, None)


def _timestamp_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, datetime):
        return _PARSED, value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return _PARSED, datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return _UNPARSED, str(value)
    if isinstance(value, str) and value:
        try:
            return _timestamp_key(datetime.fromisoformat(value.strip().replace("Z", "+00:00")))
        except ValueError:
            return _UNPARSED, value
    return _MISSING, ""


def decode_properties(raw: Any) -> tuple[dict[str, Any], str | None]:
    """The properties object, and the raw text when it is not one (malformed JSON, a list, a number)."""
    if raw is None:
        return {}, None
    if isinstance(raw, Mapping):
        return dict(raw), None
    if isinstance(raw, bytes | bytearray):
        raw = raw.decode("utf-8", errors="replace")
    if isinstance(raw, str):
        try:
            decoded = json.loads(raw)
        except (ValueError, RecursionError):
            return {}, raw
        if isinstance(decoded, dict):
            return decoded, None
        return {}, raw
    return {}, as_text(raw)


def to_render_event(event: Any, position: int) -> RenderEvent:
    properties, undecoded = decode_properties(_field(event, "properties"))
    uuid = _field(event, "uuid")
    name = _field(event, "event")
    uuid_text = "" if uuid is None else as_text(uuid)
    return RenderEvent(
        uuid=uuid_text,
        event="unknown" if name is None else as_text(name),
        properties=properties,
        undecoded_properties=undecoded,
        order_key=(*_timestamp_key(_field(event, "timestamp")), uuid_text, position),
    )


def ordered_events(events: Iterable[Any]) -> list[RenderEvent]:
    """All events, by timestamp then uuid (then input position), so the same trace renders the same."""
    rendered = [to_render_event(event, position) for position, event in enumerate(events)]
    return sorted(rendered, key=lambda event: event.order_key)


def _non_empty(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != {}


@dataclass(frozen=True)
class TraceFacts:
    """What the trace as a whole says about itself, taken like the original's trace query does."""

    name: str | None
    input_state: Any
    output_state: Any
    error: Any
    # The ``$ai_trace`` event the states came from, so their lines can be linked to it.
    trace_event_uuid: str | None


def trace_facts(events: list[RenderEvent]) -> TraceFacts:
    """Name from the earliest ``$ai_trace`` (``$ai_span_name`` or ``$ai_trace_name``), else the earliest event
    that has one; states and error from the earliest ``$ai_trace`` that has them."""
    trace_events = [event for event in events if event.event == TRACE_EVENT]

    def first(candidates: list[RenderEvent], *keys: str) -> tuple[Any, str | None]:
        for event in candidates:
            for key in keys:
                if _non_empty(event.properties.get(key)):
                    return event.properties[key], event.uuid
        return None, None

    name, _ = first(trace_events, "$ai_span_name", "$ai_trace_name")
    if name is None:
        name, _ = first(events, "$ai_span_name", "$ai_trace_name")
    input_state, input_uuid = first(trace_events, "$ai_input_state")
    output_state, output_uuid = first(trace_events, "$ai_output_state")
    error, error_uuid = first(trace_events, "$ai_error")
    uuid = input_uuid or output_uuid or error_uuid or (trace_events[0].uuid if trace_events else None)
    return TraceFacts(
        name=None if name is None else as_text(name),
        input_state=input_state,
        output_state=output_state,
        error=error,
        trace_event_uuid=uuid,
    )
