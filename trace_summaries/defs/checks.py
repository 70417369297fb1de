"""Blocking check on `trace_summaries`: a partition whose summaries failed never queues embeddings."""

import re

import dagster as dg

from trace_summaries.defs.partition_failures import CHECK_NAME, failed_partitions
from trace_summaries.defs.partition_sets import TEAM_HOUR
from trace_summaries.write.event import SummaryEvent

_LINE_REF = re.compile(r"L\d+(-L\d+)?")


@dg.asset_check(asset="trace_summaries", name=CHECK_NAME, partitions_def=TEAM_HOUR, blocking=True)
def partition_summarized(
    context: dg.AssetCheckExecutionContext, trace_summaries: dict[str, list[SummaryEvent]]
) -> dg.AssetCheckResult:
    """Passes when the step's partitions were summarized and every stored bullet cites a valid line ref.

    Partitions that failed inside a ranged run are reported by the asset itself (one failed evaluation
    per partition); here they only turn the range's own evaluation into a warning.
    """
    # Read the run again: the asset adds the tag during the run, after `context.run` was loaded.
    run = context.instance.get_run_by_id(context.run.run_id)
    failed = failed_partitions(run.tags if run else {})
    events = [event for events in trace_summaries.values() for event in events]
    bad_refs = [
        event.properties.trace_id
        for event in events
        if not all(_LINE_REF.fullmatch(bullet.line_refs) for bullet in event.properties.bullets)
    ]
    return dg.AssetCheckResult(
        passed=not bad_refs and not failed,
        severity=dg.AssetCheckSeverity.ERROR if bad_refs else dg.AssetCheckSeverity.WARN,
        metadata={
            "events": len(events),
            "traces_with_invalid_bullet_refs": dg.MetadataValue.json(bad_refs[:20]),
            "failed_partitions": dg.MetadataValue.json(failed),
        },
    )
