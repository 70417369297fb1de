"""The `$ai_trace_summary` event: its contract, and identities that make re-runs converge.

The original stamped each event with a fresh uuid4 and the wall clock, so every re-run added a copy. Here
everything is derived from the partition: ``batch_run_id`` from the team and the window start, the event
uuid from (team, trace, mode, batch_run_id), the timestamp from the window end. Re-materializing a
partition therefore reproduces the same events, and the writer can replace them instead of adding.
"""

from __future__ import annotations

import json
import uuid as uuid_lib
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

SUMMARY_EVENT = "$ai_trace_summary"
# Fixed forever: changing it would change every event id and break idempotent replacement.
SUMMARY_EVENT_NAMESPACE = uuid_lib.UUID("0b6f6a52-3d0e-5c1e-9a53-6a1f4b7c2e10")


def batch_run_id(team_id: int, window_start: datetime, window_end: datetime | None = None) -> str:
    """``{team_id}_{window start ISO-8601}``, e.g. ``1_2025-01-15T12:00:00+00:00``, as in the original, for
    an hour window; any other window names its end too (``1_<start>_<end>``), so a half hour or an explicit
    window never shares event ids with the hour that starts with it."""
    if window_end is None or window_end - window_start == timedelta(hours=1):
        return f"{team_id}_{window_start.isoformat()}"
    return f"{team_id}_{window_start.isoformat()}_{window_end.isoformat()}"


def summary_event_uuid(team_id: int, trace_id: str, mode: str, run_id: str) -> str:
    return str(uuid_lib.uuid5(SUMMARY_EVENT_NAMESPACE, json.dumps([team_id, trace_id, mode, run_id])))


def summary_distinct_id(team_id: int) -> str:
    return f"trace_summary_{team_id}"


def _omit_unset(
    model: BaseModel, handler: SerializerFunctionWrapHandler, fields: frozenset[str]
) -> dict[str, Any]:
    """``model`` serialized without those of ``fields`` that were never set (by name or by alias)."""
    data: dict[str, Any] = handler(model)
    for name in fields - model.model_fields_set:
        data.pop(name, None)
        alias = type(model).model_fields[name].alias
        if alias is not None:
            data.pop(alias, None)
    return data


class SummaryItemProperty(BaseModel):
    """One bullet or note; ``supported`` only when the summary was verified (``verify: true``): True, False,
    or None (null) for an item that could not be checked. Unverified, the key is absent, not null."""

    model_config = ConfigDict(extra="forbid")

    text: str
    line_refs: str
    supported: bool | None = None

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _omit_unset(self, handler, _ITEM_VERIFICATION_FIELDS)


_ITEM_VERIFICATION_FIELDS = frozenset({"supported"})
# The event's verification properties: written only when the summary was verified, so that an event of a
# run without ``verify`` is exactly what it was before verification existed.
VERIFICATION_FIELDS = frozenset(
    {
        "faithfulness",
        "verification_method",
        "verification_input_tokens",
        "verification_output_tokens",
        "verification_cost_usd",
    }
)


class SummaryEventProperties(BaseModel):
    """The event's properties, named as the original names them (section 5) plus what we add."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    trace_id: str = Field(alias="$ai_trace_id")
    batch_run_id: str = Field(alias="$ai_batch_run_id")
    mode: Literal["minimal", "detailed"] = Field(alias="$ai_summary_mode")
    title: str = Field(alias="$ai_summary_title")
    flow_diagram: str = Field(alias="$ai_summary_flow_diagram")
    bullets: list[SummaryItemProperty] = Field(alias="$ai_summary_bullets")
    interesting_notes: list[SummaryItemProperty] = Field(alias="$ai_summary_interesting_notes")
    text_repr_length: int = Field(alias="$ai_text_repr_length")
    # The text was sampled down (to the size limit or the model's context): some lines were left out.
    text_repr_sampled: bool = Field(default=False, alias="$ai_text_repr_sampled")
    event_count: int = Field(alias="$ai_event_count")
    trace_timestamp: str
    model: str = Field(alias="$ai_summary_model")
    provider: str = Field(alias="$ai_summary_provider")
    prompt_version: str = Field(alias="$ai_summary_prompt_version")
    input_tokens: int = Field(alias="$ai_summary_input_tokens")
    output_tokens: int = Field(alias="$ai_summary_output_tokens")
    cached_input_tokens: int = Field(default=0, alias="$ai_summary_cached_input_tokens")
    service_tier: str | None = Field(default=None, alias="$ai_summary_service_tier")
    # None when the model has no known price (a self-hosted model, say).
    cost_usd: float | None = Field(alias="$ai_summary_cost_usd")
    line_refs_invalid: int = Field(default=0, alias="$ai_summary_line_refs_invalid")
    redactions: dict[str, int] = Field(default_factory=dict, alias="$ai_summary_redactions")
    # Quality warnings, never a failure: e.g. an item that repeats the prompt's example text, not the trace.
    warnings: list[str] = Field(default_factory=list, alias="$ai_summary_warnings")
    # Set only with ``verify: true`` (absent otherwise, see VERIFICATION_FIELDS): supported items among the
    # items with a verdict (null when none has one), the check used, and the verification call's own usage
    # (not included in the summary's tokens and cost above; 0 for the lexical check).
    faithfulness: float | None = Field(default=None, alias="$ai_summary_faithfulness")
    verification_method: Literal["lexical", "llm"] | None = Field(
        default=None, alias="$ai_summary_verification_method"
    )
    verification_input_tokens: int = Field(default=0, alias="$ai_summary_verification_input_tokens")
    verification_output_tokens: int = Field(default=0, alias="$ai_summary_verification_output_tokens")
    verification_cost_usd: float | None = Field(default=None, alias="$ai_summary_verification_cost_usd")

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _omit_unset(self, handler, VERIFICATION_FIELDS)


class SummaryEvent(BaseModel):
    """One row of the events table."""

    model_config = ConfigDict(extra="forbid")

    uuid: str
    event: Literal["$ai_trace_summary"] = "$ai_trace_summary"
    team_id: int
    distinct_id: str
    timestamp: datetime
    properties: SummaryEventProperties

    def properties_json(self) -> str:
        return self.properties.model_dump_json(by_alias=True)

    @classmethod
    def from_row(
        cls, uuid: str, team_id: int, distinct_id: str, timestamp: datetime, properties: str
    ) -> SummaryEvent:
        return cls(
            uuid=uuid,
            team_id=team_id,
            distinct_id=distinct_id,
            timestamp=timestamp,
            properties=SummaryEventProperties.model_validate_json(properties),
        )


def build_summary_event(
    *,
    team_id: int,
    window_start: datetime,
    window_end: datetime,
    trace_id: str,
    trace_first_timestamp: datetime,
    properties: dict[str, Any],
) -> SummaryEvent:
    """The event for one summarized trace; ``properties`` holds the summary and its accounting fields."""
    run_id = batch_run_id(team_id, window_start, window_end)
    mode = properties["mode"]
    return SummaryEvent(
        uuid=summary_event_uuid(team_id, trace_id, mode, run_id),
        team_id=team_id,
        distinct_id=summary_distinct_id(team_id),
        timestamp=window_end,
        properties=SummaryEventProperties(
            trace_id=trace_id,
            batch_run_id=run_id,
            trace_timestamp=trace_first_timestamp.isoformat(),
            **properties,
        ),
    )
