"""Embeddings of trace summaries: the Kafka request contract, its producer, the worker that turns requests
into vectors in ClickHouse, and semantic search over them.

A reader following one summary walks ``request`` (what is sent) -> ``producer`` (how it is sent) ->
``worker`` (how it becomes a row of ``document_embeddings``) -> ``search`` (how the rows are used).
"""

from trace_summaries.embeddings.kafka_config import embedding_requests_topic, kafka_config_from_env
from trace_summaries.embeddings.producer import EmbeddingRequestProducer, SendReport
from trace_summaries.embeddings.request import (
    DEFAULT_EMBEDDING_MODELS,
    PRODUCT,
    EmbeddingRequest,
    SummaryDocument,
    build_embedding_request,
    document_type_for_mode,
    embedding_content,
    message_key,
)

__all__ = [
    "DEFAULT_EMBEDDING_MODELS",
    "PRODUCT",
    "EmbeddingRequest",
    "EmbeddingRequestProducer",
    "SendReport",
    "SummaryDocument",
    "build_embedding_request",
    "document_type_for_mode",
    "embedding_content",
    "embedding_requests_topic",
    "kafka_config_from_env",
    "message_key",
]
