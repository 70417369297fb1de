"""The embedding worker: Kafka requests in, vectors in ClickHouse out, at least once, stored idempotently.

One batch at a time (up to ``batch_size`` messages or ``batch_timeout_s``): parse, embed, insert, and only
then commit the batch's offsets. A crash anywhere before the commit re-delivers the batch, and since a
request always produces the same sorting key in ``document_embeddings`` (its ``timestamp`` is the summary
event's, not "now"), the re-insert is a newer version of the same row and ``FINAL`` shows one.

What is skipped and what is retried:
- a message that is not a valid request (bad JSON, missing fields, unknown model, empty content) is logged
  and skipped, and its offset committed with the batch: retrying it can never succeed;
- a document the endpoint rejects (HTTP 400/413/422) is isolated from its batch, retried once cut to a
  hard byte bound, then skipped;
- an unavailable endpoint or store (network, 429, 5xx, auth, ClickHouse down) stores nothing, rewinds the
  consumer to the batch start and retries with backoff: the documents are fine, the world is not.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pydantic
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import ConfigDict, field_validator

from trace_summaries.config import DEFAULT_EMBEDDING_REQUESTS_TOPIC
from trace_summaries.queue.request import EmbeddingRequest
from trace_summaries.store import TraceStore
from trace_summaries.worker.document_embeddings import (
    EmbeddingRow,
    ensure_embeddings_table,
    insert_embeddings,
)
from trace_summaries.worker.embedder import Embedder, EmbeddingRejected, EmbeddingUnavailable
from trace_summaries.worker.embedding_model import EmbeddingModel, UnknownEmbeddingModel
from trace_summaries.worker.token_limit import cut_to_byte_limit

logger = logging.getLogger(__name__)

DEFAULT_GROUP_ID = "embedding-worker"
DEFAULT_BATCH_SIZE = 1000
DEFAULT_BATCH_TIMEOUT_S = 10.0
# consume() does not return for signals; polling in short slices keeps SIGTERM handling prompt.
_POLL_SLICE_S = 0.5
_RETRY_BACKOFF_S = (1.0, 60.0)  # first and maximum wait after an unavailable endpoint or store


def ensure_topic(kafka_config: Mapping[str, Any], topic: str, *, timeout_s: float = 10.0) -> bool:
    """Creates ``topic`` (one partition) when the broker does not have it; True if it was created.

    A consumer subscribed to a topic that does not exist yet only notices it at its next metadata refresh
    (librdkafka: every 5 minutes), so a worker started before the first summary was queued, as `make dev`
    starts it, would sit idle that long. Best effort: a broker that refuses (no rights, auto-creation
    managed elsewhere) is logged and the worker subscribes anyway.
    """
    admin = AdminClient(dict(kafka_config))
    try:
        if topic in admin.list_topics(timeout=timeout_s).topics:
            return False
        for future in admin.create_topics([NewTopic(topic, num_partitions=1)]).values():
            future.result(timeout=timeout_s)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return False
        logger.warning("topic %s is missing and could not be created: %s", topic, exc)
        return False
    logger.info("created topic %s (1 partition)", topic)
    return True


class ReceivedEmbeddingRequest(EmbeddingRequest):
    """A request as read from the topic, parsed more leniently than we produce it: unknown extra fields
    (a newer producer) are ignored, and a timestamp without an offset (the original producer wrote
    ``datetime.now().isoformat()``) is taken as UTC rather than dropping the message."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    timestamp: datetime  # naive accepted here, made aware below

    @field_validator("timestamp")
    @classmethod
    def _naive_is_utc(cls, value: datetime) -> datetime:
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class BatchReport:
    """What one batch did. ``error`` is set when nothing was stored and the batch will be read again."""

    consumed: int = 0
    stored: int = 0
    skipped: int = 0
    committed: bool = False
    error: str | None = None


@dataclass(frozen=True, slots=True)
class _Document:
    request: EmbeddingRequest
    model: EmbeddingModel


