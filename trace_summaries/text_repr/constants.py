"""Every number and fixed string of the text rendering, in one place.

The values follow PostHog's original formatter (``products/llm_analytics/backend/text_repr/formatters``) so
that a summary's line references mean the same here as there; the few that are ours say so.
"""

from __future__ import annotations

# Visual rules: a section separator, and the rule under the trace (or span) title.
SEPARATOR = "-" * 80
HEADER_RULE = "=" * 80

# Title of a trace that has no name anywhere.
DEFAULT_TRACE_NAME = "TRACE"

# Middle truncation of long single values (only with ``truncate_values``): this many characters are kept,
# half from the start and half from the end.
DEFAULT_TRUNCATE_BUFFER = 1000

# Fallbacks for values of an unknown shape keep at most this much of their JSON (original: 500).
MAX_UNPARSED_DISPLAY_LENGTH = 500

# A tool list longer than this collapses to one ``[+] AVAILABLE TOOLS: N`` line.
DEFAULT_TOOLS_COLLAPSE_THRESHOLD = 5

# Ours: in the compact layout of a nested trace, body lines start with this instead of the tree guides.
COMPACT_BODY_INDENT = "  "

# Deeper levels of a nested hierarchy are not indented any further (original: 10).
MAX_TREE_DEPTH = 10

# The whole text is kept under this many characters by uniform line sampling (provider limit for OpenAI).
DEFAULT_MAX_LENGTH = 2_000_000

# Uniform sampling: the first lines are always kept; the note is inserted after the first two of them.
PRESERVE_HEADER_LINES = 5
SAMPLED_VIEW_NOTE_POSITION = 2
SAMPLED_VIEW_HEADER = (
    "[SAMPLED VIEW: Showing ~{percent:.0f}% of {total:,} lines. "
    "Gaps in line numbers indicate omitted content.]"
)
# The first sample is sized from the average line length; sampled lines may be longer, so the target is
# shrunk by this factor up to this many times before the text is cut hard.
SAMPLING_MAX_ITERATIONS = 10
SAMPLING_REDUCTION_FACTOR = 0.9

# Ours: the sampled-view note is numbered ``L0`` so that every line of the text starts with a line number
# while every kept line keeps its original number.
SAMPLED_VIEW_LINE_NUMBER = 0

# Ours (dedupe): a repeated state or string value is only replaced by a reference when it is at least this
# big, so that a reference never costs more than the value it replaces.
DEDUPE_MIN_BLOCK_LINES = 5
DEDUPE_MIN_BLOCK_CHARS = 100
