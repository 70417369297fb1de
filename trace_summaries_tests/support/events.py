"""Hand-built events for tests that need exact control of timestamps, sizes and ids."""

from __future__ import annotations

import json
import uuid as uuid_lib
from datetime import datetime
from typing import Any

from trace_summaries.store import EventRow

_NAMESPACE = uuid_lib.UUID("6f1c2d0e-7d7b-4a53-9d5a-2d0c1f0b9e11")


def ai_event(
    team_id: int,
    trace_id: str,
    timestamp: datetime,
    *,
    event: str = "$ai_generation",
    index: int = 0,
    raw_properties: str | None = None,
    **properties: Any,
) -> EventRow:
    """An event with a deterministic uuid, so tests can name the rows they expect back."""
    props = {"$ai_trace_id": trace_id, **properties}
    return EventRow(
        uuid=str(uuid_lib.uuid5(_NAMESPACE, f"{team_id}/{trace_id}/{event}/{index}/{timestamp.isoformat()}")),
        event=event,
        properties=raw_properties if raw_properties is not None else json.dumps(props),
        timestamp=timestamp,
        team_id=team_id,
        distinct_id=f"user-{team_id}",
    )
