"""Fixtures shared by the reliability tests (suite-wide ones: ``trace_summaries_tests/conftest.py``)."""

from __future__ import annotations

import uuid

import pytest

from trace_summaries.store import TraceStore
from trace_summaries_harness.clickhouse_http import ClickHouseHTTPServer


@pytest.fixture
def http_store(clickhouse_http: ClickHouseHTTPServer) -> TraceStore:
    """A fresh, empty database on the session's ClickHouse HTTP front, whose ``queries()`` log records every
    statement (and its bound parameters) that the pipeline sends."""
    database = f"test_{uuid.uuid4().hex[:12]}"
    with TraceStore(clickhouse_http.dsn).session() as client:
        client.command(f"CREATE DATABASE {database}")
    trace_store = TraceStore(clickhouse_http.dsn.removesuffix("/default") + f"/{database}")
    trace_store.ensure_schema()
    return trace_store
