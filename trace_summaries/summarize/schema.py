"""The structured answer a summarizer returns, and the JSON schema the LLM is held to.

The model is the single source of the contract: the ``response_format`` sent to the LLM is generated from it,
and the LLM's answer is validated against it, so the two can never drift apart. ``extra="forbid"`` makes
pydantic emit ``additionalProperties: false``, which OpenAI's strict structured outputs require.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

RESPONSE_SCHEMA_NAME = "summarization_response"


class SummaryItem(BaseModel):
    """One bullet or note: the statement in text, the line that supports it in line_refs."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="One self-contained statement about the trace, without line numbers.")
    line_refs: str = Field(
        description=(
            "The single most relevant line of the trace text, written like 'L45'. "
            "Use an empty string when no single line supports the item."
        )
    )


class SummarizationResponse(BaseModel):
    """A trace summary: a short title, an ASCII flow, bullets of what happened and notes worth a look."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(description="What the trace did or how it ended, in at most 10 words.")
    flow_diagram: str = Field(
        description="Vertical ASCII flow of the main steps, top to bottom with ↓, branches with ├─→ and └─→, "
        "✓ for success and ✗ for failure."
    )
    summary_bullets: list[SummaryItem] = Field(description="What happened, most important first.")
    interesting_notes: list[SummaryItem] = Field(
        description="Errors, user emotion, cost or latency outliers and other surprises; may be empty."
    )


def strict_json_schema() -> dict[str, Any]:
    """The model's JSON schema, checked against the rules of OpenAI strict mode.

    Strict mode rejects a schema unless every object lists all its properties as required and forbids extra
    ones. Pydantic already emits exactly that for this model; the check turns a future optional field (which
    would make the LLM endpoint answer 400 for every trace) into an import-time error instead.
    """
    schema = SummarizationResponse.model_json_schema()
    for name, node in [("SummarizationResponse", schema), *schema.get("$defs", {}).items()]:
        if node.get("type") != "object":
            continue
        properties = set(node.get("properties", {}))
        if node.get("additionalProperties") is not False or set(node.get("required", [])) != properties:
            raise TypeError(f"{name} breaks strict structured outputs: every field must be required")
    return schema


@functools.cache
def response_format() -> dict[str, Any]:
    """The ``response_format`` argument of a chat completion: strict JSON schema output.

    Built once per process: pydantic regenerates the schema on every call, which was paid on every LLM
    call. The dict is shared, so it must not be mutated.
    """
    return {
        "type": "json_schema",
        "json_schema": {"name": RESPONSE_SCHEMA_NAME, "strict": True, "schema": strict_json_schema()},
    }


# Bounds for servers whose structured output is a grammar (llama.cpp, vLLM): a small model that would repeat a
# bullet or one string until the answer's cap must close its JSON within it instead. Sized so the largest
# bounded answer fits in the default cap (config.LLMConfig.max_output_tokens); OpenAI's strict mode does not
# take string lengths, so it gets the unbounded schema.
BOUNDS = {
    "title": {"maxLength": 100},
    "flow_diagram": {"maxLength": 600},
    "summary_bullets": {"maxItems": 10},
    "interesting_notes": {"maxItems": 5},
    "text": {"maxLength": 200},
    "line_refs": {"maxLength": 24},
}


@functools.cache
def bounded_response_format() -> dict[str, Any]:
    """``response_format`` with ``BOUNDS`` on the schema (see there). Shared: must not be mutated."""
    schema = copy.deepcopy(strict_json_schema())
    for node in [schema, *schema.get("$defs", {}).values()]:
        for name, prop in node.get("properties", {}).items():
            prop.update(BOUNDS.get(name, {}))
    return {
        "type": "json_schema",
        "json_schema": {"name": RESPONSE_SCHEMA_NAME, "strict": True, "schema": schema},
    }


class SummaryContentError(ValueError):
    """The LLM's answer is not a summary; ``reason`` says how (one of the retried-once failure reasons)."""

    def __init__(self, reason: Literal["invalid_json", "schema_violation", "empty_content"], detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason: Literal["invalid_json", "schema_violation", "empty_content"] = reason


_CODE_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n(.*)\n```\s*$", re.DOTALL)


def parse_summary(content: str | None) -> SummarizationResponse:
    """The summary in an LLM answer, or ``SummaryContentError`` saying why there is none.

    JSON that does not parse and JSON that parses but breaks the schema are told apart: the first points at a
    truncated or non-JSON answer, the second at an endpoint that ignores ``response_format``. A Markdown code
    fence around the JSON is tolerated, since OpenAI-compatible endpoints without strict mode often add one.
    """
    if content is None or not content.strip():
        raise SummaryContentError("empty_content", "the answer has no content")
    fenced = _CODE_FENCE.match(content.strip())
    text = fenced.group(1) if fenced else content
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise SummaryContentError("invalid_json", f"{exc} in {_preview(content)}") from exc
    try:
        return SummarizationResponse.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(root)'}: {error['msg']}"
            for error in exc.errors()[:5]
        )
        raise SummaryContentError("schema_violation", problems) from exc


def _preview(content: str, limit: int = 120) -> str:
    return repr(content if len(content) <= limit else content[:limit] + "…")
