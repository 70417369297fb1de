"""Summarizing many traces with a paced number of LLM calls in flight.

A batch is the traces of one partition. At most ``batch_size`` traces are in progress at once, and the
LLM calls they make are paced by a ``CallPacer`` (``pacing.py``): from one call in flight up to
``batch_size``, as fast as the endpoint answers without queueing them. The batches of a ranged run share one
pacer. A trace that fails (or a summarizer that raises) becomes a failed result, never an exception out of
the batch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from trace_summaries.summarize.modes import SummaryMode
from trace_summaries.summarize.pacing import CallPacer, pacing
from trace_summaries.summarize.prompts import PROMPT_VERSION
from trace_summaries.summarize.result import SYSTEMIC_REASONS, FailureReason, TraceSummaryResult
from trace_summaries.summarize.summarizer import Summarizer

if TYPE_CHECKING:
    from trace_summaries.text_repr import TraceText

Key = TypeVar("Key", bound=Hashable)

# Called after each trace: (done, total, failed so far).
ProgressCallback = Callable[[int, int, int], None]


async def summarize_prepared(
    summarizer: Summarizer,
    keys: Sequence[Key],
    prepare: Callable[[Key], tuple[TraceText, Sequence[Any]]],
    mode: SummaryMode,
    *,
    batch_size: int,
    on_progress: ProgressCallback | None = None,
    pacer: CallPacer | None = None,
) -> dict[Key, TraceSummaryResult]:
    """Summarize every key, preparing (rendering) each trace only once a slot is free for it.

    Rendering up front would delay the first call by the whole partition's rendering time; here each trace
    is rendered while the other traces' calls are in flight, so rendering hides behind the LLM's latency.
    ``prepare`` raising is a bug, not a bad trace: it propagates.

    ``pacer``, when given, replaces the ``batch_size`` limit: batches running at once that share it share
    one limit on traces in progress and one adaptive limit on calls in flight (the partitions of a ranged
    run). Without one, the batch gets its own ``CallPacer(batch_size)``.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if pacer is None:
        pacer = CallPacer(batch_size)
    total = len(keys)
    done = failed = 0

    async def one(key: Key) -> TraceSummaryResult:
        nonlocal done, failed
        async with pacer.admit():
            trace_text, events = prepare(key)
            result = await _summarize_safely(summarizer, trace_text, events, mode)
        done += 1
        failed += 0 if result.generated else 1
        if on_progress is not None:
            on_progress(done, total, failed)
        return result

    with pacing(pacer):  # the tasks gather starts copy the context, and with it the pacer
        results = await asyncio.gather(*(one(key) for key in keys))
    return dict(zip(keys, results, strict=True))


async def _summarize_safely(
    summarizer: Summarizer, trace_text: TraceText, events: Sequence[Any], mode: SummaryMode
) -> TraceSummaryResult:
    """A summarizer's bug fails its trace, not the batch; the message is kept for the logs."""
    started = time.monotonic()
    try:
        return await summarizer.summarize(trace_text, events, mode)
    except Exception as exc:
        return TraceSummaryResult(
            status="failed",
            reason="internal_error",
            error=f"{type(exc).__name__}: {exc}",
            provider=summarizer.provider,
            model=summarizer.model,
            mode=mode,
            prompt_version=PROMPT_VERSION,
            latency_s=time.monotonic() - started,
        )


def systemic_failure_reason(results: Iterable[TraceSummaryResult]) -> FailureReason | None:
    """The reason, when every trace failed for one reason that is about the endpoint, not the traces.

    That is the signal to fail the run loudly (bad key, wrong URL, unknown model, provider down) rather than
    record a partition of failed summaries. No results at all is not a failure.
    """
    reasons = {result.reason for result in results}
    if len(reasons) != 1:
        return None
    (reason,) = reasons
    return reason if reason in SYSTEMIC_REASONS else None
