"""`summarize_window_job`: one team's traces of an explicit window, for ad-hoc runs.

The original's per-team workflow takes a ``window_start``/``window_end`` (RFC3339) besides the scheduled
hour. This job does the same from the launchpad or the CLI: the same sampling, summaries, events and
embedding requests as a partition run, for any window of one team up to 24 hours. The window is the run's
identity (``batch_run_id`` and the event ids follow from the team and the window start, the delete of the
replace matches the window end), so launching the same window twice replaces its summaries, never
duplicates them. It is not a partition: the partition sets (and their status in the UI) stay the
schedule's hours.
"""

from datetime import datetime, timedelta
from typing import Any

import dagster as dg
from pydantic import Field, field_validator, model_validator

from trace_summaries.config import embedding_models
from trace_summaries.defs.jobs import max_runtime_tags
from trace_summaries.defs.resources import ClickHouseResource, KafkaResource, LLMResource
from trace_summaries.defs.sampled_traces import sampling_metadata
from trace_summaries.defs.trace_summaries import (
    TraceSummariesConfig,
    summarize_setup,
    summary_metadata,
    systemic_failure_message,
)
from trace_summaries.queue import build_embedding_request
from trace_summaries.queue.summary_documents import summary_document
from trace_summaries.sample import SamplingConfig, sample_team_hour
from trace_summaries.write.rows import replace_partitions

MAX_WINDOW = timedelta(hours=24)


class SummarizeWindowConfig(TraceSummariesConfig):
    """The original's per-team inputs: the team, the window (RFC3339, with an offset), the sample's cap,
    and what ``trace_summaries`` takes (mode, model, batch_size, ...)."""

    team_id: int = Field(ge=1)
    window_start: str
    window_end: str
    max_traces: int = Field(default=SamplingConfig().max_traces, ge=0)

    @field_validator("window_start", "window_end")
    @classmethod
    def _rfc3339(cls, value: str) -> str:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an RFC3339 time (e.g. 2026-11-20T09:00:00Z)") from None
        if moment.tzinfo is None:
            raise ValueError(f"{value!r} has no UTC offset (add Z or +00:00)")
        return value

    @model_validator(mode="after")
    def _window(self) -> "SummarizeWindowConfig":
        length = self.end - self.start
        if not timedelta(0) < length <= MAX_WINDOW:
            raise ValueError(
                f"window_end must be after window_start, by at most 24 hours "
                f"(got {self.window_start} .. {self.window_end})"
            )
        return self

    @property
    def start(self) -> datetime:
        return datetime.fromisoformat(self.window_start)

    @property
    def end(self) -> datetime:
        return datetime.fromisoformat(self.window_end)


@dg.op(tags={"kind": "openai"})
def summarize_window(
    context: dg.OpExecutionContext,
    config: SummarizeWindowConfig,
    clickhouse: ClickHouseResource,
    llm: LLMResource,
    kafka: KafkaResource,
) -> dg.Output[dict[str, Any]]:
    """Samples the team's traces of the window, summarizes them, replaces the window's summary events and
    queues their embedding requests; a failed send never fails the summaries (they are written)."""
    key = f"{config.team_id}|{config.start.isoformat()}..{config.end.isoformat()}"
    sampling = SamplingConfig(max_traces=config.max_traces)
    with clickhouse.session() as client:
        sample = sample_team_hour(client, config.team_id, config.start, config.end, sampling)
    setup = summarize_setup(config, llm)
    summaries = setup.summarize({key: sample})[key]
    systemic = summaries.systemic_failure()
    metadata: dict[str, Any] = {
        **sampling_metadata([sample]),
        **summary_metadata([summaries]),
        **setup.metadata(),
        "batch_run_id": summaries.batch_run_id,
    }
    if systemic is not None:
        raise dg.Failure(
            description=systemic_failure_message(systemic, config, llm),
            metadata=metadata,
        )
    with clickhouse.session() as client:
        metadata["events_written"] = replace_partitions(client, [summaries])
    models = list(embedding_models())
    requests = [build_embedding_request(summary_document(event), models=models) for event in summaries.events]
    metadata["embedding_requests"] = len(requests)
    if not kafka.configured:
        context.log.warning("KAFKA_BOOTSTRAP_SERVERS is not set: embedding requests were not sent")
        metadata["embedding_requests_skipped"] = len(requests)
    else:
        with kafka.producer() as producer:
            report = producer.send(requests)
        metadata |= {
            "embedding_requests_succeeded": report.succeeded,
            "embedding_requests_failed": report.failed,
        }
        if report.failed:
            context.log.warning(f"{report.failed} of {len(requests)} embedding requests failed")
    return dg.Output(summaries.counts(), metadata=metadata)


@dg.job(
    description="One team's traces of an explicit window (RFC3339, up to 24 h): sample, summarize, write "
    "the events and queue their embedding requests. Launching the same window again replaces its summaries.",
    executor_def=dg.in_process_executor,
    tags=max_runtime_tags(),  # bounded like the partition runs (TRACE_SUMMARIES_MAX_RUNTIME_MINUTES)
)
def summarize_window_job() -> None:
    summarize_window()
