"""Faults of the Kafka broker: down or restarting during `embedding_requests`, and during the worker's batch.

The broker is a real Kafka-protocol broker (noida-db) that keeps its data across a stop; the runs are real
Dagster runs of the pipeline on an on-disk instance and the embedded store; the worker is the production
``EmbeddingWorker`` embedding through the OpenAI-compatible test server.

What they prove:
- broker down for the whole `embedding_requests` step: the step ends within its flush timeout, counts every
  request failed (summaries stay written, the run succeeds), and nothing of it reaches the topic later; a
  re-materialization after the broker is back sends every request, once;
- broker back while the step is still flushing: every request is delivered, exactly once on the topic
  (idempotent producer: librdkafka's retries add no duplicate);
- broker restarted while the worker is between storing a batch and committing it: the worker carries on,
  every summary gets its embedding, a re-materialization's re-sent requests are absorbed, and
  ``document_embeddings FINAL`` holds exactly one row per summary.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from trace_summaries.worker.consumer import BatchReport
from trace_summaries_harness.kafka_broker import KafkaBroker, running_kafka_broker
from trace_summaries_harness.openai_server import OpenAICompatibleServer
from trace_summaries_harness.ports import wait_until
from trace_summaries_tests.reliability.fault_support import (
    HOUR,
    Expected,
    Pipeline,
    drain,
    embedded_store,
    embedding_tally,
    embedding_worker,
    partition_key,
    record_outcome,
    run_ids,
    seed,
    started_steps,
    step_failure_messages,
    tally,
    topic_keys,
)

TEAM = 51
KEY = partition_key(TEAM)
TRACES = 5
TOPIC = "document_embeddings_input"


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

    keys = topic_keys(broker, TOPIC, expected_at_least=TRACES + 1, timeout_s=5)
    outcome = tally(pipeline.store, expected)
    record_outcome("kafka: broker down during embedding_requests", ran=again.success, events=outcome)
    assert again.success, step_failure_messages(again)
    assert queued(again)["embedding_requests_succeeded"] == TRACES
    # Exactly the re-run's messages: the failed run's were purged, not delivered behind its back later.
    assert keys == expected.message_keys(), keys
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

    keys = topic_keys(broker, TOPIC, expected_at_least=TRACES + 1, timeout_s=5)
    outcome = tally(pipeline.store, expected)
    record_outcome("kafka: broker back during embedding_requests", ran=result.success, events=outcome)
    assert not errors, errors
    assert result.success, step_failure_messages(result)
    meta = queued(result)
    assert (meta["embedding_requests_succeeded"], meta["embedding_requests_failed"]) == (TRACES, 0), meta
    assert keys == expected.message_keys(), keys  # each once: no duplicate from the reconnection
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

    embeddings = embedding_tally(pipeline.store, expected)
    outcome = tally(pipeline.store, expected)
    record_outcome(
        "kafka: broker restarted during the worker's batch",
        ran=again.success,
        events=outcome,
        embeddings=embeddings,
    )
    assert after_restart.exact, after_restart
    assert consumed >= 2 * TRACES
    assert embeddings.exact, embeddings
    assert embeddings.rows_raw >= 2 * TRACES  # the re-sent requests were stored again: FINAL keeps one each
    assert outcome.exact, outcome
