"""Input and output state of spans and of the trace itself.

States are whatever the instrumented code chose to record: a conversation, a LangGraph state dict, a tool
result, a Python repr written as a string. The span layout follows the original's dispatch (strings parsed as
JSON or Python literals and pretty-printed, message lists and ``{messages: [...]}`` as conversations,
``tool_call_with_context`` and ``type == "tool"`` with their own layouts, anything else as indented JSON).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trace_summaries.text_repr.context import RenderContext
from trace_summaries.text_repr.lines import Fragment, text_lines
from trace_summaries.text_repr.messages import (
    content_text,
    format_tool_call,
    is_message_list,
    render_input,
    render_messages,
    render_output,
)
from trace_summaries.text_repr.values import as_text, one_line_text, parse_structured_string


def _tool_call_with_context(state: Mapping[str, Any], ctx: RenderContext, section: str) -> Fragment:
    fragment = Fragment()
    nested = state.get("state", {})
    tool_call = state.get("tool_call", {})
    if isinstance(nested, Mapping):
        messages = nested.get("messages", [])
        if isinstance(messages, list) and messages:
            fragment.append(render_messages(messages, ctx, section))
        remaining = nested.get("remaining_steps")
        if remaining is not None:
            fragment.add(section, "", f"Remaining steps: {one_line_text(remaining)}")
    if isinstance(tool_call, Mapping) and tool_call:
        name = one_line_text(tool_call.get("name", "unknown"))
        call = format_tool_call(name, tool_call.get("args", {}), ctx)
        fragment.add(section, "", "Tool Call:", *text_lines(f"  {call}"))
    return fragment


def _tool_result(state: Mapping[str, Any], ctx: RenderContext, section: str) -> Fragment:
    fragment = Fragment()
    header = ["[TOOL RESULT]"]
    if state.get("name"):
        header.append(one_line_text(state["name"]))
    if state.get("status"):
        header.append(f"({one_line_text(state['status'])})")
    fragment.add(section, " ".join(header))
    content = state.get("content", "")
    if content:
        fragment.add(section, "")
        fragment.append(ctx.value_block(section, content_text(content, ctx)))
    return fragment


def _state_content(state: Any, ctx: RenderContext, section: str) -> Fragment:
    """The lines under a state's label."""
    if isinstance(state, str):
        parsed = parse_structured_string(state)
        if parsed is None:
            return ctx.value_block(section, state)
        return ctx.value_block(section, ctx.dumps(parsed, indent=2), parsed)
    if isinstance(state, list):
        if is_message_list(state):
            return render_messages(state, ctx, section)
        return ctx.value_block(section, ctx.dumps(state, indent=2), state)
    if isinstance(state, Mapping):
        if state.get("__type") == "tool_call_with_context":
            return _tool_call_with_context(state, ctx, section)
        messages = state.get("messages")
        if isinstance(messages, list) and messages:
            return render_messages(messages, ctx, section)
        if state.get("type") == "tool":
            return _tool_result(state, ctx, section)
        return ctx.value_block(section, ctx.dumps(state, indent=2), state)
    return ctx.value_block(section, as_text(state))


def render_span_state(state: Any, label: str, ctx: RenderContext, section: str) -> Fragment:
    """A span's ``INPUT STATE:`` / ``OUTPUT STATE:`` block; empty when the state is."""
    fragment = Fragment()
    if not state:
        return fragment
    fragment.add(section, "", f"{label}:", "")
    fragment.append(_state_content(state, ctx, section))
    return fragment


def render_trace_state(
    state: Any, label: str, ctx: RenderContext, section: str, *, is_input: bool
) -> Fragment:
    """The trace's ``TRACE INPUT:`` / ``TRACE OUTPUT:`` block.

    As in the original, a conversation is shown with the generation layout (``INPUT:`` / ``OUTPUT:``
    headers); other values under the trace label. Strings that hold JSON or a Python literal are
    pretty-printed like span states (ours; the original printed them raw).
    """
    if not state:
        return Fragment()
    if is_message_list(state):
        if is_input:
            return render_input(state, ctx, section)
        return render_output(None, state, ctx, section)
    fragment = Fragment()
    fragment.add(section, "", f"{label}:", "")
    fragment.append(_state_content(state, ctx, section))
    return fragment
