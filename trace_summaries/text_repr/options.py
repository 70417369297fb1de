"""How a trace is rendered. Defaults reproduce the original pipeline; every improvement is opt-in."""

from __future__ import annotations

from dataclasses import dataclass

from trace_summaries.text_repr.constants import (
    DEFAULT_MAX_LENGTH,
    DEFAULT_TOOLS_COLLAPSE_THRESHOLD,
    DEFAULT_TRUNCATE_BUFFER,
)


@dataclass(frozen=True)
class RenderOptions:
    """Options of :func:`trace_summaries.text_repr.format_trace`.

    The defaults are the original's baseline behaviour (flat hierarchy, no truncation of single values,
    sampling above 2M characters), so summaries made with them cite lines the way the original did.
    """

    # Above this many characters the numbered text is uniformly sampled; ``None`` or 0 disables sampling.
    max_length: int | None = DEFAULT_MAX_LENGTH
    # Ours: render spans and generations under their parent (``$ai_parent_id``) instead of one flat list, in
    # the compact layout: no blank lines, tree guides only on the tree lines (see ``trace``).
    nest: bool = False
    # Ours: render repeated tool lists, messages, message runs and big state values once, then reference
    # them by line number; every message index stays visible.
    dedupe: bool = False
    # Cut long single values in the middle (the original's ``truncated`` option, off in its baseline).
    truncate_values: bool = False
    truncate_buffer: int = DEFAULT_TRUNCATE_BUFFER
    # Tool lists longer than this collapse to one line; ``None`` never collapses (ours).
    tools_collapse_threshold: int | None = DEFAULT_TOOLS_COLLAPSE_THRESHOLD
    # Ours: show metric name/value and feedback text under their ``[EVENT]`` line (the original: name only).
    event_details: bool = False
    # Ours: show the trace's input and output state even when it has events (the original only shows them
    # for a trace without events).
    include_trace_state: bool = False
    # JSON dumps escape non-ASCII characters like the original; ``False`` keeps them readable (and cheaper).
    escape_non_ascii: bool = True

    def __post_init__(self) -> None:
        if self.max_length is not None and self.max_length < 0:
            raise ValueError(f"max_length must be >= 0 or None, got {self.max_length}")
        if self.truncate_buffer < 2:
            raise ValueError(f"truncate_buffer must be >= 2, got {self.truncate_buffer}")
        if self.tools_collapse_threshold is not None and self.tools_collapse_threshold < 0:
            raise ValueError(
                f"tools_collapse_threshold must be >= 0 or None, got {self.tools_collapse_threshold}"
            )
