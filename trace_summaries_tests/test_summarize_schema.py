"""The summary schema: what the LLM is held to, and how its answers are parsed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from trace_summaries.summarize import SummarizationResponse, response_format
from trace_summaries.summarize.schema import SummaryContentError, parse_summary


def _valid() -> dict[str, Any]:
    return {
        "title": "T",
        "flow_diagram": "A\n    ↓\nB",
        "summary_bullets": [{"text": "a", "line_refs": "L1"}],
        "interesting_notes": [],
    }


def test_an_extra_field_is_rejected() -> None:
    with pytest.raises(ValidationError):
        SummarizationResponse.model_validate({**_valid(), "mermaid": "graph TD"})
    with pytest.raises(ValidationError):
        SummarizationResponse.model_validate(
            {**_valid(), "summary_bullets": [{"text": "a", "line_refs": "L1", "confidence": 1}]}
        )


def test_a_note_without_line_refs_and_empty_bullets_are_accepted() -> None:
    summary = SummarizationResponse.model_validate(
        {**_valid(), "summary_bullets": [], "interesting_notes": [{"text": "n", "line_refs": ""}]}
    )
    assert summary.summary_bullets == []
    assert summary.interesting_notes[0].line_refs == ""


@pytest.mark.parametrize("missing", ["title", "flow_diagram", "summary_bullets", "interesting_notes"])
def test_every_field_is_required(missing: str) -> None:
    data = _valid()
    del data[missing]
    with pytest.raises(ValidationError):
        SummarizationResponse.model_validate(data)


def test_the_response_format_is_a_strict_json_schema_generated_from_the_model() -> None:
    fmt = response_format()
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["name"] == "summarization_response"
    schema = fmt["json_schema"]["schema"]
    assert schema == SummarizationResponse.model_json_schema()
    objects = [schema, *schema["$defs"].values()]
    for node in objects:
        assert node["additionalProperties"] is False
        assert set(node["required"]) == set(node["properties"])
    assert set(schema["properties"]) == {"title", "flow_diagram", "summary_bullets", "interesting_notes"}


def test_parsing_tells_empty_invalid_and_off_schema_answers_apart() -> None:
    for content in (None, "", "   \n"):
        with pytest.raises(SummaryContentError) as empty:
            parse_summary(content)
        assert empty.value.reason == "empty_content"
    with pytest.raises(SummaryContentError) as invalid:
        parse_summary('{"title": "cut off')
    assert invalid.value.reason == "invalid_json"
    with pytest.raises(SummaryContentError) as off_schema:
        parse_summary(json.dumps({"title": "x", "summary_bullets": "no"}))
    assert off_schema.value.reason == "schema_violation"
    assert "summary_bullets" in str(off_schema.value)


def test_parsing_tolerates_a_markdown_code_fence() -> None:
    fenced = "```json\n" + json.dumps(_valid()) + "\n```"
    assert parse_summary(fenced).title == "T"
