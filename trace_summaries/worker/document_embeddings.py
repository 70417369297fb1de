"""The ``document_embeddings`` table: its DDL and how the worker writes to it.

Rows are written with the session held only for the insert: on the embedded engine a session holds the
directory lock that every other process (Dagster runs, the CLI) waits on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass
from datetime import datetime
from importlib import resources

from trace_summaries.store import TraceStore

TABLE = "document_embeddings"
_DDL_FILE = "document_embeddings.sql"


def embeddings_table_ddl() -> str:
    return resources.files("trace_summaries.worker").joinpath("sql", _DDL_FILE).read_text()


def ensure_embeddings_table(store: TraceStore) -> None:
    """Creates the table if missing (idempotent; the same DDL runs on chDB and on a ClickHouse server)."""
    with store.session() as client:
        client.command(embeddings_table_ddl())


@dataclass(frozen=True, slots=True)
class EmbeddingRow:
    """One stored embedding; ``inserted_at`` is left to the table's default (the replacing version)."""

    team_id: int
    product: str
    document_type: str
    model_name: str
    rendering: str
    document_id: str
    timestamp: datetime
    content: str
    embedding: list[float]


_COLUMNS = [
    "team_id",
    "product",
    "document_type",
    "model_name",
    "rendering",
    "document_id",
    "timestamp",
    "content",
    "embedding",
]


def insert_embeddings(store: TraceStore, rows: Sequence[EmbeddingRow]) -> int:
    """Inserts the rows in one block; returns how many were written."""
    if not rows:
        return 0
    with store.session() as client:
        client.insert(TABLE, [astuple(row) for row in rows], column_names=_COLUMNS)
    return len(rows)
