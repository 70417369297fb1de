"""Messages: their content in the OpenAI, Anthropic and Gemini shapes, tool calls, message lists.

The layout is the original's (``[i] ROLE``, a blank line, the content, ``Tool calls: N``, a rule between
messages). What the original lost or printed as a Python repr is rendered here: Gemini ``parts``, Anthropic
``tool_result`` blocks holding a list, images (``[IMAGE]``), thinking blocks, tool calls carried in an input
message's content, and plain strings in a message list.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trace_summaries.text_repr.anchors import BlockAnchor, BlockKey, MessageEntry, MessagesAnchor
from trace_summaries.text_repr.constants import SEPARATOR
from trace_summaries.text_repr.context import RenderContext, same_as
from trace_summaries.text_repr.dedupe import json_key, worth_referencing
from trace_summaries.text_repr.lines import Cited, Fragment, Line, RefLine, range_parts, text_lines
from trace_summaries.text_repr.values import as_text, one_line_text, parse_structured_string, unparsed

TEXT_BLOCK_TYPES = frozenset({"text", "input_text", "output_text"})
IMAGE_BLOCK_TYPES = frozenset({"image", "image_url", "input_image", "image_file"})
AUDIO_BLOCK_TYPES = frozenset({"audio", "input_audio"})
FILE_BLOCK_TYPES = frozenset({"file", "input_file", "document"})
# Content blocks that carry a tool call in PostHog's normalized shape; they are listed under "Tool calls".
TOOL_CALL_BLOCK_TYPES = frozenset({"function", "tool-call"})
# A URL longer than this is not worth its tokens (signed URLs, data URLs): the label alone is shown.
MAX_SHOWN_URL_LENGTH = 200


def format_tool_call(name: str, args: Any, ctx: RenderContext) -> str:
    """``name(key=<json>, ...)`` like the original; arguments that are not a JSON object are shown raw."""
    parsed: Any = None
    if isinstance(args, dict):
        parsed = args
    elif isinstance(args, str) and args:
        try:
            parsed = json.loads(args)
        except (ValueError, RecursionError):
            parsed = None
    if parsed and isinstance(parsed, dict):
        arguments = ", ".join(f"{as_text(key)}={ctx.dumps(value)}" for key, value in parsed.items())
        return f"{name}({arguments})"
    if args:
        return f"{name}({as_text(args)})"
    return f"{name}()"


def _tool_call_name_and_args(call: Mapping[str, Any]) -> tuple[str, Any]:
    function = call.get("function")
    if isinstance(function, Mapping):
        return one_line_text(function.get("name", "unknown")), function.get("arguments", "")
    for key in ("args", "arguments", "input"):
        if key in call:
            return one_line_text(call.get("name", "unknown")), call[key]
    return one_line_text(call.get("name", "unknown")), ""


def tool_call_lines(tool_calls: Sequence[Any], ctx: RenderContext) -> list[str]:
    lines = [f"Tool calls: {len(tool_calls)}"]
    for call in tool_calls:
        if isinstance(call, Mapping):
            name, args = _tool_call_name_and_args(call)
            lines.extend(text_lines(f"  - {format_tool_call(name, args, ctx)}"))
        else:
            lines.extend(text_lines(f"  - {as_text(call)}"))
    return lines


def _url_label(label: str, url: Any) -> str:
    if isinstance(url, Mapping):
        url = url.get("url")
    if isinstance(url, str) and url.startswith(("http://", "https://")) and len(url) <= MAX_SHOWN_URL_LENGTH:
        return f"[{label}: {one_line_text(url)}]"
    return f"[{label}]"


def _gemini_part_text(part: Mapping[str, Any], ctx: RenderContext) -> str | None:
    """Gemini ``parts`` entries other than text; None when ``part`` is not one of them."""
    call = part.get("functionCall", part.get("function_call"))
    if isinstance(call, Mapping):
        return format_tool_call(one_line_text(call.get("name", "unknown")), call.get("args", ""), ctx)
    response = part.get("functionResponse", part.get("function_response"))
    if isinstance(response, Mapping):
        label = f"[Tool result: {one_line_text(response.get('name', 'unknown'))}]"
        body = response.get("response")
        return f"{label}\n\n{content_text(body, ctx) if isinstance(body, str) else ctx.dumps(body)}"
    inline = part.get("inlineData", part.get("inline_data"))
    if isinstance(inline, Mapping):
        mime = as_text(inline.get("mimeType", inline.get("mime_type", "")))
        return "[IMAGE]" if mime.startswith("image/") else f"[INLINE_DATA: {one_line_text(mime)}]"
    file_data = part.get("fileData", part.get("file_data"))
    if isinstance(file_data, Mapping):
        return _url_label("FILE", file_data.get("fileUri", file_data.get("file_uri")))
    return None


def _block_text(block: Any, ctx: RenderContext) -> str | None:
    """One content block as text; None for blocks shown elsewhere (tool calls listed under the message)."""
    if isinstance(block, str):
        return block
    if isinstance(block, list):
        return content_text(block, ctx)
    if not isinstance(block, Mapping):
        return None if block is None else as_text(block)

    gemini = _gemini_part_text(block, ctx)
    if gemini is not None:
        return gemini

    block_type = block.get("type")
    kind = block_type if isinstance(block_type, str) else None
    if kind in ("tool_use", "server_tool_use"):
        tool_input = block.get("input", {})
        if not tool_input and "partial_json" in block:
            with contextlib.suppress(TypeError, ValueError, RecursionError):
                tool_input = json.loads(block["partial_json"])
        return format_tool_call(one_line_text(block.get("name", "unknown")), tool_input, ctx)
    if kind == "tool-call" and "toolName" in block:
        args = block.get("input", block.get("args", {}))
        return format_tool_call(one_line_text(block.get("toolName", "unknown")), args, ctx)
    if kind in TOOL_CALL_BLOCK_TYPES and isinstance(block.get("function"), Mapping):
        return None
    if kind == "tool_result":
        result = content_text(block.get("content"), ctx)
        return f"[TOOL_RESULT]\n\n{result}" if result else "[TOOL_RESULT]"
    if kind == "tool-result":
        label = f"[Tool result: {one_line_text(block.get('toolName', 'unknown'))}]"
        output = block.get("output", block.get("result"))
        result = output if isinstance(output, str) else ("" if output is None else ctx.dumps(output))
        return f"{label}\n\n{result}" if result else label
    if kind == "thinking":
        thinking = content_text(block.get("thinking"), ctx)
        return f"[THINKING]\n\n{thinking}" if thinking else "[THINKING]"
    if kind in IMAGE_BLOCK_TYPES:
        source = block.get("source")
        url = block.get("image_url", source.get("url") if isinstance(source, Mapping) else None)
        return _url_label("IMAGE", url)
    if kind in AUDIO_BLOCK_TYPES:
        return "[AUDIO]"
    if kind in FILE_BLOCK_TYPES and not (block.get("text") or block.get("content")):
        return "[FILE]"

    inner = block.get("content")
    if isinstance(inner, Mapping) and "toolName" in inner:
        name = one_line_text(inner.get("toolName", "unknown"))
        if "result" in inner and "args" not in inner:
            return f"[Tool result: {name}]"
        return format_tool_call(name, inner.get("args", ""), ctx)

    # Text under "text" or "content" (the original's keys), or under the block's own type ("refusal").
    value = block.get("text") or block.get("content") or (block.get(kind) if kind else None)
    if value:
        text = value if isinstance(value, str) else content_text(value, ctx)
        if kind and kind not in TEXT_BLOCK_TYPES:
            return f"[{one_line_text(kind).upper()}]\n\n{text}"
        return text
    parts = block.get("parts")
    if isinstance(parts, list):
        return content_text(parts, ctx)
    if kind:
        return f"[{one_line_text(kind).upper()}]"
    return ctx.dumps(block) if block else None


def content_text(content: Any, ctx: RenderContext) -> str:
    """The text of a message's content in any known shape; blocks are separated by a blank line."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = (_block_text(block, ctx) for block in content)
        return "\n\n".join(text for text in texts if text)
    return _block_text(content, ctx) or ""


