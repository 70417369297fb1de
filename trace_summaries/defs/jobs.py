"""The job the schedule and the retry sensor launch: the whole pipeline for some (hour, team) partitions."""

import dagster as dg

# In-process: the pipeline is a chain of three small steps, and one process per step would add a process
# start-up to each.
trace_summaries_job = dg.define_asset_job(
    "trace_summaries_job",
    selection=dg.AssetSelection.groups("trace_summaries"),
    executor_def=dg.in_process_executor,
)


@dg.definitions
def default_executor() -> dg.Definitions:
    """The same executor for runs the UI and backfills launch (they use the implicit asset job)."""
    return dg.Definitions(executor=dg.in_process_executor)
