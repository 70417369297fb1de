"""What a clustering run reads and writes in ClickHouse: a team's summary embeddings of the lookback window,
their traces' cost, latency, tokens and errors, the previous day's clusters (for lineage), and its own event.

Items come from ``document_embeddings`` (one per trace: ``FINAL`` and the newest rendering of a document),
of one model (vectors of different models never meet) and one summary mode (the original clusters
``llm-trace-summary-detailed``). A summary's row is stamped with its window's end, so the items of the
lookback ``[start, end)`` are the rows with ``start < timestamp <= end``. Above ``max_items`` the sample is
the items with the smallest ``cityHash64`` of their trace id: deterministic, spread over the window, and
mostly the same traces from one day to the next (which lineage relies on).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from clickhouse_connect.driver.client import Client

from trace_summaries.cluster.algorithm import Item
from trace_summaries.cluster.clusters_event import CLUSTERS_EVENT, ClustersEvent
from trace_summaries.cluster.lineage import PreviousCluster
from trace_summaries.queue.request import PRODUCT, document_type_for_mode, parse_embedding_content
from trace_summaries.store import as_utc
from trace_summaries.store.trace_store import EVENT_COLUMNS

_LOOKBACK = """
FROM document_embeddings FINAL
WHERE team_id = {team_id:Int64}
  AND product = {product:String}
  AND model_name = {model_name:String}
  AND document_type = {document_type:String}
  AND timestamp > {start:DateTime64(3, 'UTC')}
  AND timestamp <= {end:DateTime64(3, 'UTC')}
"""

_ITEMS_SQL = (
    """
SELECT document_id, timestamp, content, embedding
FROM (
    SELECT document_id, timestamp, content, embedding"""
    + _LOOKBACK
    + """    ORDER BY document_id, timestamp DESC, rendering DESC
    LIMIT 1 BY document_id
)
ORDER BY cityHash64(document_id), document_id
LIMIT {max_items:UInt32}
"""
)

_COUNT_SQL = "SELECT uniqExact(document_id)" + _LOOKBACK

# A trace's events lie around its summary's window: from a day before the lookback (a trace that started
# earlier) to a day after (feedback and late events).
_METRICS_SQL = """
SELECT
    ai_trace_id,
    sum(JSONExtractFloat(properties, '$ai_total_cost_usd')) AS cost_usd,
    sum(JSONExtractInt(properties, '$ai_input_tokens')
        + JSONExtractInt(properties, '$ai_output_tokens')) AS tokens,
    max(JSONExtractBool(properties, '$ai_is_error') OR JSONHas(properties, '$ai_error')) AS failed,
    dateDiff('millisecond', min(timestamp), max(timestamp)) / 1000.0 AS latency_s
FROM events
WHERE team_id = {team_id:Int64}
  AND event IN ('$ai_generation', '$ai_span', '$ai_embedding', '$ai_trace')
  AND timestamp >= {start:DateTime64(6, 'UTC')}
  AND timestamp < {end:DateTime64(6, 'UTC')}
  AND ai_trace_id IN {trace_ids:Array(String)}
GROUP BY ai_trace_id
"""

_EVENT_SQL = """
SELECT properties
FROM events
WHERE team_id = {team_id:Int64}
  AND event = {event:String}
  AND timestamp = {timestamp:DateTime64(6, 'UTC')}
ORDER BY uuid
LIMIT 1
"""

_DELETE_SQL = """
DELETE FROM events
WHERE team_id = {team_id:Int64}
  AND event = {event:String}
  AND timestamp = {timestamp:DateTime64(6, 'UTC')}
"""


@dataclass(frozen=True, slots=True)
class TraceMetrics:
    cost_usd: float
    tokens: int
    failed: bool
    latency_s: float


@dataclass(frozen=True, slots=True)
class Lookback:
    """Whose summaries a run clusters: a team's, of one embedding model and mode, in ``(start, end]``."""

    team_id: int
    model_name: str
    mode: str
    start: datetime
    end: datetime

    def parameters(self) -> dict[str, object]:
        return {
            "team_id": self.team_id,
            "product": PRODUCT,
            "model_name": self.model_name,
            "document_type": document_type_for_mode(self.mode),
            "start": as_utc(self.start),
            "end": as_utc(self.end),
        }


