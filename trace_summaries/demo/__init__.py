"""Deterministic demo and benchmark LLM traces (PostHog ``$ai_*`` events) for the trace store.

``generate_hour`` is pure: it returns the events of one (seed, team, hour) chunk. ``seed_store`` writes chunks
that are not stored yet. ``trace-summaries seed`` (``command.py``) is the command line on top.
"""

from trace_summaries.demo.hours import default_demo_hours, hour_range, parse_hour
from trace_summaries.demo.traces import (
    DEFAULT_OVERSIZED_FRACTION,
    TRACE_KINDS,
    generate_hour,
    hour_trace_kinds,
)
from trace_summaries.demo.writer import (
    DEFAULT_SEED,
    NEIGHBOUR_TEAM_OFFSET,
    SeedReport,
    neighbour_team,
    seed_store,
    to_event_rows,
)

__all__ = [
    "DEFAULT_OVERSIZED_FRACTION",
    "DEFAULT_SEED",
    "NEIGHBOUR_TEAM_OFFSET",
    "TRACE_KINDS",
    "SeedReport",
    "default_demo_hours",
    "generate_hour",
    "hour_range",
    "hour_trace_kinds",
    "neighbour_team",
    "parse_hour",
    "seed_store",
    "to_event_rows",
]
