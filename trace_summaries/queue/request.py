"""The embedding request: one Kafka message per generated summary (original system, section 8).

The message is a pydantic model with ``extra="forbid"`` so the producer can never send a field the worker
does not know; its JSON comes from the model, not from a hand-built dict. Everything in it is derived from
the summary event, including ``timestamp``, so re-sending the same summary produces the same message and
the same key: downstream deduplication (ReplacingMergeTree on the worker side) relies on that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, field_serializer

from trace_summaries.config import embedding_models

PRODUCT = "llm-analytics"
_DOCUMENT_TYPE_PREFIX = "llm-trace-summary-"


def document_type_for_mode(mode: str) -> str:
    """``llm-trace-summary-{mode}``: the later naming of the original, which clustering reads by mode."""
    return f"{_DOCUMENT_TYPE_PREFIX}{mode}"


class SummaryDocument(BaseModel):
    """What the request builder needs from one ``$ai_trace_summary`` event (the asset maps events to this).

    ``bullets`` and ``notes`` are plain text: line references are dropped before they get here, because
    they point into a rendering of the trace that the embedding model never sees.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    team_id: int
    trace_id: str = Field(min_length=1)
    mode: str = Field(min_length=1)
    batch_run_id: str = Field(min_length=1)
    timestamp: AwareDatetime
    title: str = ""
    flow_diagram: str = ""
    bullets: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class EmbeddingRequest(BaseModel):
    """The JSON message on ``document_embeddings_input``, field for field as the original producer sent it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    team_id: int
    product: str = PRODUCT
    document_type: str = Field(min_length=1)
    rendering: str = Field(min_length=1)
    document_id: str = Field(min_length=1)
    timestamp: AwareDatetime
    content: str
    models: list[str] = Field(min_length=1)
    metadata: dict[str, JsonValue] = Field(default_factory=dict)

    @field_serializer("timestamp")
    def _timestamp_isoformat(self, value: AwareDatetime) -> str:
        # Python's isoformat in UTC ("+00:00"), as the original wrote it, rather than pydantic's "Z".
        return value.astimezone(UTC).isoformat()

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json().encode()


def _bullet_list(items: Sequence[str]) -> str:
    return "\n".join(f"- {item.strip()}" for item in items if item.strip())


def embedding_content(doc: SummaryDocument) -> str:
    """The text that gets embedded: Title / Flow / Summary / Interesting Notes, empty parts omitted.

    Parts are joined by a newline and every part after the title starts with one, which gives the blank
    line between sections: title "T", no flow, bullets a and b -> ``"Title: T\\n\\nSummary:\\n- a\\n- b"``.
    """
    parts: list[str] = []
    if doc.title.strip():
        parts.append(f"Title: {doc.title.strip()}")
    if doc.flow_diagram.strip():
        parts.append(f"\nFlow:\n{doc.flow_diagram.strip()}")
    if bullets := _bullet_list(doc.bullets):
        parts.append(f"\nSummary:\n{bullets}")
    if notes := _bullet_list(doc.notes):
        parts.append(f"\nInteresting Notes:\n{notes}")
    return "\n".join(parts)


@dataclass(frozen=True, slots=True)
class EmbeddedContent:
    """What ``embedding_content`` wrote, read back from a stored row: its title and its two lists."""

    title: str
    bullets: tuple[str, ...]
    notes: tuple[str, ...]


_SECTIONS = {"Summary:": "bullets", "Interesting Notes:": "notes", "Flow:": "flow"}


def parse_embedding_content(content: str) -> EmbeddedContent:
    """The inverse of ``embedding_content`` for the parts a reader needs (the flow diagram is skipped)."""
    title = ""
    lists: dict[str, list[str]] = {"bullets": [], "notes": [], "flow": []}
    section: str | None = None
    for line in content.splitlines():
        if section is None and line.startswith("Title: ") and not title:
            title = line.removeprefix("Title: ").strip()
        elif line.strip() in _SECTIONS:
            section = _SECTIONS[line.strip()]
        elif section in ("bullets", "notes") and line.startswith("- "):
            lists[section].append(line.removeprefix("- ").strip())
    return EmbeddedContent(title, tuple(lists["bullets"]), tuple(lists["notes"]))


def build_embedding_request(
    doc: SummaryDocument,
    *,
    models: Sequence[str] | None = None,
    metadata: Mapping[str, JsonValue] | None = None,
) -> EmbeddingRequest:
    """One request per summary; ``rendering`` is the batch run so each run's embeddings stay apart.

    ``models`` unset: the configured ones (``config.embedding_models``: the local model unless an API key or
    ``TRACE_SUMMARIES_EMBEDDING_MODELS`` says otherwise)."""
    return EmbeddingRequest(
        team_id=doc.team_id,
        product=PRODUCT,
        document_type=document_type_for_mode(doc.mode),
        rendering=doc.batch_run_id,
        document_id=doc.trace_id,
        timestamp=doc.timestamp,
        content=embedding_content(doc),
        models=list(embedding_models() if models is None else models),
        metadata=dict(metadata or {}),
    )


def message_key(request: EmbeddingRequest) -> str:
    """``{team_id}:{document_type}:{document_id}``: one key per document, so a re-run lands on the same
    partition in the same order and consumers (or compaction) can tell a re-send from a new document."""
    return f"{request.team_id}:{request.document_type}:{request.document_id}"