def count_items(client: Client, lookback: Lookback) -> int:
    """How many traces of the lookback have an embedded summary (before sampling)."""
    rows = client.query(_COUNT_SQL, parameters=lookback.parameters()).result_rows
    return int(rows[0][0]) if rows else 0


def read_items(client: Client, lookback: Lookback, *, max_items: int) -> list[Item]:
    """The sampled items of the lookback, sorted by trace id: vector, title and the text names are made of."""
    parameters = {**lookback.parameters(), "max_items": max_items}
    items = []
    for trace_id, timestamp, content, embedding in client.query(
        _ITEMS_SQL, parameters=parameters
    ).result_rows:
        parsed = parse_embedding_content(content)
        text = "\n".join([parsed.title, *parsed.bullets, *parsed.notes])
        items.append(
            Item(
                trace_id=trace_id,
                vector=tuple(float(x) for x in embedding),
                title=parsed.title,
                text=text,
                timestamp=as_utc(timestamp),
            )
        )
    return sorted(items, key=lambda item: item.trace_id)


def read_metrics(
    client: Client, *, team_id: int, trace_ids: Sequence[str], start: datetime, end: datetime
) -> dict[str, TraceMetrics]:
    """Cost, tokens, failure and latency of each trace, from its events (traces without events are absent)."""
    if not trace_ids:
        return {}
    parameters = {
        "team_id": team_id,
        "start": as_utc(start) - timedelta(days=1),
        "end": as_utc(end) + timedelta(days=1),
        "trace_ids": list(trace_ids),
    }
    return {
        trace_id: TraceMetrics(float(cost), int(tokens), bool(failed), float(latency))
        for trace_id, cost, tokens, failed, latency in client.query(
            _METRICS_SQL, parameters=parameters
        ).result_rows
    }


@dataclass(frozen=True, slots=True)
class PreviousRun:
    """The previous day's event, as lineage needs it: its clusters and every trace it analyzed."""

    clusters: list[PreviousCluster]
    analyzed: frozenset[str]


def read_previous_run(client: Client, *, team_id: int, window_end: datetime) -> PreviousRun | None:
    """The clusters event of the run whose window ended at ``window_end`` (the previous day), if any."""
    rows = client.query(
        _EVENT_SQL, parameters={"team_id": team_id, "event": CLUSTERS_EVENT, "timestamp": as_utc(window_end)}
    ).result_rows
    if not rows:
        return None
    properties = json.loads(rows[0][0])
    clusters: list[PreviousCluster] = []
    analyzed: set[str] = set()
    for cluster in properties.get("$ai_clusters", []):
        members = frozenset(str(member["trace_id"]) for member in cluster.get("members", []))
        analyzed |= members
        if int(cluster.get("label", -1)) == -1:
            continue
        clusters.append(
            PreviousCluster(
                id=str(cluster["id"]),
                trace_ids=members,
                centroid=tuple(float(x) for x in cluster.get("centroid", [])),
                size=int(cluster.get("size", len(members))),
            )
        )
    return PreviousRun(clusters=clusters, analyzed=frozenset(analyzed))


def replace_clusters_event(
    client: Client, *, team_id: int, window_end: datetime, event: ClustersEvent | None
) -> None:
    """Deletes the day's clusters event and writes ``event`` (None: the day is left without one)."""
    parameters = {"team_id": team_id, "event": CLUSTERS_EVENT, "timestamp": as_utc(window_end)}
    client.command(_DELETE_SQL, parameters=parameters)
    if event is not None:
        client.insert("events", [event.as_row()], column_names=list(EVENT_COLUMNS))
