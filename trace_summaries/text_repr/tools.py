"""The tools offered to a generation: one signature and the first sentence of its description per tool.

Accepts the OpenAI (``{type: function, function: {...}}``), Anthropic (``{name, input_schema}``), Gemini
(``{functionDeclarations: [...]}``) and dict-of-tools shapes, like the original. Lists longer than the
collapse threshold become one ``[+] AVAILABLE TOOLS: N`` line, as in the original.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from trace_summaries.text_repr.anchors import ToolsAnchor
from trace_summaries.text_repr.context import RenderContext
from trace_summaries.text_repr.lines import Cited, Fragment, RefLine, text_lines
from trace_summaries.text_repr.values import as_text, canonical_json, dumps, one_line_text

SECTION = "tools"
_DECLARATION_KEYS = ("functionDeclarations", "function_declarations")


def _declarations(tool: Any) -> list[Any]:
    """The tools one entry stands for: a Gemini wrapper holds several, anything else is one."""
    if isinstance(tool, Mapping):
        for key in _DECLARATION_KEYS:
            if isinstance(tool.get(key), list):
                return list(tool[key])
    return [tool]


def _tool_entries(ai_tools: Any) -> list[Any]:
    """The entries of ``$ai_tools``: a list, a dict of tools by name, or a single tool (ours)."""
    if isinstance(ai_tools, str):
        try:
            ai_tools = json.loads(ai_tools)
        except (ValueError, RecursionError):
            return []
    if isinstance(ai_tools, list):
        return ai_tools
    if isinstance(ai_tools, Mapping):
        looks_like_one_tool = (
            "function" in ai_tools
            or any(key in ai_tools for key in _DECLARATION_KEYS)
            or (
                "name" in ai_tools
                and ("description" in ai_tools or "parameters" in ai_tools or "input_schema" in ai_tools)
            )
        )
        return [ai_tools] if looks_like_one_tool else list(ai_tools.values())
    return []


def _param_type(info: Mapping[str, Any]) -> str:
    kind = info.get("type", "any")
    if isinstance(kind, list):
        return "|".join(one_line_text(item) for item in kind)
    return one_line_text(kind)


def _first_sentence(description: str) -> str:
    sentence = description.split("\n")[0].split(". ")[0]
    return sentence if sentence.endswith(".") else f"{sentence}."


def tool_lines(tool: Mapping[str, Any]) -> list[str]:
    """``  name(p: type, q?: type)`` then ``    First sentence.``, preceded by a blank line."""
    function = tool.get("function")
    if isinstance(function, Mapping):
        name: Any = function.get("name", "unknown")
        description: Any = function.get("description", "N/A")
        schema: Any = function.get("parameters")
    elif "name" in tool:
        name = tool["name"]
        description = tool.get("description", "N/A")
        schema = tool.get("input_schema") or tool.get("inputSchema") or tool.get("parameters")
    else:
        name = tool.get("type", "UNKNOWN")
        description = dumps(tool)[:100]
        schema = None

    params: list[str] = []
    if isinstance(schema, Mapping) and isinstance(schema.get("properties"), Mapping):
        required = schema.get("required", [])
        required = required if isinstance(required, list | tuple) else []
        for param, info in schema["properties"].items():
            if not isinstance(info, Mapping):
                continue
            marker = "" if param in required else "?"
            params.append(f"{one_line_text(param)}{marker}: {_param_type(info)}")
    lines = ["", f"  {one_line_text(name)}({', '.join(params)})"]
    if description and description != "N/A":
        lines.extend(text_lines(f"    {_first_sentence(as_text(description))}"))
    return lines


def render_tools(ai_tools: Any, ctx: RenderContext) -> Fragment:
    """``AVAILABLE TOOLS: N`` and the signatures, or the collapsed line, or (dedupe) a reference."""
    fragment = Fragment()
    if not ai_tools:
        return fragment
    tools = [declaration for entry in _tool_entries(ai_tools) for declaration in _declarations(entry)]
    if not tools:
        return fragment

    threshold = ctx.options.tools_collapse_threshold
    collapsed = threshold is not None and len(tools) > threshold
    title = f"[+] AVAILABLE TOOLS: {len(tools)}" if collapsed else f"AVAILABLE TOOLS: {len(tools)}"
    fragment.add(SECTION, "")

    if ctx.registry is not None:
        key = canonical_json(ai_tools)
        placed = ctx.registry.tools.get(key)
        if placed is not None:
            fragment.add(SECTION, RefLine((f"{title} (same tools as ", Cited(placed, placed), ")")))
            return fragment
        fragment.anchor(ToolsAnchor(key=key))

    fragment.add(SECTION, title)
    if collapsed:
        return fragment
    lines = [line for tool in tools if isinstance(tool, Mapping) for line in tool_lines(tool)]
    # The original appended the joined tool text as one more line, so no dict tool means one blank line.
    fragment.add(SECTION, *(lines or [""]))
    return fragment
