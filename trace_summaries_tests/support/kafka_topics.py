"""Reading a whole topic back, to compare what was produced with what was expected."""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition


def read_topic(
    client_config: dict[str, Any], topic: str, expected: int, timeout_s: float = 20.0
) -> list[Message]:
    """Every message of ``topic`` from the beginning, polling until ``expected`` arrived or the timeout."""
    consumer = Consumer({**client_config, "group.id": f"reader-{uuid.uuid4()}", "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        messages: list[Message] = []
        deadline = time.monotonic() + timeout_s
        while len(messages) < expected and time.monotonic() < deadline:
            batch = consumer.consume(num_messages=max(1, expected - len(messages)), timeout=0.5)
            messages += [m for m in batch if m.error() is None]
        return sorted(messages, key=lambda m: (m.partition(), m.offset()))
    finally:
        consumer.close()
