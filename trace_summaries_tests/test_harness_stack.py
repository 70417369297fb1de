"""Harness tests: the production-like test stack works for real, so later tests can trust it.

* ClickHouse: the unmodified clickhouse-connect HTTP client, through ``TraceStore(http dsn)``, against the
  HTTP front over chDB (its own process): DDL with a MATERIALIZED column, compressed Native inserts,
  server-side parameters of the types the pipeline binds, DELETE, FINAL, DataFrames, errors, credentials,
  faults, restarts, and four writer processes at once.
* PostgreSQL: a real cluster, reached with psycopg2 and by ``dagster instance info`` through the generated
  ``dagster.yaml``.
* S3: moto's server, reached with boto3.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import clickhouse_connect
import pandas as pd
import psycopg2
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from trace_summaries.store import StoreError, TraceStore, as_utc
from trace_summaries_harness.clickhouse_http import ClickHouseHTTPServer, clickhouse_http_server
from trace_summaries_harness.postgres import postgres_server
from trace_summaries_harness.s3 import moto_s3
from trace_summaries_tests.support.environment import child_env
from trace_summaries_tests.support.events import ai_event

pytestmark = pytest.mark.harness

REPO_ROOT = Path(__file__).resolve().parents[1]
# A password that needs URL quoting, so the DSN path of the client is exercised too.
USER, PASSWORD = "trace_writer", "s3cret p@ss:/#"
WINDOW_START = datetime(2026, 11, 3, 10, tzinfo=UTC)


@pytest.fixture(scope="module")
def clickhouse_front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseHTTPServer]:
    """One front for the module: starting it (a Python process that opens chDB) is the slow part."""
    with clickhouse_http_server(tmp_path_factory.mktemp("clickhouse") / "data", USER, PASSWORD) as server:
        yield server


@pytest.fixture
def front(clickhouse_front: ClickHouseHTTPServer) -> Iterator[ClickHouseHTTPServer]:
    """The shared front with no fault and an empty query log, and no fault left behind."""
    clickhouse_front.set_fault("off")
    clickhouse_front.clear_queries()
    yield clickhouse_front
    if clickhouse_front.is_running:
        clickhouse_front.set_fault("off")


def test_trace_store_round_trip_through_the_http_front(front: ClickHouseHTTPServer) -> None:
    store = TraceStore(front.dsn)
    store.ensure_schema()
    rows = [
        ai_event(1, f"trace-{n % 3}", WINDOW_START + timedelta(minutes=n, microseconds=n), index=n, n=n)
        for n in range(30)
    ] + [ai_event(2, "trace-0", WINDOW_START, index=0)]
    assert store.insert_events(rows) == 31

    with store.session() as client:
        # More trace ids than fit in a URL: the client switches to a multipart form.
        wanted = ["trace-0", "trace-2", *(f"absent-{n:05d}" for n in range(600))]
        parameters = {
            "team_id": 1,
            "start": WINDOW_START,
            "end": WINDOW_START + timedelta(minutes=20),
            "traces": wanted,
            "limit": 100,
        }
        select = """
            SELECT toString(uuid), ai_trace_id, timestamp FROM events
            WHERE team_id = {team_id:Int64}
              AND timestamp >= {start:DateTime64(6, 'UTC')} AND timestamp < {end:DateTime64(6, 'UTC')}
              AND ai_trace_id IN {traces:Array(String)}
            ORDER BY timestamp LIMIT {limit:UInt64}
        """
        result = client.query(select, parameters=parameters).result_rows
        # Minutes 0..19 (minute 20 plus 20 µs is past the end), traces 0 and 2 only; µs survive the trip.
        expected = [(r.uuid, f"trace-{n % 3}", r.timestamp) for n, r in enumerate(rows[:20]) if n % 3 != 1]
        assert [(u, trace, as_utc(ts)) for u, trace, ts in result] == expected
        assert len(client.query_df(select, parameters=parameters)) == len(expected)

        client.command(
            "DELETE FROM events WHERE team_id = {team_id:Int64} AND ai_trace_id = {trace:String}",
            parameters={"team_id": 1, "trace": "trace-0"},
        )
        remaining = client.query(
            "SELECT team_id, count() FROM events WHERE team_id IN (1, 2) GROUP BY team_id ORDER BY team_id"
        )
        assert remaining.result_rows == [(1, 20), (2, 1)]

        client.command(
            "CREATE TABLE IF NOT EXISTS versions (key String, version UInt64, body String) "
            "ENGINE = ReplacingMergeTree(version) ORDER BY key"
        )
        for version in (1, 2):
            client.insert_df(
                "versions", pd.DataFrame({"key": ["a"], "version": [version], "body": [f"v{version}"]})
            )
        assert client.query("SELECT body FROM versions FINAL WHERE key = 'a'").result_rows == [("v2",)]

    log = front.queries()
    inserts = [q for q in log if q["query"].startswith("INSERT INTO `events`")]
    assert inserts and all(q["request_encoding"] for q in inserts), "clickhouse-connect compresses inserts"
    bound = next(q for q in log if "{traces:Array(String)}" in q["query"])
    assert bound["params"]["start"] == "2026-11-03 10:00:00.000000"
    assert bound["multipart"], "large parameters travel as a multipart form"
    assert bound["params"]["traces"].startswith("['trace-0', 'trace-2', 'absent-00000'")
    assert bound["response_encoding"], "the client asks for compressed results and gets them"
    assert {q["session_id"] for q in log} - {None}, "the client sends its session id"


def test_engine_errors_and_injected_faults_reach_the_client(front: ClickHouseHTTPServer) -> None:
    client = clickhouse_connect.get_client(dsn=front.dsn)
    with pytest.raises(DatabaseError) as unknown:
        client.query("SELECT no_such_column FROM system.one")
    assert unknown.value.code == 47
    assert "UNKNOWN_IDENTIFIER" in str(unknown.value)

    front.set_fault("error", code=241)
    with pytest.raises(DatabaseError) as injected:
        client.query("SELECT 1")
    assert injected.value.code == 241
    with pytest.raises(StoreError):
        TraceStore(front.dsn).ensure_schema()  # a fresh client cannot even run its connect probe

    front.set_fault("down")
    with pytest.raises(OperationalError):
        client.query("SELECT 1")

    front.set_fault("off")
    assert client.query("SELECT 1").result_rows == [(1,)]
    codes = [q["error_code"] for q in front.queries()]
    assert 47 in codes and 241 in codes


def test_credentials_are_checked(front: ClickHouseHTTPServer) -> None:
    wrong = front.dsn.replace("s3cret", "wrong")
    with pytest.raises(DatabaseError) as refused:
        clickhouse_connect.get_client(dsn=wrong)
    assert refused.value.code == 516
    with pytest.raises(StoreError) as store_error:
        TraceStore(wrong).ensure_schema()
    assert "wrong" not in str(store_error.value), "the store never echoes a password"


def test_the_front_keeps_its_data_across_a_restart(front: ClickHouseHTTPServer) -> None:
    store = TraceStore(front.dsn)
    store.insert_events([ai_event(3, "kept", WINDOW_START, index=n) for n in range(5)])
    front.restart()
    with store.session() as client:
        assert client.command("SELECT count() FROM events WHERE team_id = 3") == 5


_WRITER = """
import sys
from datetime import UTC, datetime, timedelta

