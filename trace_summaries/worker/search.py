"""Semantic search over a team's trace summaries: embed the query, rank stored summaries by cosine distance.

The original embedded the query through the Kafka worker and polled for the result; here the query is
embedded directly with the same model the summaries were embedded with, which gives the same vector
without a round trip through the topic. Titles come from the stored ``content`` ("Title: ..." line), so
search needs no join with the summary events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from importlib import resources

from trace_summaries.queue.request import DEFAULT_EMBEDDING_MODELS, PRODUCT, document_type_for_mode
from trace_summaries.store import TraceStore
from trace_summaries.worker.document_embeddings import ensure_embeddings_table
from trace_summaries.worker.embedder import Embedder
from trace_summaries.worker.embedding_model import EmbeddingModel

DEFAULT_SEARCH_MODEL = DEFAULT_EMBEDDING_MODELS[0]
DEFAULT_SEARCH_LIMIT = 10
_TITLE_PREFIX = "Title: "


@dataclass(frozen=True, slots=True)
class SearchHit:
    trace_id: str
    title: str
    distance: float
    document_type: str
    rendering: str
    timestamp: datetime


def title_from_content(content: str) -> str:
    """The summary title, i.e. the ``Title: `` line that ``embedding_content`` writes first."""
    for line in content.splitlines():
        if line.startswith(_TITLE_PREFIX):
            return line.removeprefix(_TITLE_PREFIX).strip()
    return ""


def search_similar_traces(
    store: TraceStore,
    embedder: Embedder,
    *,
    team_id: int,
    query: str,
    model: str = DEFAULT_SEARCH_MODEL,
    mode: str | None = None,
    limit: int = DEFAULT_SEARCH_LIMIT,
) -> list[SearchHit]:
    """The ``limit`` summaries of ``team_id`` nearest to ``query`` (all modes unless ``mode`` is given)."""
    if not query.strip():
        raise ValueError("the search query is empty")
    if limit < 1:
        raise ValueError("limit must be at least 1")
    embedding_model = EmbeddingModel.parse(model)
    # Embed before opening the session: the embedded store's lock must not wait on HTTP.
    query_vector = embedder.embed(embedding_model, [query])[0]
    ensure_embeddings_table(store)
    sql = resources.files("trace_summaries.worker").joinpath("sql", "search_nearest.sql").read_text()
    parameters = {
        "query_vector": [float(x) for x in query_vector],
        "team_id": team_id,
        "product": PRODUCT,
        "model_name": embedding_model.name,
        "document_type_prefix": document_type_for_mode(""),
        "document_type": document_type_for_mode(mode) if mode else "",
        "limit": limit,
    }
    with store.session() as client:
        rows = client.query(sql, parameters=parameters).named_results()
        return [
            SearchHit(
                trace_id=row["document_id"],
                title=title_from_content(row["content"]),
                distance=float(row["distance"]),
                document_type=row["document_type"],
                rendering=row["rendering"],
                timestamp=row["timestamp"],
            )
            for row in rows
        ]
