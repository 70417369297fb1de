"""Blocking check on `trace_summaries`: what must stop a partition's summaries from being embedded.

A reference the summarizer dropped (a line that does not exist) or a bullet citing several lines is a quality
signal, reported as figures, never a reason to stop: every real model does it now and then. What blocks the
embedding step is a partition whose output is not a usable summary set:

* a stored reference that is not in the canonical form the summarizer writes (``L7``, ``L10-L15``, or a list
  of those): the row did not come from our summarizer, or was corrupted;
* more than ``MAX_UNCITED_SHARE`` of a partition's summaries citing no line at all: the model did not follow
  the format, and its statements cannot be checked against the trace.

Partitions that failed inside a ranged run are reported by the asset itself (one failed evaluation per
partition); here they only turn the range's evaluation into a warning.
"""

import re
from collections.abc import Sequence

import dagster as dg

from trace_summaries.defs.partition_failures import CHECK_NAME, failed_partitions
from trace_summaries.defs.partition_sets import TEAM_HOUR
from trace_summaries.write.event import SummaryEvent

# A partition fails the check when more than this share of its summaries cite no valid line in any item.
MAX_UNCITED_SHARE = 0.5
_ONE_REF = r"L\d+(?:-L\d+)?"
_CANONICAL_REFS = re.compile(rf"(?:{_ONE_REF}(?:, {_ONE_REF})*)?")


def _items(event: SummaryEvent) -> list[str]:
    props = event.properties
    return [item.line_refs for item in [*props.bullets, *props.interesting_notes]]


def reference_figures(events: Sequence[SummaryEvent]) -> dict[str, int]:
    """Counts of the partition's items by the state of their references."""
    items = [refs for event in events for refs in _items(event)]
    return {
        "summaries": len(events),
        "items": len(items),
        "items_without_reference": sum(1 for refs in items if not refs),
        "items_citing_several_lines": sum(1 for refs in items if "," in refs),
        "summaries_citing_no_line": sum(1 for event in events if not any(_items(event))),
        "references_dropped": sum(event.properties.line_refs_invalid for event in events),
    }


def _problem(events: Sequence[SummaryEvent]) -> str | None:
    malformed = [e.properties.trace_id for e in events if not all(map(_CANONICAL_REFS.fullmatch, _items(e)))]
    if malformed:
        return f"references not in canonical form in traces {malformed[:5]}"
    uncited = sum(1 for event in events if not any(_items(event)))
    if events and uncited / len(events) > MAX_UNCITED_SHARE:
        return f"{uncited} of {len(events)} summaries cite no line (more than {MAX_UNCITED_SHARE:.0%})"
    return None


@dg.asset_check(asset="trace_summaries", name=CHECK_NAME, partitions_def=TEAM_HOUR, blocking=True)
def partition_summarized(
    context: dg.AssetCheckExecutionContext, trace_summaries: dict[str, list[SummaryEvent]]
) -> dg.AssetCheckResult:
    """Passes when the step's partitions were summarized into usable summaries (see the module doc)."""
    # Read the run again: the asset adds the tag during the run, after `context.run` was loaded.
    run = context.instance.get_run_by_id(context.run.run_id)
    failed = failed_partitions(run.tags if run else {})
    problems = {key: problem for key, events in trace_summaries.items() if (problem := _problem(events))}
    events = [event for events in trace_summaries.values() for event in events]
    return dg.AssetCheckResult(
        passed=not problems and not failed,
        severity=dg.AssetCheckSeverity.ERROR if problems else dg.AssetCheckSeverity.WARN,
        description="; ".join(f"{key}: {problem}" for key, problem in sorted(problems.items())) or None,
        metadata={
            **reference_figures(events),
            "max_uncited_share": MAX_UNCITED_SHARE,
            "unusable_partitions": dg.MetadataValue.json(problems),
            "failed_partitions": dg.MetadataValue.json(failed),
        },
    )
