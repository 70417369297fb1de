"""The embedding worker against a real broker (noida-db), embedded ClickHouse (chDB) and the
OpenAI-compatible test server: consume, embed, store, commit, and what happens when any of it fails.

The crash and SIGTERM tests run the worker in a subprocess started from this module's ``__main__`` (see
the bottom): the crash is a real ``os._exit`` between the insert and the offset commit, not a mock.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openai
import pytest
from confluent_kafka import Producer

from trace_summaries.cli import main as cli_main
from trace_summaries.queue.request import EmbeddingRequest
from trace_summaries.store import TraceStore
from trace_summaries.worker.consumer import BatchReport, EmbeddingWorker
from trace_summaries.worker.document_embeddings import ensure_embeddings_table
from trace_summaries.worker.embedder import OpenAIEmbedder
from trace_summaries_harness.kafka_broker import KafkaBroker, running_kafka_broker
from trace_summaries_harness.openai_server import (
    Fault,
    OpenAICompatibleServer,
    hashed_embedding,
    openai_server,
)
from trace_summaries_harness.ports import free_port, running, wait_until
from trace_summaries_tests.support import embedding_worker
from trace_summaries_tests.support.embedding_worker import (
    CRASH_EXIT_CODE,
    CRASH_MESSAGE,
    TEST_CONSUMER_CONFIG,
    TOPIC,
    committed_offsets,
    crash_after_first_store,
    send,
    stored,
)
from trace_summaries_tests.support.environment import child_env

SMALL_MODEL = "text-embedding-3-small-64"
SUMMARY_TIME = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)
# noida-db never evicts a member that died without leaving (a new member's JoinGroup then waits forever),
# so the crash test restarts the worker under the same static membership id, which takes the dead member's
# place at once, as it would on Kafka. With dynamic membership Kafka would evict it after session.timeout.ms.
CRASH_TEST_INSTANCE_ID = "embedding-worker-0"
PROJECT_ROOT = Path(__file__).parents[1]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    with running_kafka_broker(tmp_path / "kafka") as kafka:
        kafka.create_topic(TOPIC, partitions=2)
        yield kafka


@pytest.fixture
def server() -> Iterator[OpenAICompatibleServer]:
    with openai_server() as openai_compatible:
        yield openai_compatible


@pytest.fixture
def embeddings_store(store: TraceStore) -> TraceStore:
    ensure_embeddings_table(store)
    return store


def embedder_for(base_url: str) -> OpenAIEmbedder:
    # No SDK retries: the worker's own retry is what these tests look at.
    return OpenAIEmbedder(openai.OpenAI(base_url=base_url, api_key="test-key", max_retries=0, timeout=10))


def make_worker(
    broker: KafkaBroker, store: TraceStore, base_url: str, group_id: str, **options: Any
) -> EmbeddingWorker:
    return EmbeddingWorker(
        broker.client_config(),
        TOPIC,
        group_id,
        store=store,
        embedder=embedder_for(base_url),
        batch_size=options.pop("batch_size", 100),
        batch_timeout_s=options.pop("batch_timeout_s", 1.0),
        consumer_config=options.pop("consumer_config", TEST_CONSUMER_CONFIG),
        **options,
    )


def summaries(
    count: int, *, models: Sequence[str] = (SMALL_MODEL,), titles: Sequence[str] = ()
) -> list[EmbeddingRequest]:
    return embedding_worker.summaries(count, models=models, titles=titles)


def drain(worker: EmbeddingWorker, messages: int, timeout_s: float = 45.0) -> list[BatchReport]:
    """Runs batches until ``messages`` were consumed (group join and assignment take a few seconds)."""
    reports: list[BatchReport] = []
    deadline = time.monotonic() + timeout_s
    while sum(r.consumed for r in reports) < messages:
        assert time.monotonic() < deadline, f"consumed {sum(r.consumed for r in reports)} of {messages}"
        report = worker.run_once()
        if report.consumed:
            reports.append(report)
    return reports


def test_worker_consumes_embeds_stores_and_commits(
    broker: KafkaBroker, embeddings_store: TraceStore, server: OpenAICompatibleServer
) -> None:
    requests = summaries(3, models=["text-embedding-3-large-3072", "text-embedding-3-small-1536"])
    send(broker, requests)

    with make_worker(broker, embeddings_store, server.base_url, "g-store") as worker:
        reports = drain(worker, 3)

    assert sum(r.stored for r in reports) == 6 and all(r.committed for r in reports)
    assert committed_offsets(broker, "g-store") == 3
    rows = stored(embeddings_store)
    assert [(r["document_id"], r["model_name"]) for r in rows] == [
        (f"trace-{i}", model)
        for i in range(3)
        for model in ("text-embedding-3-large-3072", "text-embedding-3-small-1536")
    ]
    first = rows[0]
    assert first["team_id"] == 5
    assert first["product"] == "llm-analytics"
    assert first["document_type"] == "llm-trace-summary-detailed"
    assert first["rendering"] == "5_2026-11-03T11:00:00+00:00"
    assert first["timestamp"].replace(tzinfo=UTC) == SUMMARY_TIME
    assert first["content"] == requests[0].content
    assert first["embedding"] == pytest.approx(hashed_embedding(requests[0].content, 3072))
    assert len(rows[1]["embedding"]) == 1536
    # The API was asked for the base model with the size from the name, as floats.
    bodies = [r.body for r in server.embedding_requests()]
    assert {(b["model"], b["dimensions"], b["encoding_format"]) for b in bodies} == {
        ("text-embedding-3-large", 3072, "float"),
        ("text-embedding-3-small", 1536, "float"),
    }


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value).encode()


def test_poison_messages_are_skipped_and_committed_not_retried(
    broker: KafkaBroker, embeddings_store: TraceStore, server: OpenAICompatibleServer
) -> None:
    valid = summaries(2)
    newer_producer = {**valid[1].model_dump(mode="json"), "field_from_a_newer_producer": True}
    missing_id = valid[0].model_dump(mode="json")
    del missing_id["document_id"]
    bad_model = {**valid[0].model_dump(mode="json"), "document_id": "bad-model", "models": ["x-embed-0"]}
    empty = {**valid[0].model_dump(mode="json"), "document_id": "empty", "content": "  "}
    # The original producer wrote naive wall-clock timestamps: read as UTC, not dropped.
    naive = {**valid[1].model_dump(mode="json"), "document_id": "naive", "timestamp": "2026-11-03T10:05:00"}
    producer = Producer(broker.client_config())
    for value in [
        b"{not json",
        valid[0].to_json_bytes(),
        _json(missing_id),
        _json(bad_model),
        _json(empty),
        _json(newer_producer),
        _json(naive),
        b"",
    ]:
        producer.produce(TOPIC, key=b"k", value=value)
    assert producer.flush(10) == 0

    with make_worker(broker, embeddings_store, server.base_url, "g-poison") as worker:
        reports = drain(worker, 8)
        assert sum(r.stored for r in reports) == 3
        assert sum(r.skipped for r in reports) == 5
        assert committed_offsets(broker, "g-poison") == 8
        assert worker.run_once().consumed == 0  # nothing comes back
    rows = stored(embeddings_store)
    assert [r["document_id"] for r in rows] == ["naive", "trace-0", "trace-1"]
    assert rows[0]["timestamp"].replace(tzinfo=UTC) == datetime(2026, 11, 3, 10, 5, tzinfo=UTC)


def test_resending_the_same_summaries_stores_each_embedding_once(
    broker: KafkaBroker, embeddings_store: TraceStore, server: OpenAICompatibleServer
) -> None:
    send(broker, summaries(3))
    send(broker, summaries(3))  # a re-materialization re-sends the same requests
    with make_worker(broker, embeddings_store, server.base_url, "g-resend", batch_size=2) as worker:
        drain(worker, 6)
    assert [r["document_id"] for r in stored(embeddings_store)] == ["trace-0", "trace-1", "trace-2"]


def test_an_unavailable_endpoint_stores_nothing_and_the_batch_is_read_again(
    broker: KafkaBroker, embeddings_store: TraceStore, server: OpenAICompatibleServer
) -> None:
    send(broker, summaries(2))
    server.enqueue_faults([Fault.server_error(503)], endpoint="embeddings")
    with make_worker(broker, embeddings_store, server.base_url, "g-retry", batch_size=2) as worker:
        failed = drain(worker, 2)
        assert [(r.stored, r.committed) for r in failed] == [(0, False)]
        assert failed[0].error is not None and "503" in failed[0].error
        assert committed_offsets(broker, "g-retry") == 0

        retried = drain(worker, 2)  # the worker rewound to the batch start; the endpoint is back
    assert [(r.stored, r.committed) for r in retried] == [(2, True)]
    assert committed_offsets(broker, "g-retry") == 2
    assert len(stored(embeddings_store)) == 2


def test_a_document_the_endpoint_rejects_is_isolated_and_skipped(
    broker: KafkaBroker, embeddings_store: TraceStore, server: OpenAICompatibleServer
) -> None:
    requests = summaries(3, titles=["fine one", "REJECTED-DOCUMENT", "fine two"])
    server.add_fault_rule(
        "REJECTED-DOCUMENT", [Fault.http_status(400, "input too long")], repeat=True, endpoint="embeddings"
    )
    send(broker, requests)
    with make_worker(broker, embeddings_store, server.base_url, "g-reject", batch_size=3) as worker:
        reports = drain(worker, 3)
    assert sum(r.stored for r in reports) == 2
    assert sum(r.skipped for r in reports) == 1
    assert all(r.committed for r in reports)
    assert [r["document_id"] for r in stored(embeddings_store)] == ["trace-0", "trace-2"]


def _worker_subprocess(
    command: list[str], broker: KafkaBroker, store: TraceStore, base_url: str, log: Path
) -> subprocess.Popen[bytes]:
    env = child_env(
        PYTHONPATH=str(PROJECT_ROOT),
        KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers,
        TRACE_SUMMARIES_CLICKHOUSE_DSN=store.dsn,
        OPENAI_API_KEY="test-key",
        OPENAI_BASE_URL=base_url,
    )
    with log.open("wb") as output:
        return subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, stdout=output, stderr=subprocess.STDOUT)


def test_a_crash_between_store_and_commit_leaves_no_duplicate_after_restart(
    broker: KafkaBroker, embeddings_store: TraceStore, server: OpenAICompatibleServer, tmp_path: Path
) -> None:
    send(broker, summaries(3))
    log = tmp_path / "crashing-worker.log"
    crashing = _worker_subprocess(
        [sys.executable, "-m", "trace_summaries_tests.test_worker_consumer", "g-crash"],
        broker,
        embeddings_store,
        server.base_url,
        log,
    )
    try:
        assert crashing.wait(timeout=90) == CRASH_EXIT_CODE, log.read_text()
    finally:
        if crashing.poll() is None:
            crashing.kill()
    assert CRASH_MESSAGE in log.read_text()
    assert len(stored(embeddings_store, final=False)) == 3
    assert committed_offsets(broker, "g-crash") == 0

    restarted_worker = make_worker(
        broker, embeddings_store, server.base_url, "g-crash", instance_id=CRASH_TEST_INSTANCE_ID
    )
    with restarted_worker as restarted:
        reports = drain(restarted, 3)  # the whole batch comes again

    assert sum(r.stored for r in reports) == 3 and all(r.committed for r in reports)
    assert committed_offsets(broker, "g-crash") == 3
    assert len(stored(embeddings_store, final=False)) == 6  # both inserts are there, but FINAL shows one
    assert [r["document_id"] for r in stored(embeddings_store)] == ["trace-0", "trace-1", "trace-2"]


def worker_command(group_id: str, *extra: str) -> list[str]:
    """``trace-summaries embedding-worker`` as an operator starts it: small batches, a short session."""
    return [
        str(Path(sys.executable).with_name("trace-summaries")),
        "embedding-worker",
        "--group-id",
        group_id,
        "--batch-size",
        "2",
        "--batch-timeout",
        "0.5",
        "--session-timeout-ms",
        "6000",
        *extra,
    ]


def test_sigterm_stops_the_worker_cleanly_after_committing(
    broker: KafkaBroker, embeddings_store: TraceStore, server: OpenAICompatibleServer, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    command = worker_command("g-cli")
    worker = _worker_subprocess(command, broker, embeddings_store, server.base_url, log)
    try:
        send(broker, summaries(2))
        wait_until(
            lambda: running(worker, "the worker") and committed_offsets(broker, "g-cli") == 2,
            timeout_s=60,
            what="worker commit",
            interval_s=0.25,
            log=log.read_text,
        )
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
    output = log.read_text()
    assert "SIGTERM received" in output and "embedding worker stopped" in output
    assert len(stored(embeddings_store)) == 2


def test_exit_when_idle_drains_the_topic_commits_and_exits_by_itself(
    broker: KafkaBroker, embeddings_store: TraceStore, server: OpenAICompatibleServer, tmp_path: Path
) -> None:
    send(broker, summaries(5))
    log = tmp_path / "idle-worker.log"
    command = worker_command("g-idle", "--exit-when-idle", "2")
    worker = _worker_subprocess(command, broker, embeddings_store, server.base_url, log)
    try:
        # No signal and no stop from here: the worker has to find the topic idle and leave by itself.
        assert worker.wait(timeout=60) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
    output = log.read_text()
    assert "exiting (--exit-when-idle)" in output and "embedding worker stopped" in output, output
    assert [r["document_id"] for r in stored(embeddings_store)] == [f"trace-{i}" for i in range(5)]
    assert committed_offsets(broker, "g-idle") == 5


@pytest.mark.parametrize("value", ["0", "-1", "-0.5", "nan", "soon"])
def test_exit_when_idle_refuses_a_value_that_is_not_a_positive_number(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_main(["embedding-worker", f"--exit-when-idle={value}"])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "argument --exit-when-idle:" in error and repr(value) in error, error


def test_the_worker_carries_on_after_the_broker_restarts(
    broker: KafkaBroker, embeddings_store: TraceStore, server: OpenAICompatibleServer
) -> None:
    send(broker, summaries(2)[:1])
    worker = make_worker(
        broker,
        embeddings_store,
        server.base_url,
        "g-restart",
        consumer_config={**TEST_CONSUMER_CONFIG, "reconnect.backoff.max.ms": 500},
    )
    with worker:
        assert sum(r.stored for r in drain(worker, 1)) == 1
        broker.restart()
        send(broker, summaries(2)[1:])
        assert sum(r.stored for r in drain(worker, 1)) == 1
    assert committed_offsets(broker, "g-restart") == 2
    assert [r["document_id"] for r in stored(embeddings_store)] == ["trace-0", "trace-1"]


def test_a_store_that_cannot_be_reached_leaves_the_batch_uncommitted(
    broker: KafkaBroker, server: OpenAICompatibleServer
) -> None:
    unreachable = TraceStore(f"http://127.0.0.1:{free_port()}")
    send(broker, summaries(1))
    with make_worker(broker, unreachable, server.base_url, "g-nostore", batch_size=1) as worker:
        [report] = drain(worker, 1)
    assert (report.stored, report.committed) == (0, False)
    assert report.error is not None and report.error.startswith("store:")
    assert committed_offsets(broker, "g-nostore") == 0


# -- subprocess entry point -----------------------------------------------------------------------------


def _crash_after_store(group_id: str) -> int:
    return crash_after_first_store(
        lambda after_store: EmbeddingWorker(
            {"bootstrap.servers": os.environ["KAFKA_BOOTSTRAP_SERVERS"]},
            TOPIC,
            group_id,
            store=TraceStore(os.environ["TRACE_SUMMARIES_CLICKHOUSE_DSN"]),
            embedder=embedder_for(os.environ["OPENAI_BASE_URL"]),
            batch_size=100,
            batch_timeout_s=5,
            instance_id=CRASH_TEST_INSTANCE_ID,
            consumer_config=TEST_CONSUMER_CONFIG,
            after_store=after_store,
        )
    )


if __name__ == "__main__":
    sys.exit(_crash_after_store(sys.argv[1]))
