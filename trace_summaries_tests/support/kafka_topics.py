"""Reading a whole topic back, to compare what was produced with what was expected.

``read_topic`` returns *every* message of the topic: it asks the broker for each partition's high watermark
(the offset after the last message it accepted) and reads each partition up to it, then asks again and goes
on until a read ends where the watermarks are. So a count compared with its result is complete, not "at
least": an extra message (a duplicate, a message from a run that should have sent nothing) is in the list.
Call it once the producers are done (their ``flush`` returned, their process exited): what the broker
accepted by then is below the watermarks.

Compare keys with ``Counter`` equality (``message_keys``), and say what differs with ``key_difference``:

    found = message_keys(read_topic(config, topic))
    assert found == expected, key_difference(found, expected)
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

# Keys shown by name in a difference; the rest are counted.
_SHOWN_KEYS = 20


class TopicReadError(RuntimeError):
    """The topic could not be read to its high watermarks: missing, or a partition short at the timeout."""


def read_topic(client_config: Mapping[str, Any], topic: str, timeout_s: float = 20.0) -> list[Message]:
    """Every message of ``topic``, each partition read from its low to its high watermark, sorted by
    (partition, offset). Raises ``TopicReadError`` naming the short partitions when ``timeout_s`` runs out."""
    consumer = Consumer(
        {
            **client_config,
            "group.id": f"reader-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,  # the broker says "end of partition": an empty tail ends the wait
            "auto.offset.reset": "earliest",
        }
    )
    deadline = time.monotonic() + timeout_s
    try:
        partitions = _partitions(consumer, topic, deadline)
        low, high = _watermarks(consumer, topic, partitions, deadline)
        consumer.assign([TopicPartition(topic, p, low[p]) for p in partitions])
        position = dict(low)  # per partition, the next offset to read
        messages: list[Message] = []
        last_error: str | None = None  # retried by the client; shown if the read stays short
        while True:
            while short := [(p, end) for p, end in high.items() if position[p] < end]:
                if time.monotonic() >= deadline:
                    raise TopicReadError(_short_message(topic, timeout_s, high, position, short, last_error))
                # As many as are missing: ``consume`` returns as soon as they are in, not at its timeout.
                wanted = min(100_000, sum(end - position[p] for p, end in short))
                for message in consumer.consume(num_messages=wanted, timeout=_slice(deadline)):
                    partition, offset, error = message.partition(), message.offset(), message.error()
                    if error is not None and error.fatal():
                        raise TopicReadError(f"topic {topic!r}: {error.str()}")
                    if error is None and partition is not None and offset is not None:
                        messages.append(message)
                        position[partition] = max(position[partition], offset + 1)
                    elif error is not None and error.code() == KafkaError._PARTITION_EOF:
                        if partition is not None and offset is not None:  # the partition's end offset
                            position[partition] = max(position[partition], offset)
                    elif error is not None:
                        last_error = error.str()
            # Read up to the watermarks of a moment ago: ask again, so nothing accepted meanwhile is left out.
            _, again = _watermarks(consumer, topic, partitions, deadline)
            if again == high:
                return sorted(messages, key=lambda m: (m.partition() or 0, m.offset() or 0))
            high = again
    finally:
        consumer.close()


def message_keys(messages: Iterable[Message]) -> Counter[str]:
    """How many times each key occurs (a message without a key counts under ``""``)."""
    return Counter((message.key() or b"").decode() for message in messages)


def topic_keys(client_config: Mapping[str, Any], topic: str, timeout_s: float = 20.0) -> Counter[str]:
    """``message_keys`` of the whole topic (``read_topic``)."""
    return message_keys(read_topic(client_config, topic, timeout_s))


def key_difference(found: Counter[str], expected: Counter[str]) -> str:
    """What an assertion on key counts should say: how many messages, which keys are extra or missing."""
    extra, missing = found - expected, expected - found
    parts = [f"{sum(found.values())} messages on the topic, {sum(expected.values())} expected"]
    if extra:
        parts.append(f"extra (beyond the expected count of their key): {_shown(extra)}")
    if missing:
        parts.append(f"missing: {_shown(missing)}")
    if not extra and not missing:
        parts.append("same keys, same counts")
    return "; ".join(parts)


def _shown(counts: Counter[str]) -> str:
    items = sorted(counts.items())
    shown = ", ".join(f"{key!r} x{count}" for key, count in items[:_SHOWN_KEYS])
    return shown + (f" and {len(items) - _SHOWN_KEYS} more keys" if len(items) > _SHOWN_KEYS else "")


def _slice(deadline: float) -> float:
    """One wait of a poll loop: short, and never past the deadline."""
    return max(0.0, min(0.5, deadline - time.monotonic()))


def _partitions(consumer: Consumer, topic: str, deadline: float) -> list[int]:
    metadata = consumer.list_topics(topic, timeout=max(1.0, deadline - time.monotonic()))
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        raise TopicReadError(f"topic {topic!r} not found: {found.error if found else 'no metadata'}")
    return sorted(found.partitions)


def _watermarks(
    consumer: Consumer, topic: str, partitions: list[int], deadline: float
) -> tuple[dict[int, int], dict[int, int]]:
    """Each partition's low and high watermarks, asked of the broker (never a cached value)."""
    low: dict[int, int] = {}
    high: dict[int, int] = {}
    for partition in partitions:
        timeout = max(1.0, deadline - time.monotonic())
        low[partition], high[partition] = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=timeout, cached=False
        )
    return low, high


def _short_message(
    topic: str,
    timeout_s: float,
    high: Mapping[int, int],
    position: Mapping[int, int],
    short: list[tuple[int, int]],
    last_error: str | None,
) -> str:
    lines = [f"topic {topic!r} not read to its high watermarks within {timeout_s:g}s:"]
    for partition, end in short:
        at = position[partition]
        lines.append(
            f"  partition {partition}: read to offset {at} of high watermark {end}, {end - at} short"
        )
    complete = sorted(set(high) - {partition for partition, _ in short})
    if complete:
        lines.append(f"  read whole: partitions {complete}")
    if last_error:
        lines.append(f"  last error from the broker: {last_error}")
    return "\n".join(lines)
