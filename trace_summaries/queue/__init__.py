"""Stage 5, queue: one embedding request per written summary, on Kafka (``document_embeddings_input``).

A reader following one summary walks ``summary_documents`` (what of the event is embedded) -> ``request``
(the message contract) -> ``producer`` (how it is sent, idempotently, with stable keys). The worker that
turns requests into vectors runs in its own process (``trace_summaries.worker``).
"""

from trace_summaries.queue.producer import EmbeddingRequestProducer, SendReport
from trace_summaries.queue.request import (
    PRODUCT,
    EmbeddingRequest,
    SummaryDocument,
    build_embedding_request,
    document_type_for_mode,
    embedding_content,
    message_key,
)

__all__ = [
    "PRODUCT",
    "EmbeddingRequest",
    "EmbeddingRequestProducer",
    "SendReport",
    "SummaryDocument",
    "build_embedding_request",
    "document_type_for_mode",
    "embedding_content",
    "message_key",
]
