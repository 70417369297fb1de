"""The embedding request contract (original system, section 8) and its content text (section 12, item 11)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pydantic
import pytest

from trace_summaries.config import API_EMBEDDING_MODEL, LOCAL_EMBEDDING_MODEL, SettingError, embedding_models
from trace_summaries.queue.request import (
    EmbeddingRequest,
    SummaryDocument,
    build_embedding_request,
    embedding_content,
    message_key,
)

SUMMARY_TIME = datetime(2026, 11, 3, 10, 15, 30, 123000, tzinfo=UTC)


def summary(**overrides: object) -> SummaryDocument:
    fields: dict[str, object] = {
        "team_id": 7,
        "trace_id": "trace-abc",
        "mode": "detailed",
        "batch_run_id": "7_2026-11-03T11:00:00+00:00",
        "timestamp": SUMMARY_TIME,
        "title": "T",
        "flow_diagram": "",
        "bullets": ["a", "b"],
        "notes": [],
    }
    return SummaryDocument.model_validate({**fields, **overrides})


def test_title_and_bullets_without_flow_or_notes_give_the_original_content() -> None:
    assert embedding_content(summary()) == "Title: T\n\nSummary:\n- a\n- b"


def test_all_four_parts_are_joined_in_order_with_a_blank_line_between_them() -> None:
    doc = summary(flow_diagram="user -> agent\nagent -> tool", notes=["slow tool call"])
    assert embedding_content(doc) == (
        "Title: T\n\nFlow:\nuser -> agent\nagent -> tool\n\nSummary:\n- a\n- b"
        "\n\nInteresting Notes:\n- slow tool call"
    )


def test_empty_parts_and_blank_items_are_omitted() -> None:
    doc = summary(title="  ", flow_diagram="\n", bullets=["", "only"], notes=["  "])
    assert embedding_content(doc) == "\nSummary:\n- only"


def test_request_carries_every_contract_field_derived_from_the_summary() -> None:
    request = build_embedding_request(summary(mode="minimal"), metadata={"source": "test"})
    assert json.loads(request.to_json_bytes()) == {
        "team_id": 7,
        "product": "llm-analytics",
        "document_type": "llm-trace-summary-minimal",
        "rendering": "7_2026-11-03T11:00:00+00:00",
        "document_id": "trace-abc",
        "timestamp": "2026-11-03T10:15:30.123000+00:00",
        "content": "Title: T\n\nSummary:\n- a\n- b",
        "models": ["multilingual-e5-small-384"],
        "metadata": {"source": "test"},
    }


def test_timestamp_is_the_summary_time_in_utc_so_a_rebuild_is_identical() -> None:
    local = SUMMARY_TIME.astimezone(timezone(timedelta(hours=2)))
    first = build_embedding_request(summary(timestamp=local))
    second = build_embedding_request(summary())
    assert first.to_json_bytes() == second.to_json_bytes()
    assert json.loads(first.to_json_bytes())["timestamp"] == SUMMARY_TIME.isoformat()


def test_models_and_empty_metadata_defaults() -> None:
    request = build_embedding_request(summary(), models=["text-embedding-3-small-1536"])
    assert request.models == ["text-embedding-3-small-1536"]
    assert request.metadata == {}


def test_message_key_names_team_document_type_and_document() -> None:
    assert message_key(build_embedding_request(summary())) == "7:llm-trace-summary-detailed:trace-abc"


def test_the_request_model_refuses_unknown_fields_and_naive_timestamps() -> None:
    valid = json.loads(build_embedding_request(summary()).to_json_bytes())
    with pytest.raises(pydantic.ValidationError):
        EmbeddingRequest.model_validate({**valid, "unexpected": 1})
    with pytest.raises(pydantic.ValidationError):
        summary(timestamp=datetime(2026, 11, 3, 10, 0))
    with pytest.raises(pydantic.ValidationError):
        EmbeddingRequest.model_validate({**valid, "models": []})


def test_embedding_models_default_to_the_local_model_and_follow_the_settings() -> None:
    """No key and no setting: the local model, so a laptop or CI embeds with no key; a key: the original's
    API model; the setting wins over both and keeps its order (the first is what search uses)."""
    assert embedding_models({}) == (LOCAL_EMBEDDING_MODEL,) == ("multilingual-e5-small-384",)
    assert embedding_models({"OPENAI_API_KEY": "k"}) == (API_EMBEDDING_MODEL,)
    both = {"OPENAI_API_KEY": "k", "TRACE_SUMMARIES_EMBEDDING_MODELS": " multilingual-e5-small-384, m-8 "}
    assert embedding_models(both) == ("multilingual-e5-small-384", "m-8")
    with pytest.raises(SettingError, match=r"TRACE_SUMMARIES_EMBEDDING_MODELS.*twice"):
        embedding_models({"TRACE_SUMMARIES_EMBEDDING_MODELS": "m-8,m-8"})
