"""From a stored `$ai_trace_summary` event to what gets embedded: the summary text without line refs."""

from __future__ import annotations

from collections.abc import Iterable

from trace_summaries.queue.request import SummaryDocument
from trace_summaries.write.event import SummaryEvent


def summary_document(event: SummaryEvent) -> SummaryDocument:
    props = event.properties
    return SummaryDocument(
        team_id=event.team_id,
        trace_id=props.trace_id,
        mode=props.mode,
        batch_run_id=props.batch_run_id,
        # The event's own timestamp (the window end), so a re-sent request is identical to the first.
        timestamp=event.timestamp,
        title=props.title,
        flow_diagram=props.flow_diagram,
        bullets=[bullet.text for bullet in props.bullets],
        notes=[note.text for note in props.interesting_notes],
    )


def summary_documents(events: Iterable[SummaryEvent], mode: str | None) -> list[SummaryDocument]:
    """The documents of the events summarized in ``mode`` (every stored mode when ``mode`` is None).

    A partition's window holds the summaries of every mode that ran for it; a run queues its own mode's
    only, so a detailed run after a minimal one does not queue the minimal summaries again.
    """
    return [summary_document(event) for event in events if mode is None or event.properties.mode == mode]
