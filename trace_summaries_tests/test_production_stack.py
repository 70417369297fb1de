"""The production path, for real: the hourly schedule ticking in a real ``dagster-daemon`` on a
PostgreSQL-backed instance, against ClickHouse over HTTP, S3 and Kafka, configured by environment variables
only.

The stack, every part a real process on a loopback port:

* Dagster instance: ``deploy/dagster.yaml`` itself (PostgreSQL storage with ``scheme: postgresql+psycopg2``,
  queued runs, concurrency limits, the ``llm`` pool, run retries and monitoring), credentials from
  ``DAGSTER_PG_*``, on a fresh PostgreSQL 15 (``trace_summaries_harness/postgres.py``);
* ``dagster-webserver`` and ``dagster-daemon`` from ``workspace.yaml``
  (``trace_summaries_harness/dagster_stack.py``);
* the trace store: the ClickHouse HTTP interface over chDB, with a password
  (``trace_summaries_harness/clickhouse_http.py``);
  traces are seeded over HTTP, as an ingestion pipeline would write them;
* intermediates: S3 (moto server) through ``TRACE_SUMMARIES_S3_BUCKET``/``AWS_ENDPOINT_URL``;
* embedding requests: a Kafka-protocol broker (noida-db) through ``KAFKA_BOOTSTRAP_SERVERS``;
* the LLM: not configured, so the offline summarizer runs (``provider=heuristic``), as the README says.

The tick is the schedule's own cron tick, not an imitation, and it is chosen only once the stack is up: the
stack starts with ``TRACE_SUMMARIES_SCHEDULE_MINUTE`` at a minute half an hour away, and the test waits (as
long as a loaded machine needs) until the daemon has created the schedule's state and the team sensor has
registered the partitions from ``TRACE_SUMMARIES_ALLOWED_TEAM_IDS``. Then it picks the next minute boundary
as the tick, seeds the hour that tick summarizes, and rolls the daemon out again with the tick's minute (the
daemon is the process that evaluates schedules; the webserver keeps showing the first minute, and nothing
here reads the schedule through it). Dagster evaluates every tick of a schedule from its state's start (or
last checkpoint) on, and that state dates from before the tick: the new daemon ticks at that minute if it is
up by then, and evaluates the tick as soon as it is up otherwise. Either way the tick at that minute, and
only it, launches one run per team (``auto`` mode below the shard threshold) for the hour that just ended;
no start-up time can make the test miss it.

Then one partition is re-materialized from the command line (``dagster asset materialize``, same
environment) and nothing may be duplicated: the same event uuids, one S3 object per partition (rewritten),
and Kafka re-sends with the same message keys (consumers deduplicate on them). The topic is read whole
(each partition to its high watermark) and compared key by key: exactly one message per summary after the
tick, exactly one more per summary of the re-materialized partition after it.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.scheduler.instigation import (
    InstigatorState,
    InstigatorType,
    ScheduleInstigatorData,
    TickStatus,
)

from trace_summaries.config import DEFAULT_EMBEDDING_REQUESTS_TOPIC
from trace_summaries.demo import seed_store
from trace_summaries.partitions import hour_key
from trace_summaries.queue.request import document_type_for_mode
from trace_summaries.sample import AI_EVENT_TYPES
from trace_summaries.scheduling.run_plan import last_complete_hour
from trace_summaries.store import TraceStore
from trace_summaries_harness.clickhouse_http import clickhouse_http_server
from trace_summaries_harness.dagster_cli import PROJECT, materialize_command
from trace_summaries_harness.dagster_stack import Stack, dagster_stack, start_daemon
from trace_summaries_harness.kafka_broker import running_kafka_broker
from trace_summaries_harness.ports import wait_until
from trace_summaries_harness.postgres import PostgresInfo, postgres_server
from trace_summaries_harness.s3 import moto_s3
from trace_summaries_tests.support.expected_traces import EXPECTED_TRACES_SQL
from trace_summaries_tests.support.kafka_topics import key_difference, message_keys, read_topic
from trace_summaries_tests.support.sample_files import sample_from_jsonl

TEAMS = ["1", "2", "3"]
TRACES_PER_HOUR = 3
SCHEDULE = "hourly_trace_summaries_schedule"
JOB = "trace_summaries_job"
PIPELINE_ASSETS = ("sampled_traces", "trace_summaries", "embedding_requests")
S3_PREFIX = "prod-test/trace-summaries"
CLICKHOUSE_USER = "trace_summaries"
CLICKHOUSE_PASSWORD = "ch-prod-test-password"
# The tick is the first minute boundary at least this far ahead once the stack is ready (any lead works:
# a tick the new daemon comes up too late for is evaluated when it is up).
TICK_LEAD_S = 5
# The stack (webserver, daemon, code servers) up and the schedule's state and team partitions created.
READY_TIMEOUT_S = 300
RUNS_TIMEOUT_S = 180
RUN_DONE = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}

SUMMARY_EVENTS_SQL = """
SELECT toString(uuid), team_id, JSONExtractString(properties, '$ai_trace_id'),
       JSONExtractString(properties, '$ai_summary_provider'),
       JSONExtractString(properties, '$ai_batch_run_id')