@dataclass(frozen=True)
class Message:
    role: str
    content: Any
    tool_calls: list[Any]


def _as_list(value: Any) -> list[Any]:
    if not value:
        return []
    return value if isinstance(value, list) else [value]


def message_from(item: Mapping[str, Any], default_role: str = "unknown") -> Message:
    """Role, content and tool calls of a message in the OpenAI, Anthropic, Gemini or Responses shape."""
    role = item.get("role") or item.get("type") or default_role
    content = item.get("content", "")
    if not content:
        for key in ("parts", "output"):
            if item.get(key):
                content = item[key]
                break
    tool_calls = _as_list(item.get("tool_calls", []))
    blocks = content if isinstance(content, list) else [content] if isinstance(content, Mapping) else []
    if blocks:
        in_content = [
            {"function": block["function"]}
            for block in blocks
            if isinstance(block, Mapping)
            and block.get("type") in TOOL_CALL_BLOCK_TYPES
            and isinstance(block.get("function"), Mapping)
        ]
        if in_content:
            tool_calls = in_content
    if not tool_calls and not content and "name" in item and ("arguments" in item or "input" in item):
        tool_calls = [item]  # a Responses API function_call item
    return Message(role=one_line_text(role).upper(), content=content, tool_calls=tool_calls)


@dataclass(frozen=True)
class MessageBody:
    """The role and the lines under a message's ``[i] ROLE`` header.

    ``value_key`` names structured content (a JSON tool result) found at ``lines[value_start:]`` over
    ``value_length`` lines, so that a later rendering of the same value can cite it (dedupe).
    """

    role: str
    lines: list[Line]
    value_key: BlockKey | None = None
    value_start: int = 0
    value_length: int = 0


