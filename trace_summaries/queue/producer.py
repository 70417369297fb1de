"""Sends embedding requests to Kafka and reports, per message, whether the broker acknowledged it.

Embeddings are a by-product of the summaries, so this module never raises for a delivery problem: every
request ends up counted as succeeded or failed in a ``SendReport`` and the caller decides what to record.
``send`` is bounded in time: librdkafka's ``message.timeout.ms`` is set to the flush timeout, so with the
broker down each message fails with "Message timed out" when the flush gives up, and whatever is still
queued after the flush is purged (and counted failed) rather than left to be delivered behind our back.

The producer is idempotent (``enable.idempotence``, which implies ``acks=all``): librdkafka's own retries
cannot duplicate a message. Re-sending the same summaries later (a re-materialization) does produce new
messages, with the same keys and contents; the worker's table deduplicates them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from trace_summaries.config import DEFAULT_EMBEDDING_REQUESTS_TOPIC
from trace_summaries.queue.request import EmbeddingRequest, message_key

logger = logging.getLogger(__name__)

DEFAULT_FLUSH_TIMEOUT_S = 30.0
# Per-message errors kept in a report; the count is always exact, but a dead broker and 10k summaries
# should not put 10k identical lines into run metadata.
MAX_REPORTED_ERRORS = 20
# Time granted past the message timeout for librdkafka to hand the timed-out reports back to us.
_REPORT_GRACE_S = 1.0


@dataclass(frozen=True, slots=True)
class SendReport:
    """Outcome of one ``send``: ``succeeded + failed`` equals the number of requests given."""

    succeeded: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.succeeded + self.failed


class _Deliveries:
    """Delivery reports of one ``send`` call, filled by librdkafka's callbacks (called from poll/flush)."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        self.outcome: dict[int, str | None] = {}  # index -> None (delivered) or error text

    def callback(self, index: int) -> Any:
        def on_delivery(error: KafkaError | None, _message: Message) -> None:
            self.outcome[index] = None if error is None else error.str()

        return on_delivery

    def fail(self, index: int, error: str) -> None:
        self.outcome.setdefault(index, error)

    def report(self) -> SendReport:
        for index in range(len(self.keys)):
            # A request with no report at all after the purge: count it failed, never silently succeeded.
            self.fail(index, "no delivery report before the flush timeout")
        errors = [f"{self.keys[i]}: {err}" for i, err in sorted(self.outcome.items()) if err is not None]
        return SendReport(
            succeeded=len(self.keys) - len(errors), failed=len(errors), errors=errors[:MAX_REPORTED_ERRORS]
        )


class EmbeddingRequestProducer:
    """A long-lived idempotent producer of ``EmbeddingRequest`` messages on one topic.

    ``kafka_config`` is the connection and security part (``config.KafkaConfig.client_config``); delivery
    settings are set here because the time bound of ``send`` depends on them.
    """

    def __init__(
        self,
        kafka_config: Mapping[str, Any],
        topic: str = DEFAULT_EMBEDDING_REQUESTS_TOPIC,
        *,
        flush_timeout_s: float = DEFAULT_FLUSH_TIMEOUT_S,
    ) -> None:
        if flush_timeout_s <= 0:
            raise ValueError("flush_timeout_s must be positive")
        self.topic = topic
        self.flush_timeout_s = flush_timeout_s
        self._config: dict[str, Any] = {
            **kafka_config,
            "enable.idempotence": True,
            "acks": "all",
            "message.timeout.ms": max(1, int(flush_timeout_s * 1000)),
            "linger.ms": 5,
            "logger": logger,
            "error_cb": self._on_client_error,
        }
        self._producer: Producer | None = None
        self._fatal = False

    def _on_client_error(self, error: KafkaError) -> None:
        # Connection errors are reported per message through the delivery reports; here only note the
        # fatal ones (an idempotent producer whose sequence broke cannot be used again).
        if error.fatal():
            self._fatal = True
            logger.error("Kafka producer fatal error: %s", error.str())
        else:
            logger.debug("Kafka producer error: %s", error.str())

    def _client(self) -> Producer:
        if self._producer is None or self._fatal:
            self._producer = Producer(self._config)
            self._fatal = False
        return self._producer

    def connect(self) -> None:
        """Starts the client ahead of ``send``: an idempotent producer cannot send before the broker gives it
        a producer id, which librdkafka requests on a 500 ms timer (about 1 s in all). Started early, that
        wait overlaps other work. A configuration error is left for ``send`` to report per request."""
        try:
            self._client()
        except KafkaException as exc:
            logger.debug("Kafka producer not started ahead of send: %s", exc)

    def send(self, requests: Iterable[EmbeddingRequest]) -> SendReport:
        """Produces every request and waits (at most about ``flush_timeout_s``) for the broker's answer."""
        batch = list(requests)
        deliveries = _Deliveries([message_key(request) for request in batch])
        if not batch:
            return deliveries.report()
        deadline = time.monotonic() + self.flush_timeout_s + _REPORT_GRACE_S
        try:
            producer = self._client()
        except KafkaException as exc:  # an invalid configuration: every request fails, nothing is raised
            for index in range(len(batch)):
                deliveries.fail(index, f"producer not created: {exc}")
            return deliveries.report()

        for index, request in enumerate(batch):
            self._produce(producer, deliveries, index, request, deadline)
        remaining = producer.flush(max(0.0, deadline - time.monotonic()))
        if remaining:
            producer.purge(in_queue=True, in_flight=True)
            producer.flush(0)  # serves the purge's delivery reports, as purge() asks
        report = deliveries.report()
        log = logger.warning if report.failed else logger.info
        log("embedding requests to %s: %d delivered, %d failed", self.topic, report.succeeded, report.failed)
        return report

    def _produce(
        self,
        producer: Producer,
        deliveries: _Deliveries,
        index: int,
        request: EmbeddingRequest,
        deadline: float,
    ) -> None:
        while True:
            try:
                producer.produce(
                    self.topic,
                    key=deliveries.keys[index].encode(),
                    value=request.to_json_bytes(),
                    on_delivery=deliveries.callback(index),
                )
                return
            except BufferError:
                # Local queue full: serve delivery reports to make room, within the same deadline.
                if time.monotonic() >= deadline:
                    deliveries.fail(index, "local producer queue full until the flush timeout")
                    return
                producer.poll(0.1)
            except KafkaException as exc:  # e.g. message larger than message.max.bytes
                deliveries.fail(index, exc.args[0].str() if exc.args else str(exc))
                return

    def close(self) -> None:
        """Drops anything still queued (``send`` never leaves any) and releases the client."""
        if self._producer is not None:
            self._producer.purge(in_queue=True, in_flight=True)
            self._producer.flush(0)
            self._producer = None

    def __enter__(self) -> EmbeddingRequestProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