FROM events
WHERE event = '$ai_trace_summary' AND team_id IN {teams:Array(Int64)}
ORDER BY team_id, uuid
"""

SCHEDULED_RUNS_SQL = """
SELECT r.run_id, r.status, r.pipeline_name, r.partition
FROM runs r JOIN run_tags t ON t.run_id = r.run_id
WHERE t.key = 'dagster/schedule_name' AND t.value = %s
ORDER BY r.partition
"""

MATERIALIZATIONS_SQL = """
SELECT asset_key, partition, count(*)
FROM event_logs
WHERE dagster_event_type = 'ASSET_MATERIALIZATION' AND partition = ANY(%s)
GROUP BY asset_key, partition
"""


def next_tick(now: datetime) -> datetime:
    """The first whole minute at least TICK_LEAD_S ahead."""
    ahead = now + timedelta(seconds=TICK_LEAD_S)
    return ahead.replace(second=0, microsecond=0) + timedelta(minutes=1)


def roll_out_daemon(stack: Stack, log_path: Path) -> None:
    """Replaces the stack's daemon by a new ``dagster-daemon run`` on ``stack.env`` (a deployment rolling out
    a changed setting): the old one is stopped first (with its code server), so one daemon runs at a time."""
    [old] = [process for process in stack.processes if process.name == "daemon"]
    old.stop()
    stack.processes[stack.processes.index(old)] = start_daemon(stack, log_path)


@contextlib.contextmanager
def open_instance(env: dict[str, str]) -> Iterator[dg.DagsterInstance]:
    """The same Postgres-backed instance, opened in this process (for ticks, runs, partitions)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        with dg.DagsterInstance.get() as instance:
            yield instance


def schedule_state(instance: dg.DagsterInstance) -> InstigatorState | None:
    states = instance.all_instigator_state(instigator_type=InstigatorType.SCHEDULE)
    return next((state for state in states if state.name == SCHEDULE), None)


def expected_traces(store: TraceStore, hour: datetime) -> set[tuple[int, str]]:
    with store.session() as client:
        rows = client.query(
            EXPECTED_TRACES_SQL,
            parameters={
                "teams": [int(t) for t in TEAMS],
                "event_types": list(AI_EVENT_TYPES),
                "start": hour,
                "end": hour + timedelta(hours=1),
            },
        ).result_rows
    return {(int(team), str(trace)) for team, _hour, trace in rows}


def summary_events(store: TraceStore) -> list[tuple[str, int, str, str, str]]:
    with store.session() as client:
        rows = client.query(SUMMARY_EVENTS_SQL, parameters={"teams": [int(t) for t in TEAMS]}).result_rows
    return [
        (str(u), int(team), str(trace), str(provider), str(batch)) for u, team, trace, provider, batch in rows
    ]


def s3_objects(client: Any, bucket: str) -> dict[str, Any]:
    listing = client.list_objects_v2(Bucket=bucket, Prefix=f"{S3_PREFIX}/")
    return {item["Key"]: item for item in listing.get("Contents", [])}


def pg_query(pg: PostgresInfo, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    import psycopg2

    connection = psycopg2.connect(**pg.connect_kwargs())
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, args)
            return list(cursor.fetchall())
    finally:
        connection.close()


def wait_for_scheduled_runs(
    stack: Stack, instance: dg.DagsterInstance, deadline: float
) -> list[dg.DagsterRun]:
    latest: list[dg.DagsterRun] = []

    def done() -> bool:
        stack.check_alive()
        latest[:] = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/schedule_name": SCHEDULE}))
        return len(latest) >= len(TEAMS) and all(run.status in RUN_DONE for run in latest)

    try:
        wait_until(
            done, timeout_s=max(1.0, deadline - time.monotonic()), what="the tick's runs", interval_s=1.0
        )
    except TimeoutError:
        statuses = [(run.tags.get("dagster/partition"), run.status.value) for run in latest]
        pytest.fail(f"the tick's runs did not finish in time: {statuses}\n{stack.logs()}")
    return latest


