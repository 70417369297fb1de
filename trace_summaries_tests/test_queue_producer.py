"""The embedding request producer against a real Kafka-protocol broker (noida-db)."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Message

from trace_summaries.queue.producer import MAX_REPORTED_ERRORS, EmbeddingRequestProducer
from trace_summaries.queue.request import EmbeddingRequest, SummaryDocument, build_embedding_request
from trace_summaries_harness.kafka_broker import KafkaBroker, running_kafka_broker
from trace_summaries_tests.support.kafka_topics import key_difference, message_keys
from trace_summaries_tests.support.kafka_topics import read_topic as read_whole_topic

TOPIC = "document_embeddings_input"
SUMMARY_TIME = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    with running_kafka_broker(tmp_path / "kafka") as kafka:
        kafka.create_topic(TOPIC, partitions=2)
        yield kafka


def requests(count: int, team_id: int = 2) -> list[EmbeddingRequest]:
    return [
        build_embedding_request(
            SummaryDocument(
                team_id=team_id,
                trace_id=f"trace-{index}",
                mode="detailed",
                batch_run_id=f"{team_id}_2026-11-03T11:00:00+00:00",
                timestamp=SUMMARY_TIME + timedelta(minutes=index),
                title=f"Trace number {index}",
                bullets=[f"did thing {index}"],
            )
        )
        for index in range(count)
    ]


def value(message: Message) -> dict[str, object]:
    return dict(json.loads(message.value() or b""))


def read_topic(broker: KafkaBroker) -> list[Message]:
    """Every message on the topic (each partition read to its high watermark), not just the first few."""
    return read_whole_topic(broker.client_config(), TOPIC)


def keys_of(count: int, times: int = 1, team_id: int = 2) -> Counter[str]:
    """The keys of ``requests(count)``, each ``times`` times: what the topic must hold, completely."""
    return Counter({f"{team_id}:llm-trace-summary-detailed:trace-{index}": times for index in range(count)})


def test_each_request_is_one_message_matching_the_contract_field_by_field(broker: KafkaBroker) -> None:
    sent = requests(3)
    with EmbeddingRequestProducer(broker.client_config(), TOPIC, flush_timeout_s=10) as producer:
        report = producer.send(sent)

    assert (report.succeeded, report.failed, report.errors) == (3, 0, [])
    messages = read_topic(broker)
    found = message_keys(messages)
    assert found == keys_of(3), key_difference(found, keys_of(3))
    received = {str(value(m)["document_id"]): m for m in messages}
    assert sorted(received) == ["trace-0", "trace-1", "trace-2"]
    for index in range(3):
        message = received[f"trace-{index}"]
        assert message.key() == f"2:llm-trace-summary-detailed:trace-{index}".encode()
        assert value(message) == {
            "team_id": 2,
            "product": "llm-analytics",
            "document_type": "llm-trace-summary-detailed",
            "rendering": "2_2026-11-03T11:00:00+00:00",
            "document_id": f"trace-{index}",
            "timestamp": (SUMMARY_TIME + timedelta(minutes=index)).isoformat(),
            "content": f"Title: Trace number {index}\n\nSummary:\n- did thing {index}",
            "models": ["multilingual-e5-small-384"],
            "metadata": {},
        }


def test_sending_the_same_requests_twice_resends_them_with_the_same_keys(broker: KafkaBroker) -> None:
    with EmbeddingRequestProducer(broker.client_config(), TOPIC, flush_timeout_s=10) as producer:
        first = producer.send(requests(4))
        second = producer.send(requests(4))

    assert (first.succeeded, second.succeeded) == (4, 4)
    messages = read_topic(broker)
    found = message_keys(messages)
    assert found == keys_of(4, times=2), key_difference(found, keys_of(4, times=2))
    by_key: dict[bytes | None, list[bytes | None]] = {}
    for message in messages:
        by_key.setdefault(message.key(), []).append(message.value())
    assert len(by_key) == 4
    # Same key -> same partition, and the re-sent message is byte-for-byte the first one.
    assert all(len(values) == 2 and values[0] == values[1] for values in by_key.values())


def test_broker_down_counts_every_request_failed_within_the_flush_timeout(broker: KafkaBroker) -> None:
    broker.stop()
    producer = EmbeddingRequestProducer(broker.client_config(), TOPIC, flush_timeout_s=2)

    started = time.monotonic()
    report = producer.send(requests(MAX_REPORTED_ERRORS + 5))
    elapsed = time.monotonic() - started

    assert (report.succeeded, report.failed) == (0, MAX_REPORTED_ERRORS + 5)
    assert len(report.errors) == MAX_REPORTED_ERRORS  # the count is exact, the list is capped
    assert report.errors[0].startswith("2:llm-trace-summary-detailed:trace-")
    assert "timed out" in report.errors[0]
    assert elapsed < 2 + 2.5, f"send took {elapsed:.1f}s with a 2s flush timeout"


def test_a_producer_outlives_a_broker_restart(broker: KafkaBroker) -> None:
    # A short reconnect backoff (librdkafka's grows to 10 s) so the reconnection fits in one flush timeout.
    config = {**broker.client_config(), "reconnect.backoff.max.ms": 200}
    producer = EmbeddingRequestProducer(config, TOPIC, flush_timeout_s=3)
    assert producer.send(requests(1)).succeeded == 1
    broker.stop()
    assert producer.send(requests(2)[1:]).failed == 1
    broker.start()

    assert producer.send(requests(3)[2:]).succeeded == 1
    producer.close()
    # The broker kept the message sent before its restart; the failed one was never written.
    found = message_keys(read_topic(broker))
    wanted = Counter(["2:llm-trace-summary-detailed:trace-0", "2:llm-trace-summary-detailed:trace-2"])
    assert found == wanted, key_difference(found, wanted)


def test_an_unreachable_address_fails_fast_without_raising() -> None:
    producer = EmbeddingRequestProducer({"bootstrap.servers": "127.0.0.1:1"}, TOPIC, flush_timeout_s=1)
    started = time.monotonic()
    report = producer.send(requests(2))
    assert (report.succeeded, report.failed) == (0, 2)
    assert time.monotonic() - started < 1 + 2.5


def test_sending_nothing_reports_nothing(broker: KafkaBroker) -> None:
    assert EmbeddingRequestProducer(broker.client_config(), TOPIC).send([]).total == 0


def test_an_invalid_client_configuration_fails_every_request_instead_of_raising() -> None:
    invalid = {"bootstrap.servers": "127.0.0.1:1", "security.protocol": "NOPE"}
    producer = EmbeddingRequestProducer(invalid, TOPIC)
    report = producer.send(requests(2))
    assert (report.succeeded, report.failed) == (0, 2)
    assert "producer not created" in report.errors[0]
