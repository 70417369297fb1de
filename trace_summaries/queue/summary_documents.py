"""From a stored `$ai_trace_summary` event to what gets embedded: the summary text without line refs."""

from __future__ import annotations

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
