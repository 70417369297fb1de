"""The `$ai_trace_clusters` event: one per (team, day), the original's contract plus lineage.

Everything is derived from the partition, so re-materializing a day rebuilds the same event: the uuid from
(team, level, day), the timestamp and ``$ai_clustering_run_id`` from the lookback window's end
(``<team>_trace_<YYYYMMDD>_<HHMMSS>``, as the original names its runs, with the window end for the time the
original took from the clock).
"""

from __future__ import annotations

import json
import uuid as uuid_lib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

CLUSTERS_EVENT = "$ai_trace_clusters"
CLUSTERING_LEVEL = "trace"
_NAMESPACE = uuid_lib.UUID("5d0c1f6e-8a7b-4c2d-9e3f-1a2b3c4d5e6f")
# Centroids travel in the event for tomorrow's lineage; six decimals keep cosine similarities exact to ~1e-6
# at a third of the JSON of full floats.
_CENTROID_DIGITS = 6


def clustering_run_id(team_id: int, window_end: datetime) -> str:
    return f"{team_id}_{CLUSTERING_LEVEL}_{window_end:%Y%m%d}_{window_end:%H%M%S}"


def clusters_event_uuid(team_id: int, day: date) -> str:
    return str(uuid_lib.uuid5(_NAMESPACE, json.dumps([team_id, CLUSTERING_LEVEL, day.isoformat()])))


def clusters_distinct_id(team_id: int) -> str:
    return f"trace_clusters_{team_id}"


@dataclass(frozen=True, slots=True)
class ClustersEvent:
    """One row of the events table: ``properties`` is the JSON object the original writes."""

    uuid: str
    team_id: int
    distinct_id: str
    timestamp: datetime
    properties: Mapping[str, Any]

    def properties_json(self) -> str:
        return json.dumps(self.properties, ensure_ascii=False, separators=(",", ":"))

    def as_row(self) -> tuple[str, str, str, datetime, int, str]:
        """In ``EVENT_COLUMNS`` order: uuid, event, properties, timestamp, team_id, distinct_id."""
        return (
            self.uuid,
            CLUSTERS_EVENT,
            self.properties_json(),
            self.timestamp,
            self.team_id,
            self.distinct_id,
        )


def rounded_centroid(centroid: Sequence[float]) -> list[float]:
    return [round(float(x), _CENTROID_DIGITS) for x in centroid]


def build_clusters_event(
    *,
    team_id: int,
    day: date,
    window_start: datetime,
    window_end: datetime,
    total_items: int,
    clusters: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
    gone: Sequence[str] = (),
    split_into: Mapping[str, Sequence[str]] | None = None,
) -> ClustersEvent:
    """The event of one team's day; ``clusters`` are the per-cluster objects (id, size, title, members...)."""
    return ClustersEvent(
        uuid=clusters_event_uuid(team_id, day),
        team_id=team_id,
        distinct_id=clusters_distinct_id(team_id),
        timestamp=window_end,
        properties={
            "$ai_clustering_run_id": clustering_run_id(team_id, window_end),
            "$ai_clustering_level": CLUSTERING_LEVEL,
            "$ai_window_start": window_start.isoformat(),
            "$ai_window_end": window_end.isoformat(),
            "$ai_total_items_analyzed": total_items,
            "$ai_clusters": list(clusters),
            "$ai_clustering_params": dict(params),
            "$ai_clusters_gone": list(gone),
            "$ai_clusters_split_into": {key: list(value) for key, value in (split_into or {}).items()},
        },
    )