def _content_lines(text: str, ctx: RenderContext) -> tuple[list[Line], BlockKey | None]:
    """A message's text, or with dedupe a reference when it is a JSON value rendered before (a tool result
    already shown as a span's output state)."""
    lines = text_lines(ctx.truncate(text))
    if ctx.registry is None or not worth_referencing(lines):
        return list(lines), None
    parsed = parse_structured_string(text)
    if parsed is None:
        return list(lines), None
    key = json_key(parsed)
    placed = ctx.registry.blocks.get(key)
    if placed is not None:
        return [same_as(*placed)], None
    return list(lines), key


def _message_body(item: Any, ctx: RenderContext) -> MessageBody:
    if isinstance(item, Mapping):
        message = message_from(item)
    elif isinstance(item, str):
        message = Message(role="TEXT", content=item, tool_calls=[])
    else:
        return MessageBody(
            "UNKNOWN", ["", *unparsed("message", item, ascii_only=ctx.options.escape_non_ascii)]
        )
    lines: list[Line] = [""]
    key: BlockKey | None = None
    length = 0
    if message.content:
        text = content_text(message.content, ctx)
        if text:
            content, key = (
                _content_lines(text, ctx)
                if isinstance(message.content, str)
                else (list(text_lines(ctx.truncate(text))), None)
            )
            lines.extend(content)
            length = len(content)
    if message.tool_calls:
        lines.append("")
        lines.extend(tool_call_lines(message.tool_calls, ctx))
    return MessageBody(message.role, lines, key, 1, length)


def _reference(index: int, length: int, role: str, first: int, last: int) -> RefLine:
    if length == 1:
        what = "system prompt" if role == "SYSTEM" else "message"
        return RefLine((f"[{index + 1}] {role} (same {what} as ", Cited(first, first), ")"))
    return RefLine((f"[{index + 1}..{index + length}] (same messages as ", *range_parts(first, last), ")"))


def render_messages(messages: Sequence[Any], ctx: RenderContext, section: str) -> Fragment:
    """A message list: per message a blank line, ``[i] ROLE``, the content; a rule between messages.

    With dedupe, runs of messages placed before become one reference line each (see ``dedupe``).
    """
    fragment = Fragment()
    bodies = [_message_body(item, ctx) for item in messages]
    registry = ctx.registry
    keys = tuple(registry.message_id((body.role, tuple(body.lines))) for body in bodies) if registry else ()
    entries: list[MessageEntry] = []
    index = 0
    while index < len(bodies):
        run = registry.longest_run(keys, index) if registry is not None else None
        fragment.add(section, "")
        start = len(fragment)
        if run is not None:
            fragment.add(section, _reference(index, run.length, bodies[index].role, run.first, run.last))
            entries.extend(MessageEntry(start, start, source) for source in run.sources)
            index += run.length
        else:
            body = bodies[index]
            fragment.add(section, f"[{index + 1}] {body.role}", *body.lines)
            if body.value_key is not None:
                fragment.anchor(BlockAnchor(body.value_key, body.value_length), start + 1 + body.value_start)
            end = len(fragment) - 1 if len(body.lines) > 1 else start
            entries.append(MessageEntry(start, end))
            index += 1
        if index < len(bodies):
            fragment.add(section, "", SEPARATOR)
    if registry is not None and entries:
        fragment.anchor(MessagesAnchor(keys=keys, entries=tuple(entries)), offset=0)
    return fragment


