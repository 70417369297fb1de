"""The pipeline's job and its two assets wired to a test's store, intermediates directory and summarizer,
for in-process runs of `trace_summaries_job` (single partitions and ranges)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from trace_summaries.defs.checks import partition_summarized
from trace_summaries.defs.io_managers import SampleIOManager, SummaryEventsIOManager
from trace_summaries.defs.jobs import trace_summaries_job
from trace_summaries.defs.resources import ClickHouseResource, LLMResource
from trace_summaries.defs.sampled_traces import sampled_traces
from trace_summaries.defs.trace_summaries import trace_summaries
from trace_summaries.store import TraceStore


def pipeline_definitions(store: TraceStore, tmp_path: Path, llm: LLMResource | None = None) -> dg.Definitions:
    """``llm`` defaults to the offline heuristic summarizer."""
    clickhouse = ClickHouseResource(dsn=store.dsn)
    return dg.Definitions(
        assets=[sampled_traces, trace_summaries],
        asset_checks=[partition_summarized],
        jobs=[trace_summaries_job],
        resources={
            "clickhouse": clickhouse,
            "llm": llm or LLMResource(),
            "sample_io_manager": SampleIOManager(base_dir=str(tmp_path / "intermediate")),
            "summary_events_io_manager": SummaryEventsIOManager(clickhouse=clickhouse),
        },
    )
