"""What the embedding worker's tests share: the topic, consumer settings short enough for tests, sending
requests, reading back stored rows and committed offsets, and a worker that dies between store and commit."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from trace_summaries.queue.producer import EmbeddingRequestProducer
from trace_summaries.queue.request import EmbeddingRequest, SummaryDocument, build_embedding_request
from trace_summaries.store import TraceStore
from trace_summaries.worker.consumer import BatchReport, EmbeddingWorker
from trace_summaries_harness.kafka_broker import KafkaBroker

TOPIC = "document_embeddings_input"
# A crashed member holds its partitions until its session expires: keep that short in tests (6 s is the
# broker's minimum, as in Kafka's group.min.session.timeout.ms; librdkafka's default is 45 s).
TEST_CONSUMER_CONFIG = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
CRASH_EXIT_CODE = 17
CRASH_MESSAGE = "rows stored; exiting before the commit"


SUMMARY_TIME = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)


def summaries(count: int, *, models: Sequence[str], titles: Sequence[str] = ()) -> list[EmbeddingRequest]:
    """``count`` requests of team 5 (``trace-0``...), one minute apart, with ``titles`` where given."""
    return [
        build_embedding_request(
            SummaryDocument(
                team_id=5,
                trace_id=f"trace-{index}",
                mode="detailed",
                batch_run_id="5_2026-11-03T11:00:00+00:00",
                timestamp=SUMMARY_TIME + timedelta(minutes=index),
                title=titles[index] if index < len(titles) else f"Trace {index} about topic {index}",
                bullets=[f"step {index} happened"],
            ),
            models=models,
        )
        for index in range(count)
    ]


def send(broker: KafkaBroker, requests: list[EmbeddingRequest]) -> None:
    with EmbeddingRequestProducer(broker.client_config(), TOPIC, flush_timeout_s=10) as producer:
        assert producer.send(requests).succeeded == len(requests)


def stored(store: TraceStore, *, final: bool = True) -> list[dict[str, Any]]:
    sql = f"SELECT * FROM document_embeddings {'FINAL' if final else ''} ORDER BY document_id, model_name"
    with store.session() as client:
        return list(client.query(sql).named_results())


def committed_offsets(broker: KafkaBroker, group_id: str, partitions: int = 2) -> int:
    """Sum over the topic's partitions of the group's committed offsets (messages acknowledged)."""
    consumer = Consumer({**broker.client_config(), "group.id": group_id})
    try:
        committed = consumer.committed([TopicPartition(TOPIC, p) for p in range(partitions)], timeout=10)
        return sum(max(tp.offset, 0) for tp in committed)
    finally:
        consumer.close()


def crash_after_first_store(make_worker: Callable[[Callable[[BatchReport], None]], EmbeddingWorker]) -> int:
    """Runs a worker (built by ``make_worker`` with the given ``after_store`` hook) that dies right after its
    first insert, before committing: a real crash, mid-protocol. For a subprocess's ``__main__``."""

    def die(report: BatchReport) -> None:
        print(f"{report.stored} {CRASH_MESSAGE}", flush=True)
        os._exit(CRASH_EXIT_CODE)

    worker = make_worker(die)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        worker.run_once()
    return 3  # never got a batch
