"""Stage 1, sample: which traces of a (window, team) partition are summarized, with all their events.

``query`` holds the deterministic, size-guarded, capped selection and the batched fetch; ``model`` the
sample every later stage works on and its file format (JSON lines).
"""

from trace_summaries.sample.model import (
    AI_EVENT_TYPES,
    GUARD_EXCLUSIONS,
    TOO_DEEP,
    SampledTrace,
    SamplingConfig,
    SamplingStats,
    TeamHourSample,
    TraceEvent,
    jsonl_lines,
)
from trace_summaries.sample.query import decode_properties, query_scope, sample_team_hour

__all__ = [
    "AI_EVENT_TYPES",
    "GUARD_EXCLUSIONS",
    "TOO_DEEP",
    "SampledTrace",
    "SamplingConfig",
    "SamplingStats",
    "TeamHourSample",
    "TraceEvent",
    "decode_properties",
    "jsonl_lines",
    "query_scope",
    "sample_team_hour",
]
