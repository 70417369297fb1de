"""Failure bookkeeping for (hour, team) partitions: the one module that writes and reads it.

A ranged run (a backfill, or a sharded schedule tick) covers many teams; one team failing must not lose the
others' work. Each asset therefore handles each partition on its own and collects failures. If every partition
failed the step fails as usual. Otherwise the step succeeds for the rest, and each failed partition is
reported three ways: an error log line, a failed `partition_summarized` check evaluation for that
partition, and a run tag that the check and the retry sensor read back (``failed_partitions``).
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg

FAILED_PARTITIONS_TAG = "trace_summaries/failed_partitions"
RETRY_ATTEMPT_TAG = "trace_summaries/retry_attempt"
RETRY_OF_TAG = "trace_summaries/retry_of"
CHECK_NAME = "partition_summarized"
SUMMARIES_ASSET = dg.AssetKey("trace_summaries")


def failed_partitions(run_tags: Mapping[str, str]) -> list[str]:
    """The partition keys a run recorded as failed (``settle_partition_failures``), in order."""
    return [key for key in run_tags.get(FAILED_PARTITIONS_TAG, "").split(",") if key]


def retry_attempt(run_tags: Mapping[str, str]) -> int:
    """How many retries of a failed partition led to this run (0: not a retry)."""
    return int(run_tags.get(RETRY_ATTEMPT_TAG, "0"))


def retry_tags(attempt: int, of_run_id: str) -> dict[str, str]:
    """The tags of the run that retries a partition for the ``attempt``-th time, after run ``of_run_id``."""
    return {RETRY_ATTEMPT_TAG: str(attempt), RETRY_OF_TAG: of_run_id}


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
    failed = sorted({*failed_partitions(context.run.tags), *failures})
    context.instance.add_run_tags(context.run.run_id, {FAILED_PARTITIONS_TAG: ",".join(failed)})
    for key, reason in failures.items() if report_check else ():
        context.log_event(
            dg.AssetCheckEvaluation(
                asset_key=SUMMARIES_ASSET,
                check_name=CHECK_NAME,
                passed=False,
                partition=key,
                metadata={"reason": reason},
            )
        )
    return {"failed_partitions": dg.MetadataValue.json(dict(sorted(failures.items())))}
