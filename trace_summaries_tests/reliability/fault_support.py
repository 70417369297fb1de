"""Shared material of the fault tests (``test_faults_*.py``): the real local stack, faults, and the checks.

Every fault test follows one shape: seed traces, run the pipeline, inject a fault at a chosen moment, run
again without the fault, then measure the one promise of the pipeline: exactly one `$ai_trace_summary` event
per sampled trace (no event lost, none duplicated), and downstream exactly one stored embedding per summary.
What "expected" means is computed from the raw events with SQL of its own (the README's sampling rule), not
with the pipeline's code. Each test records its outcome in the reliability ledger (category ``fault``).

Moments are reached by waiting on an observable state (a query held by the ClickHouse front, an LLM call
in flight, a step started in the event log), never by sleeping.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import openai
from confluent_kafka import Consumer, TopicPartition

from trace_summaries.defs.io_managers import SampleIOManager, SummaryEventsIOManager
from trace_summaries.defs.partition_sets import TEAM_HOUR, TEAMS
from trace_summaries.defs.resources import ClickHouseResource, KafkaResource, LLMResource
from trace_summaries.demo import seed_store
from trace_summaries.queue.request import document_type_for_mode
from trace_summaries.store import TraceStore
from trace_summaries.worker.consumer import EmbeddingWorker
from trace_summaries.worker.embedder import OpenAIEmbedder
from trace_summaries.worker.embedders import EmbedderByModel
from trace_summaries.write.event import batch_run_id, summary_event_uuid
from trace_summaries_harness.clickhouse_http import ClickHouseHTTPServer, clickhouse_http_server
from trace_summaries_harness.dagster_cli import PROJECT, materialize_command
from trace_summaries_harness.kafka_broker import KafkaBroker
from trace_summaries_harness.ports import running, wait_until
from trace_summaries_tests.reliability import ledger
from trace_summaries_tests.support import clock
from trace_summaries_tests.support.environment import child_env
from trace_summaries_tests.support.expected_traces import expected_traces, summary_rows
from trace_summaries_tests.support.fixtures_llm import TEST_API_KEY
from trace_summaries_tests.support.kafka_topics import key_difference, message_keys, read_topic
from trace_summaries_tests.support.pipeline_defs import run_production_job

HOUR = clock.HOUR
MODE = "detailed"
ALL_ASSETS = "sampled_traces,trace_summaries,embedding_requests"
# A password that needs URL quoting: errors must show neither spelling of it.
CLICKHOUSE_USER, CLICKHOUSE_PASSWORD = "fault_tester", "f@ult pw:/#42"
# Connect retries of every store the tests build (and of the runs they start): quick, but real.
CONNECT_ATTEMPTS = 3
CONNECT_BACKOFF_MS = 100
CONNECT_RETRY_ENV = {
    "TRACE_SUMMARIES_CLICKHOUSE_CONNECT_ATTEMPTS": str(CONNECT_ATTEMPTS),
    "TRACE_SUMMARIES_CLICKHOUSE_CONNECT_BACKOFF_MS": str(CONNECT_BACKOFF_MS),
}
# Text that identifies a statement in the ClickHouse front's fault ``match`` (see sample/query.py and
# write/rows.py): only the sampling query ranks traces by their first timestamp; the IO
# manager's write is a DELETE of the partition's summaries, then an INSERT into `events`.
SAMPLING_QUERY_MARKER = "first_timestamp"
SUMMARY_DELETE_MARKER = "DELETE FROM events"
EVENTS_INSERT_MARKER = "INSERT INTO `events`"
# A crashed or restarted consumer must not hold partitions for long (6 s is the broker's minimum).
TEST_CONSUMER_CONFIG = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


def hour_key(hour: datetime) -> str:
    return hour.strftime("%Y-%m-%d-%H:00")


def partition_key(team: int, hour: datetime = HOUR) -> str:
    return f"{hour_key(hour)}|{team}"


@dataclass(frozen=True)
class KeyTally:
    """Kafka keys on a topic, read to its high watermark, against the keys expected there (with counts)."""

    found: Counter[str]
    expected: Counter[str]

    @property
    def lost(self) -> int:
        return sum((self.expected - self.found).values())

    @property
    def duplicates(self) -> int:
        """Messages beyond the expected count of their key, and messages of keys nobody expected."""
        return sum((self.found - self.expected).values())

    @property
    def exact(self) -> bool:
        return self.found == self.expected


def record_outcome(
    name: str,
    *,
    ran: bool,
    events: Tally,
    embeddings: EmbeddingTally | None = None,
    topic: KeyTally | None = None,
) -> None:
    """The scenario's ledger row, from measured tallies (call it once they are all taken): survived when the
    last run succeeded and the store, the embeddings and the topic hold exactly what they must."""
    parts: list[Tally | EmbeddingTally | KeyTally] = [events]
    parts += [part for part in (embeddings, topic) if part is not None]
    lost = sum(part.lost for part in parts)
    duplicates = sum(part.duplicates for part in parts)
    survived = ran and all(part.exact for part in parts) and lost == duplicates == 0
    ledger.record("fault", name, tried=1, survived=int(survived), lost=lost, duplicates=duplicates)


# ----------------------------------------------------------------------------------------------------------
# The trace store
# ----------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def clickhouse_front(directory: Path) -> Iterator[ClickHouseHTTPServer]:
    """A ClickHouse HTTP front of the tests' own (with a password), for a module's fault tests."""
    with clickhouse_http_server(directory, user=CLICKHOUSE_USER, password=CLICKHOUSE_PASSWORD) as front:
        yield front


def retrying_store(dsn: str) -> TraceStore:
    return TraceStore(dsn, connect_attempts=CONNECT_ATTEMPTS, connect_backoff_s=CONNECT_BACKOFF_MS / 1000)


def fresh_database(front: ClickHouseHTTPServer) -> TraceStore:
    """A new, empty database on the front (with the schema), so tests sharing a front never meet."""
    database = f"faults_{uuid.uuid4().hex[:12]}"
    with retrying_store(front.dsn).session() as client:
        client.command(f"CREATE DATABASE {database}")
    store = retrying_store(front.dsn.removesuffix("/default") + f"/{database}")
    store.ensure_schema()
    return store


def embedded_store(directory: Path) -> TraceStore:
    store = retrying_store(f"chdb://{directory}")
    store.ensure_schema()
    return store


@contextlib.contextmanager
def fault_cleared(front: ClickHouseHTTPServer) -> Iterator[ClickHouseHTTPServer]:
    """The front with no fault and an empty query log for the block, and no fault left behind."""
    front.set_fault("off")
    front.clear_queries()
    try:
        yield front
    finally:
        if front.is_running:
            front.set_fault("off")


# A summary event is stamped with its window's end.
@dataclass(frozen=True)
class Expected:
    """The summaries a set of (team, hour) partitions must end up with: uuid -> (team, hour, trace)."""

    by_uuid: dict[str, tuple[int, datetime, str]]

    @property
    def uuids(self) -> set[str]:
        return set(self.by_uuid)

    @property
    def teams(self) -> list[int]:
        return sorted({team for team, _, _ in self.by_uuid.values()})

    def message_keys(self) -> Counter[str]:
        """Kafka keys of the embedding requests: ``{team}:{document_type}:{trace}``, one per summary."""
        return Counter(
            f"{team}:{document_type_for_mode(MODE)}:{trace}" for team, _, trace in self.by_uuid.values()
        )

    def __len__(self) -> int:
        return len(self.by_uuid)


def seed(
    store: TraceStore, teams: Sequence[int], hours: Sequence[datetime], traces_per_hour: int
) -> Expected:
    seed_store(store, list(teams), list(hours), traces_per_hour, progress=False, oversized_fraction=0.0)
    expected = expected_summaries(store, teams, hours)
    # Every partition has traces to summarize, so "each partition has its events" is a real check.
    assert {(team, hour) for team, hour, _ in expected.by_uuid.values()} == {
        (team, hour) for team in teams for hour in hours
    }
    return expected


def expected_summaries(store: TraceStore, teams: Sequence[int], hours: Sequence[datetime]) -> Expected:
    traces = expected_traces(store, teams, min(hours), max(hours) + timedelta(hours=1))
    return Expected(
        {
            summary_event_uuid(team, trace, MODE, batch_run_id(team, hour)): (team, hour, trace)
            for team, hour, trace in traces
        }
    )


@dataclass(frozen=True)
class Tally:
    """What the events table holds against what it must hold."""

    expected: int
    stored: int
    lost: int  # expected summaries missing
    duplicates: int  # rows beyond the first of each uuid
    unexpected: int  # summaries of traces that should not have one

    @property
    def exact(self) -> bool:
        return self.lost == 0 and self.duplicates == 0 and self.unexpected == 0


def tally(store: TraceStore, expected: Expected) -> Tally:
    counts = Counter(row[0] for row in summary_rows(store, expected.teams))
    return Tally(
        expected=len(expected),
        stored=sum(counts.values()),
        lost=len(expected.uuids - set(counts)),
        duplicates=sum(count - 1 for count in counts.values()),
        unexpected=len(set(counts) - expected.uuids),
    )


# ----------------------------------------------------------------------------------------------------------
# Dagster: in-process runs, runs as their own `dagster` process, and what the instance shows
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pipeline:
    """Where one test's pipeline reads and writes; the same settings for in-process and CLI runs."""

    instance: dg.DagsterInstance
    store: TraceStore
    intermediate_dir: Path
    llm_base_url: str | None = None
    kafka: KafkaBroker | None = None
    topic: str = "document_embeddings_input"
    kafka_flush_timeout_s: float = 30.0

    def register(self, teams: Iterable[int]) -> None:
        self.instance.add_dynamic_partitions(TEAMS.name, [str(team) for team in teams])

    def resources(self) -> dict[str, Any]:
        clickhouse = ClickHouseResource(dsn=self.store.dsn)
        llm = (
            LLMResource(api_key=TEST_API_KEY, base_url=self.llm_base_url, timeout_s=30.0)
            if self.llm_base_url
            else LLMResource()
        )
        kafka = (
            KafkaResource(
                bootstrap_servers=self.kafka.bootstrap_servers,
                topic=self.topic,
                flush_timeout_s=self.kafka_flush_timeout_s,
            )
            if self.kafka is not None
            else KafkaResource()
        )
        return {
            "clickhouse": clickhouse,
            "llm": llm,
            "kafka": kafka,
            "sample_io_manager": SampleIOManager(base_dir=str(self.intermediate_dir)),
            "summary_events_io_manager": SummaryEventsIOManager(clickhouse=clickhouse),
        }

    def materialize(
        self,
        key: str,
        *,
        summary_config: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> dg.ExecuteInProcessResult:
        """A whole run of the production job (three assets, and the check) for one partition, in this
        process, on the test's instance."""
        return run_production_job(
            self.resources(),
            instance=self.instance,
            partition_key=key,
            config=summary_config,
            tags=tags,
        )

    def env(self) -> dict[str, str]:
        """The environment of a `dagster` process running this pipeline (as a deployment would set it)."""
        env = child_env(
            {
                "DAGSTER_HOME": self.instance.root_directory,
                "TRACE_SUMMARIES_CLICKHOUSE_DSN": self.store.dsn,
                "TRACE_SUMMARIES_INTERMEDIATE_DIR": str(self.intermediate_dir),
                **CONNECT_RETRY_ENV,
            }
        )
        if self.llm_base_url:
            env |= {"OPENAI_API_KEY": TEST_API_KEY, "OPENAI_BASE_URL": self.llm_base_url}
        if self.kafka is not None:
            env |= {
                "KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
                "KAFKA_TOPIC_EMBEDDING_REQUESTS": self.topic,
            }
        return env


class CliRun:
    """``dagster asset materialize`` as its own process (and process group), killable with SIGKILL."""

    def __init__(self, pipeline: Pipeline, key: str, log_path: Path, select: str = ALL_ASSETS) -> None:
        self.pipeline = pipeline
        self.log_path = log_path
        self._runs_before = run_ids(pipeline.instance)
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                materialize_command(select, key),
                env=pipeline.env(),
                cwd=PROJECT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.process.poll() is None

    def check_alive(self) -> bool:
        """For ``wait_until`` conditions: a run that ended early fails the wait at once, with its log."""
        if not self.alive():
            raise AssertionError(
                f"the run exited ({self.process.returncode}) before the fault:\n{self.log_tail()}"
            )
        return True

    def run_id(self, timeout_s: float = 120.0) -> str:
        """The id of the run this process started (the one run that is new on the instance)."""
        found: list[str] = []

        def appeared() -> bool:
            new = run_ids(self.pipeline.instance) - self._runs_before
            found[:] = sorted(new)
            if len(new) == 1:
                return True
            running(self.process, "the dagster process")  # exited without a run: fails the wait now
            return False

        wait_until(appeared, timeout_s=timeout_s, what="the run of the dagster process", log=self.log_tail)
        return found[0]

    def step_started(self, step: str) -> bool:
        new = run_ids(self.pipeline.instance) - self._runs_before
        return any(step in started_steps(self.pipeline.instance, run_id) for run_id in new)

    def kill(self) -> None:
        """SIGKILL to the whole process group: nothing of the run gets to clean up."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def log_tail(self, chars: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""


def run_ids(instance: dg.DagsterInstance) -> set[str]:
    return {record.dagster_run.run_id for record in instance.get_run_records()}


def started_steps(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    return {
        event.step_key or "" for event in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)
    }


def materializations(instance: dg.DagsterInstance, run_id: str) -> set[tuple[str, str | None]]:
    """(asset, partition) of every materialization the run recorded."""
    found: set[tuple[str, str | None]] = set()
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        event = entry.dagster_event
        assert event is not None
        materialization = event.event_specific_data.materialization  # type: ignore[union-attr]
        found.add((materialization.asset_key.path[-1], materialization.partition))
    return found


def partition_status(instance: dg.DagsterInstance, asset: str, key: str) -> set[str]:
    """What Dagster shows for one partition of an asset: any of materialized, failed, in_progress."""
    from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

    value = get_and_update_asset_status_cache_value(instance, dg.AssetKey(asset), TEAM_HOUR, instance)
    if value is None:
        return set()
    from dagster._core.definitions.partitions.context import partition_loading_context

    with partition_loading_context(None, instance):
        subsets = {
            "materialized": value.deserialize_materialized_partition_subsets(TEAM_HOUR),
            "failed": value.deserialize_failed_partition_subsets(TEAM_HOUR),
            "in_progress": value.deserialize_in_progress_partition_subsets(TEAM_HOUR),
        }
        return {name for name, subset in subsets.items() if key in subset.get_partition_keys()}


def run_status(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRunStatus:
    run = instance.get_run_by_id(run_id)
    assert run is not None
    return run.status


def step_failure_messages(result: dg.ExecuteInProcessResult) -> list[str]:
    """Every failed step's error, with its causes (what a user reads in the run's logs)."""
    messages: list[str] = []
    for event in result.all_events:
        if event.event_type_value != "STEP_FAILURE":
            continue
        error = event.step_failure_data.error
        parts: list[str] = []
        while error is not None:
            parts.append(error.message.strip())
            error = error.cause
        messages.append(" <- ".join(parts))
    return messages


# ----------------------------------------------------------------------------------------------------------
# Kafka: the topic, and what the embedding worker stores from it
# ----------------------------------------------------------------------------------------------------------


def topic_keys(broker: KafkaBroker, topic: str, timeout_s: float = 20.0) -> Counter[str]:
    """Every key on ``topic`` with its count: the whole topic, each partition read to its high watermark
    (``kafka_topics.read_topic``), so an extra message is counted, not just "at least" the expected ones."""
    return message_keys(read_topic(broker.client_config(), topic, timeout_s))


def key_tally(broker: KafkaBroker, topic: str, expected: Counter[str]) -> KeyTally:
    """The keys on ``topic`` (``topic_keys``) against the complete count of each key expected there."""
    return KeyTally(found=topic_keys(broker, topic), expected=expected)


def describe(keys: KeyTally) -> str:
    """What a failed ``keys.exact`` says: the counts, and the keys extra or missing."""
    return key_difference(keys.found, keys.expected)


def embedding_worker(
    broker: KafkaBroker,
    topic: str,
    store: TraceStore,
    embeddings_base_url: str,
    group_id: str,
    **options: Any,
) -> EmbeddingWorker:
    # The production routing: the local model (the default with no key) in process, API models at the server.
    embedder = EmbedderByModel(
        api=lambda: OpenAIEmbedder(
            openai.OpenAI(base_url=embeddings_base_url, api_key=TEST_API_KEY, max_retries=0, timeout=10)
        )
    )
    consumer_config = {**TEST_CONSUMER_CONFIG, "reconnect.backoff.max.ms": 500, **options.pop("consumer", {})}
    return EmbeddingWorker(
        broker.client_config(),
        topic,
        group_id,
        store=store,
        embedder=embedder,
        batch_size=options.pop("batch_size", 100),
        batch_timeout_s=options.pop("batch_timeout_s", 1.0),
        consumer_config=consumer_config,
        **options,
    )


def group_lag(broker: KafkaBroker, topic: str, group_id: str) -> int:
    """Messages of ``topic`` that ``group_id`` has not committed yet (every partition)."""
    consumer = Consumer({**broker.client_config(), "group.id": group_id, "enable.auto.commit": False})
    try:
        partitions = [
            TopicPartition(topic, partition)
            for partition in consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ]
        lag = 0
        for committed in consumer.committed(partitions, timeout=10):
            _, high = consumer.get_watermark_offsets(committed, timeout=10)
            lag += high - max(committed.offset, 0)
        return lag
    finally:
        consumer.close()


def drain(worker: EmbeddingWorker, broker: KafkaBroker, timeout_s: float = 120.0) -> int:
    """Runs batches until the worker's group has committed the whole topic; returns messages consumed.

    Done is judged by the broker's committed offsets, not by the batches' reports: a batch whose commit
    failed may be covered by the next batch's commit, or delivered again, and both are fine.
    """
    consumed = 0
    deadline = time.monotonic() + timeout_s
    while True:
        report = worker.run_once()
        consumed += report.consumed
        if report.consumed == 0 or report.committed:
            lag = group_lag(broker, worker.topic, worker.group_id)
            if lag == 0:
                return consumed
            assert time.monotonic() < deadline, f"{lag} messages still uncommitted after {timeout_s:.0f}s"


@dataclass(frozen=True)
class EmbeddingTally:
    expected: int
    rows_final: int
    lost: int  # summaries without an embedding
    duplicates: int  # rows beyond one per (document, model) after FINAL
    rows_raw: int  # before FINAL (re-deliveries show here, and only here)

    @property
    def exact(self) -> bool:
        return self.lost == 0 and self.duplicates == 0 and self.rows_final == self.expected


def embedding_tally(store: TraceStore, expected: Expected) -> EmbeddingTally:
    with store.session() as client:
        final = client.query(
            "SELECT team_id, document_type, document_id, model_name FROM document_embeddings FINAL"
        ).result_rows
        raw = int(str(client.command("SELECT count() FROM document_embeddings")))
    counts = Counter(f"{team}:{document_type}:{document}" for team, document_type, document, _ in final)
    wanted = expected.message_keys()
    return EmbeddingTally(
        expected=len(wanted),
        rows_final=len(final),
        lost=len(set(wanted) - set(counts)),
        duplicates=sum(count - 1 for count in counts.values()),
        rows_raw=raw,
    )
