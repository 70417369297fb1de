"""What a run does when some of its (hour, team) partitions fail.

A ranged run (a backfill, or a sharded schedule tick) covers many teams; one team failing must not lose the
others' work. Each asset therefore handles each partition on its own and collects failures. If every partition
failed the step fails as usual. Otherwise the step succeeds for the rest, and each failed partition is
reported three ways: an error log line, a failed `partition_summarized` check evaluation for that
partition, and the run tag the re-request sensor reads to retry it as a single-partition run.
"""

from typing import Any

import dagster as dg

FAILED_PARTITIONS_TAG = "trace_summaries/failed_partitions"
CHECK_NAME = "partition_summarized"
SUMMARIES_ASSET = dg.AssetKey("trace_summaries")


def settle_partition_failures(
    context: dg.AssetExecutionContext, failures: dict[str, str], *, report_check: bool = False
) -> dict[str, Any]:
    """Raises when nothing succeeded; otherwise reports the failures and returns metadata for the output.

    Only the `trace_summaries` step reports check evaluations (``report_check``): a partition that failed
    upstream reaches it as "no sample", and one evaluation per partition and run is all the UI can hold.
    """
    if not failures:
        return {"failed_partitions": dg.MetadataValue.json([])}
    for key, reason in sorted(failures.items()):
        context.log.error(f"partition {key} failed: {reason}")
    if len(failures) >= len(context.partition_keys):
        summary = "; ".join(f"{key}: {reason}" for key, reason in sorted(failures.items())[:5])
        raise dg.Failure(description=f"every partition of the step failed. {summary}")
    previous = (context.run.tags.get(FAILED_PARTITIONS_TAG) or "").split(",")
    failed = sorted({*filter(None, previous), *failures})
    context.instance.add_run_tags(context.run.run_id, {FAILED_PARTITIONS_TAG: ",".join(failed)})
    for key, reason in failures.items() if report_check else ():
        context.log_event(
            dg.AssetCheckEvaluation(  # type: ignore[arg-type]  # log_event accepts check evaluations
                asset_key=SUMMARIES_ASSET,
                check_name=CHECK_NAME,
                passed=False,
                partition=key,
                metadata={"reason": reason},
            )
        )
    return {"failed_partitions": dg.MetadataValue.json(dict(sorted(failures.items())))}
