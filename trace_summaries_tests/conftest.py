"""Shared fixtures: real engines on temporary directories and free loopback ports."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

# Partitions are declared at import; tests use fixed hours in November 2026.
os.environ.setdefault("TRACE_SUMMARIES_START_DATE", "2026-11-01")

import dagster as dg
import pytest

from trace_summaries.store import TraceStore


@pytest.fixture
def store(tmp_path: Path) -> TraceStore:
    """A fresh embedded ClickHouse (chDB) store."""
    trace_store = TraceStore(f"chdb://{tmp_path / 'clickhouse'}")
    trace_store.ensure_schema()
    return trace_store


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """A real (sqlite-backed, on disk) Dagster instance, not an ephemeral one."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.DagsterInstance.local_temp(str(home)) as dagster_instance:
        yield dagster_instance