from trace_summaries.store import TraceStore
from trace_summaries_tests.support.events import ai_event

dsn, writer, batches, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
store = TraceStore(dsn)
start = datetime(2026, 11, 4, tzinfo=UTC)
team = 100 + writer
for batch in range(batches):
    store.insert_events(
        [ai_event(team, f"w{writer}-{batch}", start + timedelta(seconds=n), index=n) for n in range(size)]
    )
"""


def test_four_writer_processes_at_once(front: ClickHouseHTTPServer) -> None:
    writers, batches, size = 4, 5, 200
    env = child_env(PYTHONPATH=str(REPO_ROOT))
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, front.dsn, str(w), str(batches), str(size)],
            cwd=REPO_ROOT,
            env=env,
            stderr=subprocess.PIPE,
        )
        for w in range(writers)
    ]
    failures = []
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        if process.returncode != 0:
            failures.append(stderr.decode(errors="replace"))
    assert not failures, failures

    with TraceStore(front.dsn).session() as client:
        counts = client.query(
            "SELECT team_id, count(), uniqExact(uuid) FROM events WHERE team_id BETWEEN 100 AND 103 "
            "GROUP BY team_id ORDER BY team_id"
        ).result_rows
    assert counts == [(100 + w, batches * size, batches * size) for w in range(writers)]
    sessions = {q["session_id"] for q in front.queries() if q["query"].startswith("INSERT")}
    assert len(sessions) >= writers


def test_postgres_serves_psycopg2_and_the_dagster_instance(tmp_path: Path) -> None:
    with postgres_server() as pg:
        with psycopg2.connect(pg.dsn) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT current_user, current_database()")
            assert cursor.fetchone() == (pg.user, pg.database)
        connection.close()

        home = tmp_path / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text(pg.dagster_yaml)
        info = subprocess.run(
            [str(Path(sys.executable).parent / "dagster"), "instance", "info"],
            env=child_env(DAGSTER_HOME=str(home)),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert info.returncode == 0, info.stderr
        assert "run_storage: PostgresRunStorage" in info.stdout

        with psycopg2.connect(pg.dsn) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_tables WHERE tablename IN ('runs', 'event_logs')")
            assert cursor.fetchone() == (2,), "dagster created its schema in the test database"
        connection.close()


def test_moto_serves_s3() -> None:
    with moto_s3() as s3:
        s3.client.put_object(Bucket=s3.bucket, Key="summaries/2026-11-03.json", Body=b'{"ok": true}')
        body = s3.client.get_object(Bucket=s3.bucket, Key="summaries/2026-11-03.json")["Body"].read()
        assert body == b'{"ok": true}'
        listed = s3.client.list_objects_v2(Bucket=s3.bucket, Prefix="summaries/")
        assert [o["Key"] for o in listed["Contents"]] == ["summaries/2026-11-03.json"]
