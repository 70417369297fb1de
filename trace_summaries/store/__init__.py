"""The trace store: one ClickHouse API over an embedded chDB directory or an HTTP(S) server."""

from trace_summaries.store.trace_store import EVENT_COLUMNS, EventRow, StoreError, TraceStore, as_utc

__all__ = ["EVENT_COLUMNS", "EventRow", "StoreError", "TraceStore", "as_utc"]
