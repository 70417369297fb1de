"""The job the schedule and the retry sensor launch: the whole pipeline for some (hour, team) partitions."""

import dagster as dg

from trace_summaries.config import ScheduleConfig, load

# Run monitoring (``run_monitoring`` in dagster.yaml) fails a run still going after this many seconds, as the
# original bounds a workflow at 120 minutes (TRACE_SUMMARIES_MAX_RUNTIME_MINUTES). A run launched with its own
# value of the tag keeps it. Runs of the implicit asset job (UI materializations and backfills) carry no job
# tags: the instance's ``run_monitoring.max_runtime_seconds`` bounds them at the same 120 minutes.
MAX_RUNTIME_TAG = "dagster/max_runtime"


def max_runtime_tags() -> dict[str, str]:
    """The ``dagster/max_runtime`` tag (seconds) of the pipeline's runs, from the configuration."""
    return {MAX_RUNTIME_TAG: str(load(ScheduleConfig).max_runtime_minutes * 60)}


# In-process: the pipeline is a chain of three small steps, and one process per step would add a process
# start-up to each.
trace_summaries_job = dg.define_asset_job(
    "trace_summaries_job",
    selection=dg.AssetSelection.groups("trace_summaries"),
    executor_def=dg.in_process_executor,
    # Every run of the job: scheduled ticks and sensor retries (which add the job's run tags) and launchpad
    # runs (GraphQL `launchRun` adds the job's `tags`, not `run_tags`): as `tags`, they are both.
    tags=max_runtime_tags(),
)


@dg.definitions
def default_executor() -> dg.Definitions:
    """The same executor for runs the UI and backfills launch (they use the implicit asset job)."""
    return dg.Definitions(executor=dg.in_process_executor)