class EmbeddingWorker:
    """Consumes ``topic`` as ``group_id`` and writes embeddings to ``store``'s ``document_embeddings``.

    ``instance_id`` turns on static group membership (``group.instance.id``, e.g. the pod name): a worker
    restarted under the same id gets its partitions back at once, without a rebalance and without waiting
    for the crashed member's session to expire.

    ``after_store`` is called between the insert and the commit; it exists so a test can crash the process
    exactly there (and for metrics), not to change what the worker does.
    """

    def __init__(
        self,
        kafka_config: Mapping[str, Any],
        topic: str = DEFAULT_EMBEDDING_REQUESTS_TOPIC,
        group_id: str = DEFAULT_GROUP_ID,
        *,
        store: TraceStore,
        embedder: Embedder,
        batch_size: int = DEFAULT_BATCH_SIZE,
        batch_timeout_s: float = DEFAULT_BATCH_TIMEOUT_S,
        instance_id: str | None = None,
        consumer_config: Mapping[str, Any] | None = None,
        after_store: Callable[[BatchReport], None] | None = None,
    ) -> None:
        if batch_size < 1 or batch_timeout_s <= 0:
            raise ValueError("batch_size must be >= 1 and batch_timeout_s > 0")
        self.topic = topic
        self.group_id = group_id
        self.store = store
        self.embedder = embedder
        self.batch_size = batch_size
        self.batch_timeout_s = batch_timeout_s
        self._after_store = after_store
        self._config: dict[str, Any] = {
            **kafka_config,
            "group.id": group_id,
            # Offsets move only when a batch is stored: never auto-commit, never on close.
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "logger": logger,
            **({"group.instance.id": instance_id} if instance_id else {}),
            **(consumer_config or {}),
        }
        self._consumer: Consumer | None = None
        self._table_ready = False
        # When the worker was last busy: partitions assigned, a message received or a batch handled.
        # None while it holds no assignment (joining the group, or in a rebalance): that is not idleness.
        self._idle_since: float | None = None

    def _client(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(self._config)
            self._consumer.subscribe(
                [self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
            )
        return self._consumer

    # Called from within consume(); not assigning here lets the client assign the partitions as given.
    def _on_assign(self, _consumer: Consumer, _partitions: list[TopicPartition]) -> None:
        self._idle_since = time.monotonic()

    def _on_revoke(self, _consumer: Consumer, _partitions: list[TopicPartition]) -> None:
        self._idle_since = None

    def idle_seconds(self) -> float:
        """How long the worker's polls have received no message while it held its assignment (0 without)."""
        return 0.0 if self._idle_since is None else time.monotonic() - self._idle_since

    def run(self, stop_event: threading.Event, *, exit_when_idle_s: float | None = None) -> None:
        """Processes batches until ``stop_event`` is set; the batch in hand is finished first.

        With ``exit_when_idle_s``, also returns once the worker's polls received no message for that long
        (counted from the last message, or from getting its partitions): everything stored is committed.
        """
        if exit_when_idle_s is not None and not exit_when_idle_s > 0:
            raise ValueError(f"exit_when_idle_s must be > 0, got {exit_when_idle_s}")
        backoff = _RETRY_BACKOFF_S[0]
        logger.info("embedding worker consuming %s as %s", self.topic, self.group_id)
        try:
            while not stop_event.is_set():
                report = self.run_once(stop_event, exit_when_idle_s=exit_when_idle_s)
                if report.error is None:
                    backoff = _RETRY_BACKOFF_S[0]
                    if exit_when_idle_s is not None and self.idle_seconds() >= exit_when_idle_s:
                        logger.info("no message for %.1fs: exiting (--exit-when-idle)", self.idle_seconds())
                        break
                    continue
                logger.warning("batch not stored (%s); retrying in %.0fs", report.error, backoff)
                stop_event.wait(backoff)  # a retry delay that a stop request cuts short
                backoff = min(backoff * 2, _RETRY_BACKOFF_S[1])
        finally:
            self.close()
        logger.info("embedding worker stopped")

    def run_once(
        self, stop_event: threading.Event | None = None, *, exit_when_idle_s: float | None = None
    ) -> BatchReport:
        """Reads one batch, stores it and commits it (or rewinds it when it could not be stored).

        With ``exit_when_idle_s``, an empty batch ends as soon as the worker has been idle that long,
        rather than at the batch timeout.
        """
        consumer = self._client()
        messages = self._consume_batch(consumer, stop_event, exit_when_idle_s)
        if not messages:
            return BatchReport()
        try:
            report = self.process_batch(messages)
        except (EmbeddingUnavailable, _StoreUnavailable) as exc:
            self._rewind(consumer, messages)
            self._busy()
            return BatchReport(consumed=len(messages), error=str(exc))
        if self._after_store is not None:
            self._after_store(report)
        committed = self._commit(consumer, messages)
        self._busy()  # embedding and storing took time, but the worker was not idle then
        logger.info(
            "batch of %d: %d embeddings stored, %d skipped, %s",
            report.consumed,
            report.stored,
            report.skipped,
            "committed" if committed else "NOT committed",
        )
        return BatchReport(report.consumed, report.stored, report.skipped, committed=committed)

    def process_batch(self, messages: Sequence[Message]) -> BatchReport:
        """Parses, embeds and stores a batch; commits nothing. Raises only for retryable failures."""
        documents, skipped = self._documents(messages)
        rows: list[EmbeddingRow] = []
        by_model: dict[EmbeddingModel, list[EmbeddingRequest]] = {}
        for document in documents:
            by_model.setdefault(document.model, []).append(document.request)
        for model, requests in by_model.items():
            embedded = self._embed_isolating(model, requests)
            skipped += len(requests) - len(embedded)
            rows.extend(_row(request, model, vector) for request, vector in embedded)
        try:
            if not self._table_ready:  # once per worker: a fresh store needs no separate set-up step
                ensure_embeddings_table(self.store)
                self._table_ready = True
            stored = insert_embeddings(self.store, rows)
        except Exception as exc:  # the driver's errors vary by engine; all mean "not stored, try again"
            raise _StoreUnavailable(f"store: {type(exc).__name__}: {exc}") from exc
        return BatchReport(consumed=len(messages), stored=stored, skipped=skipped)

    def _busy(self) -> None:
        if self._idle_since is not None:
            self._idle_since = time.monotonic()

    def _consume_batch(
        self, consumer: Consumer, stop_event: threading.Event | None, exit_when_idle_s: float | None = None
    ) -> list[Message]:
        batch: list[Message] = []
        deadline = time.monotonic() + self.batch_timeout_s
        while len(batch) < self.batch_size and not (stop_event is not None and stop_event.is_set()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for message in consumer.consume(self.batch_size - len(batch), min(remaining, _POLL_SLICE_S)):
                error = message.error()
                if error is None:
                    batch.append(message)
                    self._busy()
                elif error.code() != KafkaError._PARTITION_EOF:
                    logger.warning("Kafka consumer error: %s", error.str())
            if not batch and exit_when_idle_s is not None and self.idle_seconds() >= exit_when_idle_s:
                break
        return batch

    def _documents(self, messages: Iterable[Message]) -> tuple[list[_Document], int]:
        """Valid (request, model) pairs, one per stored row; later duplicates in the batch win."""
        documents: dict[tuple[Any, ...], _Document] = {}
        skipped = 0
        for message in messages:
            request = _parse(message)
            if request is None:
                skipped += 1
                continue
            for name in dict.fromkeys(request.models):
                try:
                    model = EmbeddingModel.parse(name)
                except UnknownEmbeddingModel as exc:
                    _log_skip(message, str(exc))
                    skipped += 1
                    continue
                documents[_identity(request, model)] = _Document(request, model)
        return list(documents.values()), skipped

    def _embed_isolating(
        self, model: EmbeddingModel, requests: list[EmbeddingRequest]
    ) -> list[tuple[EmbeddingRequest, list[float]]]:
        """Embeds all requests; when the endpoint rejects the batch, finds and drops the culprits."""
        try:
            vectors = self.embedder.embed(model, [request.content for request in requests])
            return list(zip(requests, vectors, strict=True))
        except EmbeddingRejected as exc:
            if len(requests) > 1:
                logger.warning(
                    "%s rejected a batch of %d (%s); embedding one by one", model.name, len(requests), exc
                )
        embedded: list[tuple[EmbeddingRequest, list[float]]] = []
        for request in requests:
            vector = self._embed_one(model, request)
            if vector is not None:
                embedded.append((request, vector))
        return embedded

    def _embed_one(self, model: EmbeddingModel, request: EmbeddingRequest) -> list[float] | None:
        # The token estimate can be short for unusual text: the second try uses the hard byte bound.
        for content in (request.content, cut_to_byte_limit(request.content, model.max_input_tokens)):
            try:
                return self.embedder.embed(model, [content])[0]
            except EmbeddingRejected as exc:
                error = str(exc)
        logger.warning(
            "skipping %s/%s/%s for %s: rejected by the endpoint (%s)",
            request.team_id,
            request.document_type,
            request.document_id,
            model.name,
            error,
        )
        return None

    def _commit(self, consumer: Consumer, messages: Sequence[Message]) -> bool:
        offsets = [
            TopicPartition(topic, partition, offset + 1)
            for (topic, partition), offset in _offset_bounds(messages, max).items()
        ]
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
            return True
        except KafkaException as exc:
            # Typically a rebalance took the partitions: the new owner re-reads the batch and the table
            # deduplicates it, so this is logged, not fatal.
            logger.warning("offset commit failed, the batch will be delivered again: %s", exc)
            return False

    def _rewind(self, consumer: Consumer, messages: Sequence[Message]) -> None:
        for (topic, partition), offset in _offset_bounds(messages, min).items():
            try:
                consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:  # partition no longer ours: its new owner starts at the commit
                logger.info("cannot rewind %s[%d]: %s", topic, partition, exc)

    def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            consumer.close()

    def __enter__(self) -> EmbeddingWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _StoreUnavailable(Exception):
    """The insert failed; nothing of the batch counts as stored."""


def _parse(message: Message) -> EmbeddingRequest | None:
    value = message.value()
    try:
        request = ReceivedEmbeddingRequest.model_validate_json(value or b"")
    except pydantic.ValidationError as exc:
        reason = "invalid JSON" if _is_json_error(value) else _validation_summary(exc)
        _log_skip(message, reason)
        return None
    if not request.content.strip():
        _log_skip(message, "empty content")
        return None
    return request


def _is_json_error(value: bytes | None) -> bool:
    try:
        json.loads(value or b"")
    except ValueError:
        return True
    return False


def _validation_summary(exc: pydantic.ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'message'}: {e['msg']}" for e in exc.errors()[:5])


def _log_skip(message: Message, reason: str) -> None:
    logger.warning(
        "skipping message %s[%s]@%s (key %r): %s",
        message.topic(),
        message.partition(),
        message.offset(),
        message.key(),
        reason,
    )


def _identity(request: EmbeddingRequest, model: EmbeddingModel) -> tuple[Any, ...]:
    """The table's sorting key for this request: two requests with the same identity are one row."""
    return (
        request.team_id,
        request.timestamp.astimezone(UTC).date(),
        request.product,
        request.document_type,
        model.name,
        request.rendering,
        request.document_id,
    )


def _row(request: EmbeddingRequest, model: EmbeddingModel, vector: list[float]) -> EmbeddingRow:
    return EmbeddingRow(
        team_id=request.team_id,
        product=request.product,
        document_type=request.document_type,
        model_name=model.name,
        rendering=request.rendering,
        document_id=request.document_id,
        timestamp=request.timestamp,
        content=request.content,
        embedding=vector,
    )


def _offset_bounds(
    messages: Iterable[Message], pick: Callable[[int, int], int]
) -> dict[tuple[str, int], int]:
    bounds: dict[tuple[str, int], int] = {}
    for message in messages:
        key = (message.topic() or "", message.partition() or 0)
        offset = message.offset() or 0
        bounds[key] = pick(bounds[key], offset) if key in bounds else offset
    return bounds
