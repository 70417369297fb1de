"""The `embedding_requests` asset: one Kafka message per written summary, for search and clustering."""

from collections.abc import Mapping
from typing import Any

import dagster as dg
from pydantic import Field

from trace_summaries.config import embedding_models
from trace_summaries.defs.partition_sets import TEAM_HOUR
from trace_summaries.defs.resources import KafkaResource
from trace_summaries.defs.trace_summaries import TraceSummariesConfig
from trace_summaries.queue import build_embedding_request
from trace_summaries.queue.summary_documents import summary_documents
from trace_summaries.write.event import SummaryEvent

SUMMARIES_NODE = "trace_summaries"


class EmbeddingRequestsConfig(dg.Config):
    # Unset: the configured models (`TRACE_SUMMARIES_EMBEDDING_MODELS`; else the local model, or the API one
    # when `OPENAI_API_KEY` is set), resolved when the run starts.
    models: list[str] | None = None
    # Which stored summaries to queue when `trace_summaries` is not part of the run (a re-send of what is
    # already written): one mode, or None for every mode stored. A run that summarizes queues its own mode.
    mode: str | None = Field(default=None, pattern="^(minimal|detailed)$")


def run_summary_mode(run_config: Mapping[str, Any]) -> str:
    """The mode a run's `trace_summaries` step summarizes in: its run config's, else the config default."""
    op_config = ((run_config.get("ops") or {}).get(SUMMARIES_NODE) or {}).get("config") or {}
    return str(op_config.get("mode") or TraceSummariesConfig().mode)


def _mode_to_queue(context: dg.AssetExecutionContext, config: EmbeddingRequestsConfig) -> str | None:
    if context.job_def.graph.has_node_named(SUMMARIES_NODE):
        return run_summary_mode(context.run.run_config)
    return config.mode


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
    """Reads the summaries back from the events table and queues those of the run's mode (the mode its
    `trace_summaries` step summarized in); a failed send never fails the summaries (they are already
    written) and a re-materialization re-sends with the same keys."""
    mode = _mode_to_queue(context, config)
    models = config.models or list(embedding_models())
    requests = [
        build_embedding_request(document, models=models)
        for events in trace_summaries.values()
        for document in summary_documents(events, mode)
    ]
    metadata: dict[str, Any] = {
        "embedding_requests": len(requests),
        "topic": kafka.topic,
        "mode": mode or "all stored modes",
        "embedding_models": ", ".join(models),
    }
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
