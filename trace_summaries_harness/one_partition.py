"""One partition at a time: shortcuts that tests and benchmarks use, and the pipeline does not.

The pipeline summarizes and writes the partitions of a step together (``summarize.partition``,
``write.rows``); a test or a benchmark usually wants one partition, one call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from clickhouse_connect.driver.client import Client

from trace_summaries.config import LLMConfig
from trace_summaries.sample import TeamHourSample
from trace_summaries.summarize import Summarizer, SummaryMode, TraceSummaryResult, summarize_prepared
from trace_summaries.summarize.batch import ProgressCallback
from trace_summaries.summarize.pacing import CallPacer
from trace_summaries.summarize.partition import PartitionSummaries, summarize_partitions_sync
from trace_summaries.text_repr import TraceText
from trace_summaries.write.event import SummaryEvent
from trace_summaries.write.rows import SummaryWindow, read_partitions, replace_partitions

Key = TypeVar("Key")
DEFAULT_BATCH_SIZE: int = LLMConfig.model_fields["concurrency"].default


def summarize_partition_sync(
    sample: TeamHourSample, summarizer: Summarizer, *, batch_size: int, **kwargs: Any
) -> PartitionSummaries:
    return summarize_partitions_sync({0: sample}, summarizer, batch_size=batch_size, **kwargs)[0]


async def summarize_many(
    summarizer: Summarizer,
    items: Sequence[tuple[Key, TraceText, Sequence[Any]]],
    mode: SummaryMode,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: ProgressCallback | None = None,
    pacer: CallPacer | None = None,
) -> dict[Key, TraceSummaryResult]:
    """Summarize every ``(key, trace_text, events)``; the result has one entry per key, in input order."""
    prepared = {key: (text, events) for key, text, events in items}
    return await summarize_prepared(
        summarizer,
        [key for key, _, _ in items],
        prepared.__getitem__,
        mode,
        batch_size=batch_size,
        on_progress=on_progress,
        pacer=pacer,
    )


@dataclass(frozen=True, slots=True)
class _Batch:
    team_id: int
    window_start: datetime
    window_end: datetime
    mode: str
    events: list[SummaryEvent]


def replace_summary_events(
    client: Client,
    *,
    team_id: int,
    window_start: datetime,
    window_end: datetime,
    mode: str,
    events: Sequence[SummaryEvent],
) -> int:
    """One partition's replacement."""
    return replace_partitions(client, [_Batch(team_id, window_start, window_end, mode, list(events))])


def read_summary_events(
    client: Client, *, team_id: int, window_start: datetime, window_end: datetime
) -> list[SummaryEvent]:
    window = SummaryWindow(team_id, window_start, window_end)
    return read_partitions(client, [window])[window]
