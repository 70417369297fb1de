"""Summarize every sampled trace of one team-hour: render, call the summarizer, build the events.

One trace failing never fails the partition: each trace ends as ``generated``, ``skipped`` (with a reason)
or ``failed`` (with a reason). Only a *systemic* failure, every trace failing for the same reason that no
trace could have avoided (bad credentials, an unknown model), is raised, because then retrying the partition
as-is is pointless and the operator must act.
"""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from trace_summaries.sample import SampledTrace, TeamHourSample
from trace_summaries.summarize import (
    Provider,
    Summarizer,
    SummaryMode,
    TraceSummaryResult,
    summarize_prepared,
    systemic_failure_reason,
)
from trace_summaries.summarize.leakage import find_prompt_leaks
from trace_summaries.summarize.pacing import CallPacer, pacing
from trace_summaries.summarize.schema import SummarizationResponse, SummaryItem
from trace_summaries.summarize.verify import SummaryVerification, SummaryVerifier
from trace_summaries.text_repr import RenderOptions, TraceText, format_trace
from trace_summaries.text_repr.redaction import RedactionConfig, redact_trace_text
from trace_summaries.write.event import SummaryEvent, batch_run_id, build_summary_event

TraceStatus = Literal["generated", "skipped", "failed"]
Key = TypeVar("Key")


class TraceOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trace_id: str
    status: TraceStatus
    reason: str | None = None
    # The endpoint's message for a failure (status and text), for the logs; never a secret.
    error: str | None = None
    event: SummaryEvent | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float | None = None
    attempts: int = 0
    line_refs_invalid: int = 0
    # Quality figures, never a failure: every warning on the event, and the items among them that repeat
    # the prompt's example text instead of the trace.
    warnings: int = 0
    leaked_prompt_examples: int = 0
    # With ``verify: true``: the verdicts on the summary's items, and the verification call's usage (also
    # included in the totals above, which are what the trace cost).
    verified: bool = False
    items_supported: int = 0
    items_unsupported: int = 0
    items_unverifiable: int = 0
    verification_input_tokens: int = 0
    verification_output_tokens: int = 0
    verification_cost_usd: float = 0.0


class PartitionSummaries(BaseModel):
    """The outcome of one (hour, team) partition; its generated events are what the IO manager writes."""

    model_config = ConfigDict(extra="forbid")

    team_id: int
    window_start: datetime
    window_end: datetime
    mode: SummaryMode
    batch_run_id: str
    outcomes: list[TraceOutcome] = Field(default_factory=list)
    # The raw results of the summarizer, kept for the systemic-failure decision; not serialized.
    summaries: list[TraceSummaryResult] = Field(default_factory=list, exclude=True)

    @property
    def events(self) -> list[SummaryEvent]:
        return [outcome.event for outcome in self.outcomes if outcome.event is not None]

    def counts(self) -> dict[str, int]:
        return dict(Counter(outcome.status for outcome in self.outcomes))

    def reasons(self, status: TraceStatus) -> dict[str, int]:
        return dict(Counter(o.reason or "unknown" for o in self.outcomes if o.status == status))

    def systemic_failure(self) -> str | None:
        """The shared reason when every summarized trace failed for one endpoint-level cause, else None."""
        if not self.summaries or any(outcome.status == "generated" for outcome in self.outcomes):
            return None
        return systemic_failure_reason(self.summaries)


# What the pipeline renders for the LLM unless told otherwise: the original's format, plus nesting and
# de-duplication (far fewer tokens on agent traces), feedback text and metric values, the trace's own
# input/output, and readable non-ASCII text. ``ORIGINAL_RENDERING`` reproduces the original exactly.
PIPELINE_RENDERING = RenderOptions(
    nest=True, dedupe=True, event_details=True, include_trace_state=True, escape_non_ascii=False
)
ORIGINAL_RENDERING = RenderOptions()


def render_trace(trace: SampledTrace, options: RenderOptions) -> TraceText:
    return format_trace([event.model_dump() for event in trace.events], options=options)


ProgressCallback = Callable[[int, int, int], None]


@dataclass(frozen=True)
class _TraceFacts:
    """What a trace's outcome needs of it once its events are gone."""

    trace_id: str
    first_timestamp: datetime
    event_count: int