def is_message_list(value: Any) -> bool:
    """The original's test for "this state is a conversation": a list whose first item has role or content."""
    return (
        isinstance(value, list)
        and len(value) > 0
        and isinstance(value[0], Mapping)
        and ("role" in value[0] or "content" in value[0])
    )


def render_input(ai_input: Any, ctx: RenderContext, section: str = "input") -> Fragment:
    """``INPUT:`` then a string as-is or a message list; anything else is labelled ``[Unparsed ...]``."""
    fragment = Fragment()
    if not ai_input:
        return fragment
    fragment.add(section, "", "INPUT:")
    if isinstance(ai_input, str):
        fragment.add(section, "")
        fragment.append(ctx.value_block(section, ai_input))
    elif isinstance(ai_input, list):
        fragment.append(render_messages(ai_input, ctx, section))
    elif (
        isinstance(ai_input, Mapping) and isinstance(ai_input.get("messages"), list) and ai_input["messages"]
    ):
        fragment.append(render_messages(ai_input["messages"], ctx, section))
    elif isinstance(ai_input, Mapping) and ("role" in ai_input or "content" in ai_input):
        fragment.append(render_messages([ai_input], ctx, section))
    else:
        # Unlike the original (500 chars), the whole value is kept: it is all the model gets of this input.
        label, _ = unparsed("input format", ai_input)
        fragment.add(section, "", label)
        fragment.append(ctx.value_block(section, ctx.dumps(ai_input)))
    return fragment


def _output_messages(choices: Any) -> list[dict[str, Any]]:
    """Assistant messages from output choices: a list, ``{choices: [...]}``, or a single message (ours)."""
    if isinstance(choices, Mapping):
        if isinstance(choices.get("choices"), list):
            choices = choices["choices"]
        elif "role" in choices or "content" in choices or "message" in choices:
            choices = [choices]
    if not (choices and isinstance(choices, list)):
        return []
    messages: list[dict[str, Any]] = []
    for choice in choices:
        if isinstance(choice, str):
            messages.append({"role": "assistant", "content": choice, "tool_calls": []})
            continue
        if not isinstance(choice, Mapping):
            continue
        message = choice.get("message")
        if not message or not isinstance(message, Mapping):
            if "role" in choice or "content" in choice or "parts" in choice:
                message = choice
            else:
                continue
        normalized = message_from(message, default_role="assistant")
        messages.append(
            {
                "role": message.get("role", "assistant"),
                "content": normalized.content,
                "tool_calls": normalized.tool_calls,
            }
        )
    return messages


def render_output(
    ai_output: Any, ai_output_choices: Any, ctx: RenderContext, section: str = "output"
) -> Fragment:
    """``OUTPUT:`` then a string ``$ai_output``, else the messages of ``$ai_output_choices``.

    Ours: when there are no choices, a non-string ``$ai_output`` is rendered too instead of being dropped.
    """
    fragment = Fragment()
    if ai_output and isinstance(ai_output, str):
        fragment.add(section, "", "OUTPUT:", "")
        fragment.append(ctx.value_block(section, ai_output))
        return fragment
    messages = _output_messages(ai_output_choices) or _output_messages(ai_output)
    if messages:
        fragment.add(section, "", "OUTPUT:")
        fragment.append(render_messages(messages, ctx, section))
        return fragment
    # A structured output, or choices of no known shape: shown as JSON rather than dropped.
    leftover = ai_output or ai_output_choices
    if leftover:
        fragment.add(section, "", "OUTPUT:", "")
        fragment.append(ctx.value_block(section, ctx.dumps(leftover, indent=2)))
    return fragment
