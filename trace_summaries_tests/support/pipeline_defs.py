"""The production job, wired to a test's store, intermediates directory, LLM and Kafka, for in-process runs
of `trace_summaries_job` (single partitions and ranges): the same graph a deployment runs, the
``partition_summarized`` check included."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from trace_summaries.defs.checks import partition_summarized
from trace_summaries.defs.embedding_requests import embedding_requests
from trace_summaries.defs.io_managers import SampleIOManager, SummaryEventsIOManager
from trace_summaries.defs.jobs import trace_summaries_job
from trace_summaries.defs.resources import ClickHouseResource, LLMResource
from trace_summaries.defs.sampled_traces import sampled_traces
from trace_summaries.defs.trace_summaries import trace_summaries
from trace_summaries.store import TraceStore

PIPELINE_ASSETS: list[dg.AssetsDefinition] = [sampled_traces, trace_summaries, embedding_requests]
# Without a Kafka resource: the job's selection (the group) is then the first two stages and the check.
SUMMARY_ASSETS: list[dg.AssetsDefinition] = [sampled_traces, trace_summaries]


def production_job(resources: Mapping[str, Any], assets: Sequence[dg.AssetsDefinition]) -> dg.JobDefinition:
    """``trace_summaries_job`` as the deployment defines it, over ``assets`` and the check."""
    return dg.Definitions(
        assets=list(assets),
        asset_checks=[partition_summarized],
        jobs=[trace_summaries_job],
        resources=dict(resources),
    ).resolve_job_def(trace_summaries_job.name)


def run_production_job(
    resources: Mapping[str, Any],
    *,
    instance: dg.DagsterInstance,
    partition_key: str | None = None,
    assets: Sequence[dg.AssetsDefinition] = PIPELINE_ASSETS,
    config: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
) -> dg.ExecuteInProcessResult:
    """One in-process run of the production job; ``config``: the ``trace_summaries`` asset's run config."""
    return production_job(resources, assets).execute_in_process(
        instance=instance,
        partition_key=partition_key,
        run_config={"ops": {"trace_summaries": {"config": dict(config)}}} if config else None,
        tags=dict(tags or {}),
        raise_on_error=False,
    )


def pipeline_definitions(store: TraceStore, tmp_path: Path, llm: LLMResource | None = None) -> dg.Definitions:
    """The first two stages and the check on the test's store; ``llm`` defaults to the offline heuristic
    summarizer."""
    clickhouse = ClickHouseResource(dsn=store.dsn)
    return dg.Definitions(
        assets=SUMMARY_ASSETS,
        asset_checks=[partition_summarized],
        jobs=[trace_summaries_job],
        resources={
            "clickhouse": clickhouse,
            "llm": llm or LLMResource(),
            "sample_io_manager": SampleIOManager(base_dir=str(tmp_path / "intermediate")),
            "summary_events_io_manager": SummaryEventsIOManager(clickhouse=clickhouse),
        },
    )