async def summarize_partition(
    sample: TeamHourSample,
    summarizer: Summarizer,
    *,
    mode: SummaryMode,
    batch_size: int,
    render: RenderOptions,
    on_progress: ProgressCallback | None = None,
    redaction: RedactionConfig | None = None,
    pacer: CallPacer | None = None,
    verifier: SummaryVerifier | None = None,
    work: OpenWork | None = None,
) -> PartitionSummaries:
    """Summarize the partition's traces; with ``verifier``, then check every generated summary's items
    against the lines they cite (``verify.py``), under the same limits on traces and calls in flight.

    Each trace's events and rendered text are let go as soon as its outcome is known (with a ``verifier``,
    after its verification; a trace retried at half size keeps its events until the retry): when the
    caller holds no other reference to ``sample`` (a ranged step), the partition shrinks as its calls end,
    and the partition opened next overlaps only the last traces still in flight, not the whole sample.

    ``work``, when given, has the partition's traces counted already (``OpenWork``): each is counted done
    as it ends (a retry at half size and a verification count again while they run), which is what a
    ranged step reads to decide when to open its next partition."""
    if work is None:
        work = OpenWork(batch_size)
        work.add(len(sample.traces))
    result = PartitionSummaries(
        team_id=sample.team_id,
        window_start=sample.window_start,
        window_end=sample.window_end,
        mode=mode,
        batch_run_id=batch_run_id(sample.team_id, sample.window_start, sample.window_end),
    )
    texts: dict[str, TraceText] = {}
    redactions: dict[str, dict[str, int]] = {}
    order, skipped, to_summarize = _split(sample)
    work.done(len(order) - len(to_summarize))  # skipped traces (and any repeated id) are done
    facts = {trace.trace_id: trace for trace in order}
    del sample  # from here on, a trace's events live in ``to_summarize`` only, until its call ends
    # Outcomes known as soon as a call ends (no verification to come, no retry): their texts are let go.
    early: dict[str, TraceOutcome] = {}
    calling: dict[int, str] = {}  # id of a text being summarized -> its trace

    def prepare(trace_id: str, options: RenderOptions = render) -> tuple[TraceText, list[dict[str, Any]]]:
        """Rendered when its LLM slot frees up, so rendering overlaps the calls in flight."""
        trace = to_summarize[trace_id]
        events = [event.model_dump() for event in trace.events]
        text = format_trace(events, options=options)
        if redaction is not None and redaction.enabled:
            # Before anything reaches the summarizer: the text, and the events it reads the name from.
            text, redactions[trace_id] = redact_trace_text(text, redaction)
            for event in events:  # properties only: uuids tie the summary's lines to their events
                event["properties"], _ = redaction.redact_value(event["properties"])
        texts[trace_id] = text
        calling[id(text)] = trace_id
        return text, events

    def ended(text: TraceText, summary: TraceSummaryResult | None) -> None:
        """A call ended: unless the trace is to be retried at half size, its events are no longer needed,
        and without a verification to come, neither is its text once its outcome is built."""
        trace_id = calling.pop(id(text))
        if summary is not None and summary.reason == "context_exceeded":
            return
        to_summarize.pop(trace_id, None)
        if verifier is None and summary is not None:
            try:
                outcome = _outcome(result, facts[trace_id], text, mode, summary, redactions.get(trace_id))
            except Exception:  # a bug: raised again below, out of the partition, not as this trace's failure
                return
            early[trace_id] = outcome
            del texts[trace_id]

    summaries = await summarize_prepared(
        _Releasing(summarizer, ended),
        list(to_summarize),
        prepare,
        mode,
        batch_size=batch_size,
        on_progress=work.done_then(on_progress),
        pacer=pacer,
    )
    too_long = [key for key, summary in summaries.items() if summary.reason == "context_exceeded"]
    if too_long:
        # Once more, at half the size the text had: the endpoint counted more tokens than we planned for.
        smaller = {key: replace(render, max_length=len(texts[key].text) // 2) for key in too_long}
        work.add(len(too_long))
        retried = await summarize_prepared(
            summarizer,
            too_long,
            lambda key: prepare(key, smaller[key]),
            mode,
            batch_size=batch_size,
            on_progress=work.done_then(None),
            pacer=pacer,
        )
        summaries |= retried
        calling.clear()
        for key in too_long:
            to_summarize.pop(key, None)
    result.summaries = list(summaries.values())
    verifications: dict[str, SummaryVerification] = {}
    if verifier is not None:
        generated = {key: s.summary for key, s in summaries.items() if s.summary is not None}
        work.add(len(generated))
        verifications = await _verify_all(
            verifier, generated, texts, pacer if pacer is not None else CallPacer(batch_size), work
        )
    for trace in order:
        if trace.trace_id in skipped:
            result.outcomes.append(skipped[trace.trace_id])
        elif trace.trace_id in early:
            result.outcomes.append(early[trace.trace_id])
        else:
            result.outcomes.append(
                _outcome(
                    result,
                    trace,
                    texts[trace.trace_id],
                    mode,
                    summaries[trace.trace_id],
                    redactions.get(trace.trace_id),
                    verifications.get(trace.trace_id),
                )
            )
    return result


def _split(
    sample: TeamHourSample,
) -> tuple[list[_TraceFacts], dict[str, TraceOutcome], dict[str, SampledTrace]]:
    """The partition's traces in order (what their outcomes need), the skipped ones' outcomes, and the
    traces to summarize."""
    order: list[_TraceFacts] = []
    skipped: dict[str, TraceOutcome] = {}
    to_summarize: dict[str, SampledTrace] = {}
    for trace in sample.traces:
        event_count = sum(1 for event in trace.events if event.event != "$ai_trace")
        order.append(_TraceFacts(trace.trace_id, trace.first_timestamp, event_count))
        reason = _skip_reason(trace)
        if reason is not None:
            skipped[trace.trace_id] = TraceOutcome(trace_id=trace.trace_id, status="skipped", reason=reason)
        else:
            to_summarize[trace.trace_id] = trace
    return order, skipped, to_summarize


class _Releasing:
    """A partition's summarizer that reports each call's end (``ended(text, summary or None)``), so the
    partition can let the trace go."""

    def __init__(
        self, inner: Summarizer, ended: Callable[[TraceText, TraceSummaryResult | None], None]
    ) -> None:
        self._inner = inner
        self._ended = ended

    @property
    def provider(self) -> Provider:
        return self._inner.provider

    @property
    def model(self) -> str:
        return self._inner.model

    async def summarize(
        self, trace_text: TraceText, events: Sequence[Any], mode: SummaryMode
    ) -> TraceSummaryResult:
        summary: TraceSummaryResult | None = None
        try:
            summary = await self._inner.summarize(trace_text, events, mode)
            return summary
        finally:
            self._ended(trace_text, summary)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def _verify_all(
    verifier: SummaryVerifier,
    summaries: Mapping[str, SummarizationResponse],
    texts: Mapping[str, TraceText],
    pacer: CallPacer,
    work: OpenWork,
) -> dict[str, SummaryVerification]:
    """Every summary verified, at most the pacer's traces at once; a verifier's bug makes its trace's items
    unverifiable (with the error as a warning), never a failed trace."""

    async def one(key: str) -> SummaryVerification:
        summary = summaries[key]
        async with pacer.admit():
            try:
                return await verifier.verify(texts[key], summary)
            except Exception as exc:
                return SummaryVerification(
                    method=verifier.method,
                    bullets=(None,) * len(summary.summary_bullets),
                    notes=(None,) * len(summary.interesting_notes),
                    error=f"internal_error: {type(exc).__name__}: {exc}",
                )
            finally:
                work.done()

    with pacing(pacer):
        results = await asyncio.gather(*(one(key) for key in summaries))
    return dict(zip(summaries, results, strict=True))


class OpenWork:
    """The traces of a step's open partitions still to summarize (or to retry at half size, or to verify):
    whether the step needs another partition to keep ``wanted`` traces in progress (the pacer's limit).

    A partition's traces are counted when it is opened, on its own ``share`` of the step's count, and each
    is counted done as it ends; the step opens its next partition only while fewer than ``wanted`` are left
    (``wait_for_room``). Open partitions are thus bounded by ``wanted`` (each holds at least one trace still
    to do) and, at the size limits, about two: the tail of one and the next. A partition that ends, even by
    an exception, gives back what it had not counted done (``close``), so the step never waits on it."""

    def __init__(self, wanted: int, parent: OpenWork | None = None) -> None:
        self.wanted = wanted
        self.pending = 0
        self._parent = parent
        self._room: asyncio.Event | None = None

    def share(self) -> OpenWork:
        """A partition's own count, added to and taken from this one."""
        return OpenWork(self.wanted, parent=self)

    def add(self, count: int) -> None:
        self.pending += count
        if self._parent is not None:
            self._parent.add(count)

    def done(self, count: int = 1) -> None:
        self.pending -= count
        if self._parent is not None:
            self._parent.done(count)
        if self.pending < self.wanted:
            self.wake()

    def close(self) -> None:
        if self.pending:
            self.done(self.pending)

    def done_then(self, on_progress: ProgressCallback | None) -> ProgressCallback:
        """A progress callback (called once per trace done) that also counts the trace done."""

        def progress(done: int, total: int, failed: int) -> None:
            self.done()
            if on_progress is not None:
                on_progress(done, total, failed)

        return progress

    def wake(self) -> None:
        """Has ``wait_for_room`` look again."""
        if self._room is not None:
            self._room.set()

    async def wait_for_room(self, stop: Callable[[], bool]) -> None:
        """Until fewer than ``wanted`` traces are left to do, or ``stop()``."""
        while self.pending >= self.wanted and not stop():
            self._room = self._room or asyncio.Event()
            self._room.clear()
            await self._room.wait()


def summarize_partitions_sync(
    samples: Mapping[Key, TeamHourSample],
    summarizer: Summarizer,
    *,
    batch_size: int,
    on_progress: Callable[[Key], ProgressCallback | None] | None = None,
    pacer: CallPacer | None = None,
    **kwargs: Any,
) -> dict[Key, PartitionSummaries]:
    """Every partition of a run in one event loop, under one limit of ``batch_size`` calls in flight.

    One partition after another, each would end waiting on its slowest call with the other slots idle, and
    a range of small partitions (most teams, most hours) would never fill the limit at all. The limit is the
    step's, whatever its number of partitions, so the ``llm`` pool still bounds the calls of a deployment.
    The summarizer's connections belong to this loop and are closed with it.

    Partitions are opened in the mapping's order, and only as the calls need them: the next one is looked up
    (``samples[key]``: with ``StoredSamples``, read from the sample store, in a worker thread so the calls in
    flight carry on) when the open ones have fewer than the limit's worth of traces left to summarize, and
    each trace's events are let go as its call ends (``summarize_partition``). So a range of small
    partitions still fills every slot, while a range at the size limits holds one sample and the last few
    traces of the one before, not the range's (a lazy mapping is what makes that so; a dict holds its
    samples anyway). The outcome is the same as summarizing all at once, in the same order.

    The limit adapts to the endpoint (``pacing.CallPacer``: from one call up to ``batch_size``); pass
    ``pacer`` to read what it did afterwards (``pacer.stats()``), else the step makes its own.
    """
    shared = pacer if pacer is not None else CallPacer(batch_size)

    async def run() -> dict[Key, PartitionSummaries]:
        work = OpenWork(shared.max_limit)
        tasks: dict[Key, asyncio.Task[PartitionSummaries]] = {}

        def raised() -> bool:  # a partition raised (a bug, not a trace's failure): it fails the step below
            return any(task.done() and task.exception() is not None for task in tasks.values())

        def ended(share: OpenWork, _task: asyncio.Task[PartitionSummaries]) -> None:
            share.close()
            work.wake()

        try:
            for key in samples:
                await work.wait_for_room(stop=raised)
                if raised():
                    break
                sample = await asyncio.to_thread(samples.__getitem__, key)
                # Counted before its task starts, so the next turn of the loop sees this partition's work.
                share = work.share()
                share.add(len(sample.traces))
                task = asyncio.create_task(
                    summarize_partition(
                        sample,
                        summarizer,
                        batch_size=batch_size,
                        pacer=shared,
                        on_progress=on_progress(key) if on_progress is not None else None,
                        work=share,
                        **kwargs,
                    )
                )
                task.add_done_callback(functools.partial(ended, share))
                tasks[key] = task
                del sample  # the task holds it, and frees it with its summaries built
            return {key: await task for key, task in tasks.items()}
        finally:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            await summarizer.aclose()

    return asyncio.run(run())


def _skip_reason(trace: SampledTrace) -> str | None:
    if not trace.events:
        return "malformed_events" if trace.malformed_event_uuids else "empty_trace"
    if all(event.event == "$ai_trace" for event in trace.events):
        return "empty_trace"
    return None


def _outcome(
    partition: PartitionSummaries,
    trace: _TraceFacts,
    text: TraceText,
    mode: SummaryMode,
    summary: TraceSummaryResult,
    redactions: dict[str, int] | None = None,
    verification: SummaryVerification | None = None,
) -> TraceOutcome:
    check = verification
    accounting: Mapping[str, Any] = {
        "input_tokens": summary.input_tokens + (check.input_tokens if check else 0),
        "output_tokens": summary.output_tokens + (check.output_tokens if check else 0),
        "cost_usd": (summary.cost_usd or 0.0) + ((check.cost_usd or 0.0) if check else 0.0),
        "latency_s": summary.latency_s,
        "attempts": summary.attempts,
        "line_refs_invalid": summary.line_refs_invalid,
    }
    if summary.status != "generated" or summary.summary is None:
        return TraceOutcome(
            trace_id=trace.trace_id, status="failed", reason=summary.reason, error=summary.error, **accounting
        )
    response = summary.summary
    leaks = find_prompt_leaks(response, text.text)
    warnings = [*summary.warnings, *(leak.warning for leak in leaks)]
    properties: dict[str, Any] = {
        "bullets": _items(response.summary_bullets, check.bullets if check else None),
        "interesting_notes": _items(response.interesting_notes, check.notes if check else None),
    }
    verified: dict[str, Any] = {}
    if check is not None:
        if check.error is not None:
            warnings.append(f"verification gave no verdicts: {check.error}"[:300])
        properties |= {
            "faithfulness": check.faithfulness,
            "verification_method": check.method,
            "verification_input_tokens": check.input_tokens,
            "verification_output_tokens": check.output_tokens,
            "verification_cost_usd": check.cost_usd,
        }
        verified = {
            "verified": True,
            "items_supported": check.supported,
            "items_unsupported": check.unsupported,
            "items_unverifiable": check.unverifiable,
            "verification_input_tokens": check.input_tokens,
            "verification_output_tokens": check.output_tokens,
            "verification_cost_usd": check.cost_usd or 0.0,
        }
    event = build_summary_event(
        team_id=partition.team_id,
        window_start=partition.window_start,
        window_end=partition.window_end,
        trace_id=trace.trace_id,
        trace_first_timestamp=trace.first_timestamp,
        properties={
            "mode": mode,
            "title": response.title,
            "flow_diagram": response.flow_diagram,
            "text_repr_length": len(text.text),
            "text_repr_sampled": text.sampled,
            "event_count": trace.event_count,
            "model": summary.model,
            "provider": summary.provider,
            "prompt_version": summary.prompt_version,
            "input_tokens": summary.input_tokens,
            "output_tokens": summary.output_tokens,
            "cached_input_tokens": summary.cached_input_tokens,
            "service_tier": summary.service_tier,
            "cost_usd": summary.cost_usd,
            "line_refs_invalid": summary.line_refs_invalid,
            "redactions": redactions or {},
            "warnings": warnings,
            **properties,
        },
    )
    return TraceOutcome(
        trace_id=trace.trace_id,
        status="generated",
        event=event,
        warnings=len(warnings),
        leaked_prompt_examples=len(leaks),
        **accounting,
        **verified,
    )


def _items(items: list[SummaryItem], verdicts: tuple[bool | None, ...] | None) -> list[dict[str, Any]]:
    """The event's items; with verdicts, each with its ``supported`` flag (null: unverifiable)."""
    if verdicts is None:
        return [item.model_dump() for item in items]
    return [item.model_dump() | {"supported": verdict} for item, verdict in zip(items, verdicts, strict=True)]
