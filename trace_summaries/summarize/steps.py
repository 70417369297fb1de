"""The steps of a trace as the summarizers see them, read from its ``$ai_*`` events.

Events come from many SDKs, so the same fact hides in several shapes (a tool call in ``tool_calls`` or in an
Anthropic ``tool_use`` block; a message's text in a string or a list of blocks). This module reads them all
into one plain ``TraceStep`` per event, leaving the summarizers free of format guessing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

StepKind = Literal["generation", "span", "embedding", "metric", "feedback", "event"]

_KINDS: dict[str, StepKind] = {
    "$ai_generation": "generation",
    "$ai_span": "span",
    "$ai_embedding": "embedding",
    "$ai_metric": "metric",
    "$ai_feedback": "feedback",
}

TRACE_EVENT = "$ai_trace"


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str


@dataclass(frozen=True)
class TraceStep:
    """One non-``$ai_trace`` event, reduced to what a summary talks about."""

    uuid: str
    event: str
    kind: StepKind
    name: str
    timestamp: datetime | None
    model: str | None = None
    latency_s: float | None = None
    cost_usd: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    first_user_message: str | None = None
    output_text: str | None = None
    feedback_text: str | None = None
    metric_name: str | None = None
    metric_value: str | None = None

    @property
    def is_error(self) -> bool:
        return self.error is not None


def event_dict(event: Any) -> dict[str, Any]:
    """An event as a plain dict, whether it came as a dict or as a pydantic model (``TraceEvent``)."""
    if isinstance(event, Mapping):
        return dict(event)
    if hasattr(event, "model_dump"):
        return dict(event.model_dump())
    raise TypeError(f"an event must be a mapping or a pydantic model, not {type(event).__name__}")


def properties(event: Mapping[str, Any]) -> dict[str, Any]:
    raw = event.get("properties") or {}
    if isinstance(raw, str):
        raw = _json_or_none(raw) or {}
    return dict(raw) if isinstance(raw, Mapping) else {}


def trace_name(events: Iterable[Any]) -> str | None:
    """The trace's name: from the ``$ai_trace`` event, else the first event that carries ``$ai_trace_name``.

    A generation's span name ("chat", "llm") is deliberately not used: it names a step, not the trace.
    """
    dicts = sorted((event_dict(event) for event in events), key=_sort_key)
    for event in dicts:
        if event.get("event") == TRACE_EVENT:
            props = properties(event)
            name = _text(props.get("$ai_trace_name")) or _text(props.get("$ai_span_name"))
            if name:
                return name
    for event in dicts:
        name = _text(properties(event).get("$ai_trace_name"))
        if name:
            return name
    return None


def trace_steps(events: Iterable[Any]) -> list[TraceStep]:
    """The steps in time order (stable for equal timestamps); the ``$ai_trace`` event is not a step."""
    dicts = sorted((event_dict(event) for event in events), key=_sort_key)
    return [_step(event) for event in dicts if event.get("event") != TRACE_EVENT]


def _step(event: Mapping[str, Any]) -> TraceStep:
    props = properties(event)
    name_event = str(event.get("event") or "event")
    kind = _KINDS.get(name_event, "event")
    model = _text(props.get("$ai_model"))
    span_name = _text(props.get("$ai_span_name"))
    if kind in ("generation", "embedding"):
        name = span_name or model or kind
    elif kind == "metric":
        name = _text(props.get("$ai_metric_name")) or "metric"
    elif kind == "feedback":
        name = "feedback"
    else:
        name = span_name or name_event
    messages = _messages(props.get("$ai_input"))
    return TraceStep(
        uuid=str(event.get("uuid") or ""),
        event=name_event,
        kind=kind,
        name=name,
        timestamp=_timestamp(event.get("timestamp")),
        model=model,
        latency_s=_number(props.get("$ai_latency")),
        cost_usd=_number(props.get("$ai_total_cost_usd")),
        input_tokens=int(_number(props.get("$ai_input_tokens")) or 0),
        output_tokens=int(_number(props.get("$ai_output_tokens")) or 0),
        error=_error(props),
        tool_calls=tuple(_tool_calls(props)),
        first_user_message=_first_user_message(props.get("$ai_input"), messages),
        output_text=_output_text(props),
        feedback_text=_text(props.get("$ai_feedback_text")),
        metric_name=_text(props.get("$ai_metric_name")),
        metric_value=None if props.get("$ai_metric_value") is None else str(props.get("$ai_metric_value")),
    )


def _first_user_message(raw_input: Any, messages: list[tuple[str, str]]) -> str | None:
    """The first user message; a plain-string input (a completion-style prompt) counts as one."""
    if messages:
        return next((text for role, text in messages if role == "user" and text.strip()), None)
    return _text(raw_input) if isinstance(raw_input, str) else None


def _error(props: Mapping[str, Any]) -> str | None:
    error = props.get("$ai_error")
    if error not in (None, "", {}, []):
        return error if isinstance(error, str) else json.dumps(error, default=str, ensure_ascii=False)
    if _truthy(props.get("$ai_is_error")):
        return "error (no details recorded)"
    return None


def _messages(value: Any) -> list[tuple[str, str]]:
    """(role, text) of each message of an input or output list; ``{"messages": [...]}`` is unwrapped."""
    if isinstance(value, str):
        value = _json_or_none(value) if value.lstrip().startswith(("[", "{")) else None
    if isinstance(value, Mapping):
        value = value.get("messages") or value.get("choices")
    if not isinstance(value, Sequence) or isinstance(value, str):
        return []
    result = []
    for item in value:
        if not isinstance(item, Mapping):
            continue
        message = _nested(item, "message")
        result.append((str(message.get("role") or "assistant"), content_text(message.get("content"))))
    return result


def content_text(content: Any) -> str:
    """The readable text of a message content: a string, a text block, or the text blocks of a list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Mapping):
        for key in ("text", "content"):
            if isinstance(content.get(key), str):
                return str(content[key])
        return ""
    if isinstance(content, Sequence):
        return "\n".join(text for text in (content_text(block) for block in content) if text)
    return str(content)


