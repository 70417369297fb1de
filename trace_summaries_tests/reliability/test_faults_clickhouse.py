"""Faults of ClickHouse: unavailable when a run starts, and lost in the middle of the IO manager's write.

The store is the ClickHouse HTTP front (the production client path) over its own chDB process; faults are
switched on the front: ``down`` resets connections without an answer (a crashed server or a network cut),
``match`` limits that to the INSERT of the IO manager's DELETE-then-INSERT, ``delay`` holds the INSERT so
the server can be restarted while it is in flight.

What they prove:
- ClickHouse down at the start: the run retries the connection (``TRACE_SUMMARIES_CLICKHOUSE_CONNECT_*``),
  then fails with a message that says what and where (never the password), records no materialization and
  writes nothing; the next run writes exactly the expected events;
- ClickHouse back within the retry budget: the run does not notice (beyond a warning); waits double after
  each failed attempt, and a failure no retry can fix (bad credentials) is reported at once;
- ClickHouse lost between the DELETE and the INSERT (connection dropped, or the server restarted with the
  INSERT in flight): the run fails instead of reporting success, Dagster does not show the partition as
  materialized by it, and the next run converges to exactly one event per trace.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Literal
from urllib.parse import quote

import dagster as dg
import pytest

from trace_summaries.store import StoreError, TraceStore
from trace_summaries_harness.clickhouse_http import ClickHouseHTTPServer
from trace_summaries_harness.ports import wait_until
from trace_summaries_tests.reliability.fault_support import (
    CLICKHOUSE_PASSWORD,
    CONNECT_ATTEMPTS,
    CONNECT_RETRY_ENV,
    EVENTS_INSERT_MARKER,
    HOUR,
    SUMMARY_DELETE_MARKER,
    Pipeline,
    clickhouse_front,
    fault_cleared,
    fresh_database,
    partition_key,
    partition_status,
    record_outcome,
    seed,
    step_failure_messages,
    summary_rows,
    tally,
)
from trace_summaries_tests.support.expected_traces import summary_count_and_distinct

TEAM = 31
KEY = partition_key(TEAM)
TRACES = 5


@pytest.fixture(scope="module")
def module_front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseHTTPServer]:
    with clickhouse_front(tmp_path_factory.mktemp("faults-clickhouse") / "data") as front:
        yield front


@pytest.fixture
def front(
    module_front: ClickHouseHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ClickHouseHTTPServer]:
    # The runs' ClickHouseResource reads its connect retries from the environment, as in a deployment.
    for name, value in CONNECT_RETRY_ENV.items():
        monkeypatch.setenv(name, value)
    with fault_cleared(module_front) as cleared:
        yield cleared


def pipeline_for(front: ClickHouseHTTPServer, instance: dg.DagsterInstance, tmp_path: Path) -> Pipeline:
    pipeline = Pipeline(instance, fresh_database(front), tmp_path / "intermediate")
    pipeline.register([TEAM])
    return pipeline


def assert_no_password(text: str) -> None:
    for spelling in (CLICKHOUSE_PASSWORD, quote(CLICKHOUSE_PASSWORD, safe="")):
        assert spelling not in text


def test_clickhouse_down_at_the_start_fails_the_run_clearly_after_retries_and_the_next_run_converges(
    front: ClickHouseHTTPServer, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    pipeline = pipeline_for(front, instance, tmp_path)
    expected = seed(pipeline.store, [TEAM], [HOUR], TRACES)
    front.set_fault("down")

    down = pipeline.materialize(KEY)

    attempts = front.fault_state()["applied"]
    front.set_fault("off")
    assert not down.success
    [message] = step_failure_messages(down)
    assert "cannot connect to ClickHouse at http://fault_tester:***@127.0.0.1" in message, message
    assert f"after {CONNECT_ATTEMPTS} attempts" in message and "OperationalError" in message, message
    assert_no_password(message)
    assert attempts >= CONNECT_ATTEMPTS  # the front dropped every attempt's request
    assert down.get_step_failure_events()[0].step_key == "sampled_traces"
    assert not down.get_asset_materialization_events()
    assert summary_count_and_distinct(pipeline.store) == (0, 0)

    again = pipeline.materialize(KEY)

    outcome = tally(pipeline.store, expected)
    record_outcome("clickhouse: down at the start of a run", ran=again.success, events=outcome)
    assert again.success, step_failure_messages(again)
    assert outcome.exact, outcome


def test_connect_retries_back_off_on_transient_failures_only(front: ClickHouseHTTPServer) -> None:
    waits: list[float] = []
    store = TraceStore(front.dsn, connect_attempts=4, connect_backoff_s=0.25, sleep=waits.append)
    front.set_fault("down")
    with pytest.raises(StoreError, match="after 4 attempts"):
        store.ensure_schema()
    assert waits == [0.25, 0.5, 1.0]  # doubling after each failed attempt

    waits.clear()
    front.set_fault("off")
    wrong = TraceStore(
        front.dsn.replace(quote(CLICKHOUSE_PASSWORD, safe=""), "wrong"),
        connect_attempts=4,
        connect_backoff_s=0.25,
        sleep=waits.append,
    )
    with pytest.raises(StoreError) as refused:
        wrong.ensure_schema()
    assert waits == [], "bad credentials never get better: no retry"
    assert "AUTHENTICATION_FAILED" in str(refused.value) and "after" not in str(refused.value)


def test_clickhouse_back_within_the_retry_budget_costs_the_run_nothing(
    front: ClickHouseHTTPServer, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    pipeline = pipeline_for(front, instance, tmp_path)
    expected = seed(pipeline.store, [TEAM], [HOUR], TRACES)
    # The next two requests are dropped: the run's first connection attempt (the driver itself replays a
    # read-only request once), whatever it is; the store's retry gets through.
    front.set_fault("down", count=2)

    result = pipeline.materialize(KEY)

    outcome = tally(pipeline.store, expected)
    record_outcome(
        "clickhouse: unreachable briefly at the start of a run", ran=result.success, events=outcome
    )
    state = front.fault_state()
    assert state["applied"] == 2 and state["mode"] == "off", state  # the fault hit, and was used up
    assert result.success, step_failure_messages(result)
    assert outcome.exact, outcome


@pytest.mark.parametrize("loss", ["connection_dropped", "server_restarted"])
def test_clickhouse_lost_between_delete_and_insert_fails_the_run_and_the_next_run_converges(
    front: ClickHouseHTTPServer,
    instance: dg.DagsterInstance,
    tmp_path: Path,
    loss: Literal["connection_dropped", "server_restarted"],
) -> None:
    pipeline = pipeline_for(front, instance, tmp_path)
    expected = seed(pipeline.store, [TEAM], [HOUR], TRACES)
    assert pipeline.materialize(KEY).success  # the partition has its events: the DELETE has work to do
    assert tally(pipeline.store, expected).exact
    statements = [query["query"] for query in front.queries()]
    assert any(s.startswith(EVENTS_INSERT_MARKER) for s in statements), "the write's INSERT is recognised"
    front.clear_queries()

    restarter_errors: list[BaseException] = []
    restarter: threading.Thread | None = None
    if loss == "connection_dropped":
        front.set_fault("down", match=EVENTS_INSERT_MARKER)
    else:
        front.set_fault("delay", match=EVENTS_INSERT_MARKER, seconds=300)

        def restart_with_the_insert_in_flight() -> None:
            try:
                wait_until(lambda: front.fault_state()["held"] == 1, timeout_s=120, what="the held INSERT")
                front.restart()  # SIGTERM: the front exits with the INSERT unanswered, then comes back
            except BaseException as exc:  # reported by the test thread
                restarter_errors.append(exc)

        restarter = threading.Thread(target=restart_with_the_insert_in_flight, daemon=True)
        restarter.start()

    lost = pipeline.materialize(KEY)

    if restarter is not None:
        restarter.join(timeout=120)
        assert not restarter_errors, restarter_errors
    else:
        # The DELETE ran; every INSERT (the driver replays one once) was cut off unanswered.
        delete, *inserts = [q for q in front.queries() if q["query"].startswith(("DELETE", "INSERT"))]
        assert delete["query"].startswith(SUMMARY_DELETE_MARKER) and delete["error_code"] is None
        assert inserts and all(insert.get("fault") == "down" for insert in inserts), inserts
    front.set_fault("off")
    assert not lost.success, "a lost write must fail the run"
    messages = step_failure_messages(lost)
    assert len(messages) == 1 and "query to ClickHouse at http://fault_tester:***@" in messages[0], messages
    assert_no_password(messages[0])
    assert lost.get_step_failure_events()[0].step_key == "trace_summaries"
    assert {event.asset_key.path[-1] for event in lost.get_asset_materialization_events()} == {
        "sampled_traces"
    }
    # Half-written (the DELETE ran, the INSERT did not), and Dagster says the last attempt failed.
    assert summary_rows(pipeline.store, [TEAM]) == []
    assert "failed" in partition_status(instance, "trace_summaries", KEY)

    again = pipeline.materialize(KEY)

    outcome = tally(pipeline.store, expected)
    record_outcome(
        f"clickhouse: lost between DELETE and INSERT ({loss.replace('_', ' ')})",
        ran=again.success,
        events=outcome,
    )
    assert again.success, step_failure_messages(again)
    assert outcome.exact, outcome
    assert summary_count_and_distinct(pipeline.store) == (TRACES, TRACES)
    assert partition_status(instance, "trace_summaries", KEY) == {"materialized"}
