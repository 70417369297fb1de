"""Shared fixtures: real engines on temporary directories and free loopback ports."""

from __future__ import annotations

import gc
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

# Partitions are declared at import; tests use fixed hours in November 2026.
os.environ.setdefault("TRACE_SUMMARIES_START_DATE", "2026-11-01")
# Reliability tests record what they injected and what survived; the table is printed at the end. Set
# before any test (and any subprocess it starts) runs, so every process appends to the same file.
os.environ.setdefault(
    "TRACE_SUMMARIES_RELIABILITY_LEDGER", os.path.join(tempfile.mkdtemp(prefix="ts-ledger-"), "ledger.jsonl")
)

import dagster as dg
import pytest
from dagster._core.storage.defs_state.base import DefsStateStorage

from trace_summaries.store import TraceStore
from trace_summaries_harness.clickhouse_http import ClickHouseHTTPServer, clickhouse_http_server

pytest_plugins = ["trace_summaries_tests.support.fixtures_llm"]

HTTP_PASSWORD = "ch-test-password"


@pytest.fixture(scope="session")
def clickhouse_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseHTTPServer]:
    """One ClickHouse HTTP front (over its own chDB process) for the session; tests get their own database."""
    with clickhouse_http_server(
        tmp_path_factory.mktemp("clickhouse-http"), user="trace_summaries", password=HTTP_PASSWORD
    ) as server:
        yield server


@pytest.fixture(params=["chdb", "http"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> TraceStore:
    """A fresh, empty trace store on each ClickHouse path: embedded chDB, and the HTTP interface."""
    if request.param == "chdb":
        trace_store = TraceStore(f"chdb://{tmp_path / 'clickhouse'}")
    else:
        server: ClickHouseHTTPServer = request.getfixturevalue("clickhouse_http")
        database = f"test_{uuid.uuid4().hex[:12]}"
        with TraceStore(server.dsn).session() as client:
            client.command(f"CREATE DATABASE {database}")
        trace_store = TraceStore(server.dsn.removesuffix("/default") + f"/{database}")
    trace_store.ensure_schema()
    return trace_store


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """A real (sqlite-backed, on disk) Dagster instance, not an ephemeral one."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    # Telemetry off, as in the project's dagster.yaml: tests reach nothing beyond 127.0.0.1.
    overrides = {"telemetry": {"enabled": False}}
    with dg.DagsterInstance.local_temp(str(home), overrides=overrides) as dagster_instance:
        yield dagster_instance
    _assert_no_dagster_instance_left_current()


def _assert_no_dagster_instance_left_current() -> None:
    """A Dagster instance entered and never exited stays current for Dagster after its test.

    ``dg.build_schedule_context(instance=...)`` enters a second instance from the first one's ref; left
    open, its context is finalized whenever the collector runs, and then makes the dead instance current
    again. Definitions built later load through it and fail at random ("Attempted to resolve undefined
    DagsterInstance weakref"). Collect now and fail the test that leaked it, not the one that runs when the
    collector does: contexts built with ``dg.build_*_context`` must be closed (``with``) in the test.
    Checked where a test's instances come from (this fixture): a collection per test costs ~0.2 s.
    """
    gc.collect()
    assert DefsStateStorage.get() is None, "a Dagster instance entered in this test was never exited"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The reliability table: faults injected and survived, bad inputs tried, events lost, duplicates."""
    from trace_summaries_tests.reliability import ledger

    table = ledger.totals(list(ledger.read()))
    if not table:
        return
    terminalreporter.section("reliability")
    terminalreporter.write_line(
        f"{'category':<12} {'tried':>7} {'survived':>9} {'lost':>6} {'duplicates':>11}"
    )
    for category, row in sorted(table.items()):
        terminalreporter.write_line(
            f"{category:<12} {row['tried']:>7} {row['survived']:>9} {row['lost']:>6} {row['duplicates']:>11}"
        )