def _output_text(props: Mapping[str, Any]) -> str | None:
    if isinstance(props.get("$ai_output"), str) and props["$ai_output"].strip():
        return str(props["$ai_output"])
    texts = [text for _, text in _messages(props.get("$ai_output_choices")) if text.strip()]
    if texts:
        return texts[-1]
    raw = props.get("$ai_output_choices")
    return raw if isinstance(raw, str) and raw.strip() else None


def _tool_calls(props: Mapping[str, Any]) -> list[ToolCall]:
    """Tool calls the model asked for, in the OpenAI, Anthropic and Vercel AI SDK shapes."""
    raw = props.get("$ai_output_choices")
    if isinstance(raw, str):
        raw = _json_or_none(raw)
    if isinstance(raw, Mapping):
        raw = raw.get("choices") or [raw]
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        return []
    calls: list[ToolCall] = []
    for choice in raw:
        if not isinstance(choice, Mapping):
            continue
        message = _nested(choice, "message")
        for call in message.get("tool_calls") or []:
            if isinstance(call, Mapping):
                function = _nested(call, "function")
                calls.append(_tool_call(function.get("name"), function.get("arguments")))
        content = message.get("content")
        blocks = content if isinstance(content, Sequence) and not isinstance(content, str) else []
        for block in blocks:
            if not isinstance(block, Mapping):
                continue
            if block.get("type") == "tool_use":
                calls.append(_tool_call(block.get("name"), block.get("input")))
            elif block.get("type") == "tool-call":
                calls.append(_tool_call(block.get("toolName"), block.get("args", block.get("input"))))
            elif block.get("type") == "function" and isinstance(block.get("function"), Mapping):
                calls.append(_tool_call(block["function"].get("name"), block["function"].get("arguments")))
    return calls


def _tool_call(name: Any, arguments: Any) -> ToolCall:
    if isinstance(arguments, str):
        args = arguments
    elif arguments is None:
        args = ""
    else:
        args = json.dumps(arguments, default=str, ensure_ascii=False, separators=(",", ":"))
    return ToolCall(name=_text(name) or "tool", arguments=args)


def _sort_key(event: Mapping[str, Any]) -> datetime:
    return _timestamp(event.get("timestamp")) or datetime.min.replace(tzinfo=UTC)


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _number(value: Any) -> float | None:
    """A finite number, or None: NaN and Infinity (JSON from some clients) are no latency or token count."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _nested(value: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """``value[key]`` when it is a mapping (OpenAI's ``{"message": {...}}``), else ``value`` itself."""
    inner = value.get(key)
    return inner if isinstance(inner, Mapping) else value
