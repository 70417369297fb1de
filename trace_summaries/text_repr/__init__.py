"""Line-numbered text rendering of an LLM trace (pure: no Dagster, no I/O).

The summarizing model never sees raw events: it reads this text, and every bullet of its summary cites its
line numbers. ``format_trace(events, **options)`` returns a :class:`TraceText` with the text and a map from
each line number to the event and section it came from.
"""

from trace_summaries.text_repr.document import LineSource, TraceText
from trace_summaries.text_repr.options import RenderOptions
from trace_summaries.text_repr.trace import format_trace

__all__ = ["LineSource", "RenderOptions", "TraceText", "format_trace"]
