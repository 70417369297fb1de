"""Shared fixtures: real engines on temporary directories and free loopback ports; the suite's clean
environment; the reliability ledger's hooks and table."""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

# Before anything of ours is imported (the partition set is declared at import): the shell's settings of
# ours and of the services we talk to are cleared, and what the tests need is set outright.
from trace_summaries_tests.support import environment

environment.apply()

import dagster as dg
import pytest
from dagster._core.storage.defs_state.base import DefsStateStorage

from trace_summaries.store import TraceStore
from trace_summaries_harness.clickhouse_http import ClickHouseHTTPServer, clickhouse_http_server
from trace_summaries_tests.reliability import ledger

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


@pytest.fixture(scope="session", autouse=True)
def clean_environment() -> Iterator[None]:
    """The session runs in the clean environment (``support/environment.py``), restored if a test leaked a
    change of its own, and the shell's environment is back afterwards."""
    before = environment.apply()
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(before)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Commits the reliability rows a test recorded, with the test's outcome (not before its asserts)."""
    report: pytest.TestReport = yield
    if report.when == "call":
        ledger.commit(item.nodeid, report.outcome)
    elif report.when == "setup" and not report.passed:
        ledger.discard()
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A row with anything lost or duplicated fails the run, whatever its test asserted; the rows are kept
    in the run's base temp directory."""
    rows = ledger.committed()
    if rows:
        ledger.write(rows, session.config._tmp_path_factory.getbasetemp() / "reliability-ledger.jsonl")  # type: ignore[attr-defined]
    if ledger.failures(rows) and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The reliability table: per category, what was tried, what survived, lost and duplicated, and how it
    was observed."""
    rows = ledger.committed()
    if not rows:
        return
    terminalreporter.section("reliability")
    for line in ledger.table_lines(rows):
        terminalreporter.write_line(line)
