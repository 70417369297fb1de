"""Semantic search over a team's trace summaries: embed the query, rank stored summaries by cosine distance.

The original embedded the query through the Kafka worker and polled for the result; here the query is
embedded directly with the same model the summaries were embedded with (as a query, for models that tell
queries from documents), which gives the vector without a round trip through the topic. What a person needs
to judge a hit comes from the stored row itself, with no join with the summary events: the title and the
first bullet from ``content`` (``embedding_content``'s "Title: ..." line and "Summary:" list), the window from
``rendering`` (the batch run id names the window's start) and ``timestamp`` (the window's end).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources

from trace_summaries.queue.request import PRODUCT, document_type_for_mode, parse_embedding_content
from trace_summaries.store import TraceStore
from trace_summaries.worker.document_embeddings import ensure_embeddings_table
from trace_summaries.worker.embedder import Embedder
from trace_summaries.worker.embedding_model import EmbeddingModel

DEFAULT_SEARCH_LIMIT = 10
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class SearchHit:
    trace_id: str
    title: str
    first_bullet: str
    distance: float
    document_type: str
    rendering: str
    window_start: datetime | None
    window_end: datetime

    def as_json(self, rank: int) -> dict[str, object]:
        return {
            "rank": rank,
            "distance": self.distance,
            "window_start": self.window_start.isoformat() if self.window_start else None,
            "window_end": self.window_end.isoformat(),
            "trace_id": self.trace_id,
            "title": self.title,
            "first_bullet": self.first_bullet,
            "document_type": self.document_type,
            "rendering": self.rendering,
        }


def title_from_content(content: str) -> str:
    """The summary title, i.e. the ``Title: `` line that ``embedding_content`` writes first."""
    return parse_embedding_content(content).title


def first_bullet_from_content(content: str) -> str:
    """The first item of the ``Summary:`` list that ``embedding_content`` writes, without its dash."""
    bullets = parse_embedding_content(content).bullets
    return bullets[0] if bullets else ""


def window_start_from_rendering(rendering: str) -> datetime | None:
    """The window start a batch run id names (``{team}_{start}`` or ``{team}_{start}_{end}``), if it does."""
    parts = rendering.split("_")
    if len(parts) < 2:
        return None
    try:
        start = datetime.fromisoformat(parts[1])
    except ValueError:
        return None
    return start if start.tzinfo else start.replace(tzinfo=UTC)


def search_similar_traces(
    store: TraceStore,
    embedder: Embedder,
    *,
    team_id: int,
    query: str,
    model: str,
    mode: str | None = None,
    limit: int = DEFAULT_SEARCH_LIMIT,
    hours: float | None = None,
    now: datetime | None = None,
) -> list[SearchHit]:
    """The ``limit`` summaries of ``team_id`` nearest to ``query`` among those embedded with ``model`` (all
    modes unless ``mode`` is given; with ``hours``, only windows that ended in the last ``hours``)."""
    if not query.strip():
        raise ValueError("the search query is empty")
    if limit < 1:
        raise ValueError("limit must be at least 1")
    if hours is not None and not hours > 0:
        raise ValueError("hours must be a positive number")
    since = _EPOCH if hours is None else (now or datetime.now(UTC)) - timedelta(hours=hours)
    embedding_model = EmbeddingModel.parse(model)
    # Embed before opening the session: the embedded store's lock must not wait on the model.
    query_vector = embedder.embed(embedding_model, [query], query=True)[0]
    ensure_embeddings_table(store)
    sql = resources.files("trace_summaries.worker").joinpath("sql", "search_nearest.sql").read_text()
    parameters = {
        "query_vector": [float(x) for x in query_vector],
        "team_id": team_id,
        "product": PRODUCT,
        "model_name": embedding_model.name,
        "document_type_prefix": document_type_for_mode(""),
        "document_type": document_type_for_mode(mode) if mode else "",
        "since": since.astimezone(UTC).replace(tzinfo=None),
        "limit": limit,
    }
    with store.session() as client:
        rows = client.query(sql, parameters=parameters).named_results()
        return [
            SearchHit(
                trace_id=row["document_id"],
                title=title_from_content(row["content"]),
                first_bullet=first_bullet_from_content(row["content"]),
                distance=float(row["distance"]),
                document_type=row["document_type"],
                rendering=row["rendering"],
                window_start=window_start_from_rendering(row["rendering"]),
                window_end=_utc(row["timestamp"]),
            )
            for row in rows
        ]


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
