"""Faults of the Kafka broker: down, back, or SIGKILLed during `embedding_requests`, and restarted during the
worker's batch.

The broker is a real Kafka-protocol broker (noida-db) that keeps its data across a stop; the runs are real
Dagster runs of the pipeline on an on-disk instance and the embedded store; the worker is the production
``EmbeddingWorker`` embedding through the OpenAI-compatible test server.

What they prove:
- broker down for the whole `embedding_requests` step: the step ends within its flush timeout, counts every
  request failed (summaries stay written, the run succeeds), and nothing of it reaches the topic later; a
  re-materialization after the broker is back sends every request, once;
- broker back while the step is still flushing: every request is delivered, exactly once on the topic
  (idempotent producer: librdkafka's retries add no duplicate);
- broker SIGKILLed while the step's requests are out, unanswered: the step counts every request
  failed within its flush timeout (the run succeeds), the broker comes back on its port and data directory
  with exactly the earlier generation and nothing of the killed step, and a re-materialization sends each
  request once more;
- broker restarted while the worker is between storing a batch and committing it: the worker carries on,
  every summary gets its embedding, a re-materialization's re-sent requests are absorbed, and
  ``document_embeddings FINAL`` holds exactly one row per summary.

The topic is always read whole, each partition to its high watermark, and compared key by key with the
complete count expected (``KeyTally``): an extra message is a duplicate in the ledger and fails the test with
its key named. Each ledger row is recorded once the topic and the store have been read.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from trace_summaries.worker.consumer import BatchReport
from trace_summaries_harness.clickhouse_http import ClickHouseHTTPServer
from trace_summaries_harness.kafka_broker import KafkaBroker, running_kafka_broker
from trace_summaries_harness.openai_server import OpenAICompatibleServer
from trace_summaries_harness.ports import wait_until
from trace_summaries_tests.reliability.fault_support import (
    EVENTS_INSERT_MARKER,
    HOUR,
    Expected,
    Pipeline,
    clickhouse_front,
    describe,
    drain,
    embedded_store,
    embedding_tally,
    embedding_worker,
    fault_cleared,
    fresh_database,
    key_tally,
    partition_key,
    record_outcome,
    run_ids,
    seed,
    started_steps,
    step_failure_messages,
    tally,
    topic_keys,
)
from trace_summaries_tests.support.kafka_topics import key_difference

TEAM = 51
KEY = partition_key(TEAM)
TRACES = 5
TOPIC = "document_embeddings_input"
HELD_S = 300.0  # longer than any test: the release, not the timeout, ends the hold
STEP_TIMEOUT_S = 120.0  # a step reached on a busy 2-core machine


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    with running_kafka_broker(tmp_path / "kafka") as kafka:
        kafka.create_topic(TOPIC, partitions=2)
        yield kafka


def kafka_pipeline(
    tmp_path: Path, instance: dg.DagsterInstance, broker: KafkaBroker, flush_timeout_s: float
) -> tuple[Pipeline, Expected]:
    store = embedded_store(tmp_path / "clickhouse")
    pipeline = Pipeline(
        instance,
        store,
        tmp_path / "intermediate",
        kafka=broker,
        topic=TOPIC,
        kafka_flush_timeout_s=flush_timeout_s,
    )
    pipeline.register([TEAM])
    return pipeline, seed(store, [TEAM], [HOUR], TRACES)


def generations(expected: Expected, runs: int) -> Counter[str]:
    """The complete content of the topic after ``runs`` successful sends of the partition: each key that
    many times."""
    return Counter({key: count * runs for key, count in expected.message_keys().items()})


def queued(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    [materialization] = result.asset_materializations_for_node("embedding_requests")
    return {key: value.value for key, value in materialization.metadata.items()}


def test_broker_down_during_embedding_requests_counts_failures_and_a_rerun_after_restart_sends_all(
    tmp_path: Path, instance: dg.DagsterInstance, broker: KafkaBroker
) -> None:
    flush_timeout_s = 3.0
    pipeline, expected = kafka_pipeline(tmp_path, instance, broker, flush_timeout_s)
    broker.stop()

    started = time.monotonic()
    down = pipeline.materialize(KEY)
    elapsed = time.monotonic() - started

    assert down.success, step_failure_messages(down)  # the summaries are written; only the queueing failed
    meta = queued(down)
    assert (meta["embedding_requests_succeeded"], meta["embedding_requests_failed"]) == (0, TRACES), meta
    assert elapsed < 60, f"the step is bounded by its flush timeout ({flush_timeout_s}s), took {elapsed:.0f}s"
    assert tally(pipeline.store, expected).exact

    broker.start()
    again = pipeline.materialize(KEY)

    # Exactly the re-run's messages: the failed run's were purged, not delivered behind its back later.
    keys = key_tally(broker, TOPIC, generations(expected, 1))
    outcome = tally(pipeline.store, expected)
    record_outcome(
        "kafka: broker down during embedding_requests", ran=again.success, events=outcome, topic=keys
    )
    assert again.success, step_failure_messages(again)
    assert queued(again)["embedding_requests_succeeded"] == TRACES
    assert keys.exact, describe(keys)
    assert outcome.exact, outcome


def test_broker_back_during_embedding_requests_delivers_every_request_exactly_once(
    tmp_path: Path, instance: dg.DagsterInstance, broker: KafkaBroker
) -> None:
    pipeline, expected = kafka_pipeline(tmp_path, instance, broker, flush_timeout_s=60.0)
    broker.stop()
    before = run_ids(instance)
    errors: list[BaseException] = []

    def start_broker_once_the_step_runs() -> None:
        try:
            wait_until(
                lambda: any(
                    "embedding_requests" in started_steps(instance, run_id)
                    for run_id in run_ids(instance) - before
                ),
                timeout_s=120,
                what="the embedding_requests step",
            )
            broker.start()
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    helper = threading.Thread(target=start_broker_once_the_step_runs, daemon=True)
    helper.start()
    result = pipeline.materialize(KEY)
    helper.join(timeout=120)

    keys = key_tally(broker, TOPIC, generations(expected, 1))  # each once: no duplicate from reconnecting
    outcome = tally(pipeline.store, expected)
    record_outcome(
        "kafka: broker back during embedding_requests",
        ran=result.success and not errors,
        events=outcome,
        topic=keys,
    )
    assert not errors, errors
    assert result.success, step_failure_messages(result)
    meta = queued(result)
    assert (meta["embedding_requests_succeeded"], meta["embedding_requests_failed"]) == (TRACES, 0), meta
    assert keys.exact, describe(keys)
    assert outcome.exact, outcome


def test_broker_restarted_during_the_worker_batch_loses_nothing_and_stores_no_duplicate(
    tmp_path: Path, instance: dg.DagsterInstance, broker: KafkaBroker, llm_server: OpenAICompatibleServer
) -> None:
    pipeline, expected = kafka_pipeline(tmp_path, instance, broker, flush_timeout_s=30.0)
    first = pipeline.materialize(KEY)
    assert first.success and queued(first)["embedding_requests_succeeded"] == TRACES
    restarts: list[BatchReport] = []

    def restart_broker_before_the_first_commit(report: BatchReport) -> None:
        # Between the insert into document_embeddings and the offset commit: the worker's riskiest moment.
        if not restarts and report.stored:
            restarts.append(report)
            broker.restart()

    worker = embedding_worker(
        broker,
        TOPIC,
        pipeline.store,
        llm_server.base_url,
        "worker-broker-restart",
        after_store=restart_broker_before_the_first_commit,
    )
    with worker:
        consumed = drain(worker, broker)
        assert restarts, "the broker was restarted inside a batch"
        after_restart = embedding_tally(pipeline.store, expected)

        # A re-materialization re-sends the same summaries under the same keys: absorbed, not duplicated.
        again = pipeline.materialize(KEY)
        assert again.success and queued(again)["embedding_requests_succeeded"] == TRACES
        consumed += drain(worker, broker)

    # Both generations, each key once per run: the restart (a clean stop) kept the first.
    keys = key_tally(broker, TOPIC, generations(expected, 2))
    embeddings = embedding_tally(pipeline.store, expected)
    outcome = tally(pipeline.store, expected)
    record_outcome(
        "kafka: broker restarted during the worker's batch",
        ran=again.success,
        events=outcome,
        embeddings=embeddings,
        topic=keys,
    )
    assert keys.exact, describe(keys)
    assert after_restart.exact, after_restart
    assert consumed >= 2 * TRACES
    assert embeddings.exact, embeddings
    assert embeddings.rows_raw >= 2 * TRACES  # the re-sent requests were stored again: FINAL keeps one each
    assert outcome.exact, outcome


@pytest.fixture(scope="module")
def module_front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseHTTPServer]:
    with clickhouse_front(tmp_path_factory.mktemp("faults-kafka") / "data") as front:
        yield front


@pytest.fixture
def front(module_front: ClickHouseHTTPServer) -> Iterator[ClickHouseHTTPServer]:
    with fault_cleared(module_front) as cleared:
        yield cleared


def new_run_step(
    instance: dg.DagsterInstance, before: set[str], step: str, events: set[dg.DagsterEventType]
) -> bool:
    """Whether the one run started after ``before`` logged any of ``events`` for ``step``."""
    return any(
        entry.step_key == step
        for run_id in run_ids(instance) - before
        for entry in instance.all_logs(run_id, of_type=events)
    )


def test_broker_sigkilled_during_embedding_requests_keeps_what_it_saved_and_a_rerun_sends_each_once_more(
    tmp_path: Path, instance: dg.DagsterInstance, broker: KafkaBroker, front: ClickHouseHTTPServer
) -> None:
    """The moment is reached by holding the run's write of its summaries at the ClickHouse front (the step
    before `embedding_requests`), hanging the broker (SIGSTOP) while the write is held, releasing the write,
    and SIGKILLing the broker once `embedding_requests` has started: its producer, started with the run
    while the broker was up, has its requests out to a broker that answers nothing. The kill then lands
    inside the step's flush, whatever the machine's speed (checked: the step had not ended).

    What the killed run may have put on the topic is therefore nothing: no request was acknowledged, and the
    unanswered ones are purged at the flush timeout, not delivered to the restarted broker. The first
    generation is on the topic before the kill and saved by noida-db (``wait_saved``: it saves its log once
    a second, so a SIGKILL loses what it acknowledged since, which a real broker would keep). After the
    restart (same port, same data directory) the topic holds exactly the first generation, and after the
    re-materialization exactly two of each key; the events table holds exactly one summary per trace.
    """
    flush_timeout_s = 10.0  # the step's bound, and the window in which the kill must land
    pipeline = Pipeline(
        instance,
        fresh_database(front),
        tmp_path / "intermediate",
        kafka=broker,
        topic=TOPIC,
        kafka_flush_timeout_s=flush_timeout_s,
    )
    pipeline.register([TEAM])
    expected = seed(pipeline.store, [TEAM], [HOUR], TRACES)
    first = pipeline.materialize(KEY)
    assert first.success, step_failure_messages(first)
    assert queued(first)["embedding_requests_succeeded"] == TRACES, queued(first)
    saved = broker.wait_saved(TOPIC)
    assert sum(saved.values()) == TRACES, saved

    before = run_ids(instance)
    front.set_fault("delay", match=EVENTS_INSERT_MARKER, seconds=HELD_S)
    errors: list[BaseException] = []
    killed_inside_the_step: list[bool] = []

    def in_step(events: set[dg.DagsterEventType]) -> Callable[[], bool]:
        return lambda: new_run_step(instance, before, "embedding_requests", events)

    def kill_the_broker_inside_the_step() -> None:
        try:
            wait_until(
                lambda: front.fault_state()["held"] > 0,
                timeout_s=STEP_TIMEOUT_S,
                what="the run's write of its summaries",
            )
            broker.pause()
            front.set_fault("off")  # the write goes on; then embedding_requests sends to the hung broker
            wait_until(
                in_step({dg.DagsterEventType.STEP_START}),
                timeout_s=STEP_TIMEOUT_S,
                what="the embedding_requests step",
            )
            broker.kill()
            ended = {dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}
            killed_inside_the_step.append(not in_step(ended)())
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)
        finally:
            if front.is_running:
                front.set_fault("off")  # never leave the run's write held

    helper = threading.Thread(target=kill_the_broker_inside_the_step, daemon=True)
    helper.start()
    started = time.monotonic()
    killed = pipeline.materialize(KEY)
    elapsed = time.monotonic() - started
    helper.join(timeout=STEP_TIMEOUT_S)
    broker.start()  # the same port and data directory: what noida-db had saved

    after_kill = topic_keys(broker, TOPIC)
    again = pipeline.materialize(KEY)
    keys = key_tally(broker, TOPIC, generations(expected, 2))
    outcome = tally(pipeline.store, expected)
    record_outcome(
        "kafka: broker SIGKILLed during embedding_requests",
        ran=killed.success and again.success and not errors,
        events=outcome,
        topic=keys,
    )

    assert not errors, errors
    assert killed_inside_the_step == [True], "the broker was killed after the step ended: not this fault"
    assert killed.success, step_failure_messages(killed)  # the summaries are written; the queueing failed
    meta = queued(killed)
    assert (meta["embedding_requests_succeeded"], meta["embedding_requests_failed"]) == (0, TRACES), meta
    assert elapsed < 60 + flush_timeout_s, f"the step is bounded by its flush timeout, took {elapsed:.0f}s"
    # The killed step left nothing, and the kill lost nothing saved: exactly the first generation.
    assert after_kill == generations(expected, 1), key_difference(after_kill, generations(expected, 1))
    assert again.success, step_failure_messages(again)
    assert queued(again)["embedding_requests_succeeded"] == TRACES, queued(again)
    assert keys.exact, describe(keys)
    assert outcome.exact, outcome
