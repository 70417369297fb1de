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


# What the pipeline keeps of any answer, whatever schema the endpoint was given (OpenAI's strict mode takes no
# lengths, and a server may ignore the bounds): the items ``BOUNDS`` allows, most important first as the
# schema asks, and strings up to twice their bound, so only an answer far past what was asked is cut.
ANSWER_LIMITS = {
    "title": 2 * BOUNDS["title"]["maxLength"],
    "flow_diagram": 2 * BOUNDS["flow_diagram"]["maxLength"],
    "text": 2 * BOUNDS["text"]["maxLength"],
    "summary_bullets": BOUNDS["summary_bullets"]["maxItems"],
    "interesting_notes": BOUNDS["interesting_notes"]["maxItems"],
}


def bound_summary(summary: SummarizationResponse) -> tuple[SummarizationResponse, list[str]]:
    """The summary within ``ANSWER_LIMITS``, and a warning for each kind of cut (none if nothing was cut).

    An oversized answer is a quality problem, not a failed trace: the extra items go and long strings end
    with "…", and the warnings say so on the event (``$ai_summary_warnings``).
    """
    warnings: list[str] = []
    update: dict[str, object] = {}
    for name in ("title", "flow_diagram"):
        value, limit = getattr(summary, name), ANSWER_LIMITS[name]
        if len(value) > limit:
            update[name] = _cut(value, limit)
            warnings.append(f"{name} cut from {len(value)} to {limit} characters")
    cut_texts = 0
    for name in ("summary_bullets", "interesting_notes"):
        items: list[SummaryItem] = getattr(summary, name)
        limit = ANSWER_LIMITS[name]
        if len(items) > limit:
            warnings.append(f"{name} cut from {len(items)} to {limit} items")
        kept = []
        for item in items[:limit]:
            if len(item.text) > ANSWER_LIMITS["text"]:
                cut_texts += 1
                item = SummaryItem(text=_cut(item.text, ANSWER_LIMITS["text"]), line_refs=item.line_refs)
            kept.append(item)
        if kept != items:
            update[name] = kept
    if cut_texts:
        warnings.append(f"{cut_texts} item texts cut to {ANSWER_LIMITS['text']} characters")
    return (summary.model_copy(update=update) if update else summary), warnings


def _cut(text: str, limit: int) -> str:
    return text[: limit - 1].rstrip() + "…"


class SummaryContentError(ValueError):
    """The LLM's answer is not a summary; ``reason`` says how (one of the retried-once failure reasons)."""

    def __init__(self, reason: Literal["invalid_json", "schema_violation", "empty_content"], detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason: Literal["invalid_json", "schema_violation", "empty_content"] = reason


_CODE_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n(.*)\n```\s*$", re.DOTALL)


def parse_summary(content: str | None) -> SummarizationResponse:
    """The summary in an LLM answer, or ``SummaryContentError`` saying why there is none (see
    ``parse_summary_counting``)."""
    return parse_summary_counting(content)[0]


def parse_summary_counting(content: str | None) -> tuple[SummarizationResponse, int]:
    """The summary in an LLM answer and how many of its items had no ``line_refs``, or ``SummaryContentError``
    saying why there is none.

    JSON that does not parse and JSON that parses but breaks the schema are told apart: the first points at a
    truncated or non-JSON answer, the second at an endpoint that ignores ``response_format``. A Markdown code
    fence around the JSON is tolerated, since OpenAI-compatible endpoints without strict mode often add one.
    So is an item without ``line_refs`` (or with null): such an endpoint's item keeps its text with an empty
    reference, and is counted, rather than costing the whole summary.
    """
    if content is None or not content.strip():
        raise SummaryContentError("empty_content", "the answer has no content")
    fenced = _CODE_FENCE.match(content.strip())
    text = fenced.group(1) if fenced else content
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise SummaryContentError("invalid_json", f"{exc} in {_preview(content)}") from exc
    missing = _fill_missing_refs(data)
    try:
        return SummarizationResponse.model_validate(data), missing
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(root)'}: {error['msg']}"
            for error in exc.errors()[:5]
        )
        raise SummaryContentError("schema_violation", problems) from exc


def _fill_missing_refs(data: Any) -> int:
    """Give every item of ``data`` without ``line_refs`` (or with null) an empty one; how many there were
    among the items ``bound_summary`` keeps (those it cuts away are not counted)."""
    if not isinstance(data, dict):
        return 0
    missing = 0
    for name in ("summary_bullets", "interesting_notes"):
        items = data.get(name)
        for index, item in enumerate(items if isinstance(items, list) else []):
            if isinstance(item, dict) and item.get("line_refs") is None:
                item["line_refs"] = ""
                missing += index < ANSWER_LIMITS[name]
    return missing


def _preview(content: str, limit: int = 120) -> str:
    return repr(content if len(content) <= limit else content[:limit] + "…")
