"""The `embedding_requests` asset: one Kafka message per written summary, for search and clustering."""

from typing import Any

import dagster as dg
from pydantic import Field

from trace_summaries.defs.partition_sets import TEAM_HOUR
from trace_summaries.defs.resources import KafkaResource
from trace_summaries.queue import DEFAULT_EMBEDDING_MODELS, build_embedding_request
from trace_summaries.queue.summary_documents import summary_document
from trace_summaries.write.event import SummaryEvent


class EmbeddingRequestsConfig(dg.Config):
    models: list[str] = Field(default_factory=lambda: list(DEFAULT_EMBEDDING_MODELS))


@dg.asset(
    partitions_def=TEAM_HOUR,
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"kafka"},
    group_name="trace_summaries",
)
def embedding_requests(
    context: dg.AssetExecutionContext,
    config: EmbeddingRequestsConfig,
    trace_summaries: dict[str, list[SummaryEvent]],
    kafka: KafkaResource,
) -> dg.MaterializeResult:
    """Reads the summaries back from the events table and queues them; a failed send never fails the
    summaries (they are already written) and a re-materialization re-sends with the same keys."""
    requests = [
        build_embedding_request(summary_document(event), models=config.models)
        for events in trace_summaries.values()
        for event in events
    ]
    metadata: dict[str, Any] = {"embedding_requests": len(requests), "topic": kafka.topic}
    if not kafka.configured:
        context.log.warning("KAFKA_BOOTSTRAP_SERVERS is not set: embedding requests were not sent")
        return dg.MaterializeResult(
            metadata={
                **metadata,
                "embedding_requests_succeeded": 0,
                "embedding_requests_failed": 0,
                "embedding_requests_skipped": len(requests),
            }
        )
    with kafka.producer() as producer:
        report = producer.send(requests)
    if report.failed:
        context.log.warning(
            f"{report.failed} of {len(requests)} embedding requests failed: {report.errors[:3]}"
        )
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "embedding_requests_succeeded": report.succeeded,
            "embedding_requests_failed": report.failed,
            "embedding_requests_skipped": 0,
            "errors": dg.MetadataValue.json(report.errors),
        }
    )