@pytest.mark.slow
def test_hourly_tick_on_the_production_stack_then_rematerialize_without_duplicates(tmp_path: Path) -> None:
    started = time.monotonic()
    now = datetime.now(UTC)
    # A minute the first daemon never reaches during the test: the tick's minute is rolled out once chosen.
    placeholder_minute = (now.minute + 30) % 60
    timings: dict[str, float] = {}

    with contextlib.ExitStack() as services:
        pg = services.enter_context(postgres_server())
        clickhouse = services.enter_context(
            clickhouse_http_server(
                tmp_path / "clickhouse", user=CLICKHOUSE_USER, password=CLICKHOUSE_PASSWORD
            )
        )
        s3 = services.enter_context(moto_s3(bucket="trace-summaries-prod-test"))
        broker = services.enter_context(running_kafka_broker(tmp_path / "kafka"))
        broker.create_topic(DEFAULT_EMBEDDING_REQUESTS_TOPIC)
        timings["services"] = time.monotonic() - started

        store = TraceStore(clickhouse.dsn)
        store.ensure_schema()

        home = tmp_path / "dagster_home"
        home.mkdir()
        shutil.copyfile(PROJECT / "deploy" / "dagster.yaml", home / "dagster.yaml")
        env = pg.instance_env(home) | {
            # The pipeline's settings: README's Configuration table, nothing else.
            "TRACE_SUMMARIES_CLICKHOUSE_DSN": clickhouse.dsn,
            "TRACE_SUMMARIES_ALLOWED_TEAM_IDS": ",".join(TEAMS),
            "TRACE_SUMMARIES_START_DATE": (now - timedelta(days=1)).strftime("%Y-%m-%d"),
            "TRACE_SUMMARIES_SCHEDULE_MINUTE": str(placeholder_minute),
            "TRACE_SUMMARIES_SCHEDULE_MODE": "auto",
            "TRACE_SUMMARIES_S3_BUCKET": s3.bucket,
            "TRACE_SUMMARIES_S3_PREFIX": S3_PREFIX,
            "AWS_ENDPOINT_URL": s3.endpoint_url,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        }
        # dagster_stack prepares its own DAGSTER_HOME (a copy of the local dagster.yaml); ours overrides it.
        stack = services.enter_context(dagster_stack(tmp_path / "stack", env))
        assert stack.env["DAGSTER_HOME"] == str(home)
        instance = services.enter_context(open_instance(env))

        # The stack is ready for a tick once the daemon has the schedule's state (ticks are evaluated from
        # it on) and the team sensor has registered the allowlisted teams. No deadline but a hang guard.
        def ready_for_tick() -> bool:
            stack.check_alive()
            state = schedule_state(instance)
            return state is not None and sorted(instance.get_dynamic_partitions("teams")) == TEAMS

        wait_until(
            ready_for_tick,
            timeout_s=READY_TIMEOUT_S,
            what="schedule state and team partitions",
            interval_s=0.5,
        )
        timings["stack ready"] = time.monotonic() - started
        state = schedule_state(instance)
        assert state is not None and state.is_running
        data = state.instigator_data
        assert isinstance(data, ScheduleInstigatorData), data

        # Only now the tick, its hour, and the hour's traces (over HTTP, as the ingestion pipeline writes).
        tick = next_tick(datetime.now(UTC))
        assert tick.minute != placeholder_minute, "the first daemon would tick at that minute too"
        # Ticks are evaluated from here on: the tick is after it, so it is evaluated, late or not.
        evaluated_from = max(data.start_timestamp or 0.0, data.last_iteration_timestamp or 0.0)
        assert 0 < evaluated_from < tick.timestamp(), (data, tick)
        hour = last_complete_hour(tick, timedelta(0))
        keys = [f"{hour_key(hour)}|{team}" for team in TEAMS]
        seed_store(
            store, [int(t) for t in TEAMS], [hour], TRACES_PER_HOUR, progress=False, oversized_fraction=0.0
        )
        expected = expected_traces(store, hour)
        assert {team for team, _ in expected} == {int(t) for t in TEAMS}
        stack.env["TRACE_SUMMARIES_SCHEDULE_MINUTE"] = str(tick.minute)
        roll_out_daemon(stack, tmp_path / "stack" / "daemon-tick-minute.log")
        timings["tick chosen, daemon rolled out"] = time.monotonic() - started

        runs = wait_for_scheduled_runs(
            stack, instance, time.monotonic() + max(0.0, tick.timestamp() - time.time()) + RUNS_TIMEOUT_S
        )
        timings["tick runs"] = time.monotonic() - started
        assert sorted(run.tags["dagster/partition"] for run in runs) == keys
        assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs), [
            (run.run_id, run.status) for run in runs
        ]
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id)
        (scheduled,) = [t for t in ticks if t.status == TickStatus.SUCCESS and t.run_ids]
        assert scheduled.timestamp == tick.timestamp()
        assert sorted(scheduled.run_ids) == sorted(run.run_id for run in runs)

        # Run records (and their materializations) are in PostgreSQL.
        rows = pg_query(pg, SCHEDULED_RUNS_SQL, SCHEDULE)
        assert [(status, job, partition) for _, status, job, partition in rows] == [
            ("SUCCESS", JOB, key) for key in keys
        ]
        materialized = {
            (key_json, partition): count
            for key_json, partition, count in pg_query(pg, MATERIALIZATIONS_SQL, keys)
        }
        for asset in PIPELINE_ASSETS:
            for key in keys:
                assert materialized.get((f'["{asset}"]', key)) == 1, (asset, key, materialized)

        # One `$ai_trace_summary` event per expected trace, written through the HTTP interface.
        events = summary_events(store)
        assert {(team, trace) for _, team, trace, _, _ in events} == expected
        assert len(events) == len({uuid for uuid, *_ in events}) == len(expected)
        assert {provider for *_, provider, _ in events} == {"heuristic"}

        # One JSON-lines object per partition in S3, holding the partition's sample.
        objects = s3_objects(s3.client, s3.bucket)
        hour_segment = hour_key(hour).replace(":", "")
        assert sorted(objects) == [
            f"{S3_PREFIX}/sampled_traces/{hour_segment}/{team}.jsonl" for team in TEAMS
        ]
        for team in TEAMS:
            body = s3.client.get_object(
                Bucket=s3.bucket, Key=f"{S3_PREFIX}/sampled_traces/{hour_segment}/{team}.jsonl"
            )
            sample = sample_from_jsonl(body["Body"].read())
            assert {trace.trace_id for trace in sample.traces} == {t for tm, t in expected if tm == int(team)}

        # One embedding request per summary on Kafka, keyed by team, document type and trace: the whole
        # topic, so an extra message of any key fails here, named.
        document_type = document_type_for_mode("detailed")
        first_keys = Counter(f"{team}:{document_type}:{trace}" for team, trace in expected)
        found = message_keys(read_topic(broker.client_config(), DEFAULT_EMBEDDING_REQUESTS_TOPIC))
        assert found == first_keys, key_difference(found, first_keys)

        # Re-materialize one partition from the command line, with the same environment.
        rerun_key = keys[1]
        before_rerun = datetime.now(UTC).replace(microsecond=0)
        result = subprocess.run(
            materialize_command(",".join(PIPELINE_ASSETS), rerun_key),
            cwd=PROJECT,
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        timings["re-materialization"] = time.monotonic() - started
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]

        again = summary_events(store)
        assert sorted(again) == sorted(events), "the same events, uuids and batch runs: nothing duplicated"
        objects_again = s3_objects(s3.client, s3.bucket)
        assert sorted(objects_again) == sorted(objects), "one object per partition, replaced in place"
        rerun_object = f"{S3_PREFIX}/sampled_traces/{hour_segment}/{rerun_key.split('|')[1]}.jsonl"
        assert objects_again[rerun_object]["LastModified"] >= before_rerun
        # Re-sent with the same keys (consumers deduplicate): the re-materialized team's keys once more.
        rerun_team = int(rerun_key.split("|")[1])
        keys_again = first_keys + Counter(key for key in first_keys if int(key.split(":")[0]) == rerun_team)
        found = message_keys(read_topic(broker.client_config(), DEFAULT_EMBEDDING_REQUESTS_TOPIC))
        assert found == keys_again, key_difference(found, keys_again)
        manual = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": rerun_key}))
        assert sorted(run.status.value for run in manual) == [
            "SUCCESS",
            "SUCCESS",
        ]  # the tick's and the CLI's
        assert len(pg_query(pg, "SELECT run_id FROM runs WHERE partition = %s", rerun_key)) == 2

    print(f"production stack timings (s since start): { {k: round(v, 1) for k, v in timings.items()} }")
