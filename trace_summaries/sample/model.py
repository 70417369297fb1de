"""The sample of one (hour, team) partition: its traces and events, what sampling counted, and its file.

The file format is JSON lines (a header line with the team, window and stats, then one trace per line):
readable by any tool, safe to load (not pickle), and written and read a line at a time so a partition at the
size limits (~200 MB of lines) is never held twice in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

AI_EVENT_TYPES: tuple[str, ...] = (
    "$ai_trace",
    "$ai_span",
    "$ai_generation",
    "$ai_embedding",
    "$ai_metric",
    "$ai_feedback",
)

# Traces dropped by a size guard are counted per guard; events without a trace id are no trace at all and
# are counted as events (``events_without_trace_id``).
GuardExclusion = Literal["too_many_events", "too_large"]
GUARD_EXCLUSIONS: tuple[GuardExclusion, ...] = ("too_many_events", "too_large")

# How many excluded trace ids of each reason are reported back (the counts are always complete).
EXCLUDED_EXAMPLES = 10

# Properties nested deeper than this are cut (the deeper value becomes ``TOO_DEEP``): pydantic reads JSON
# only ~200 levels deep and writes ~250, so one absurdly nested event would otherwise fail the partition's
# intermediate object, and with it every trace of the partition.
MAX_PROPERTIES_DEPTH = 64
TOO_DEEP = f"[value nested deeper than {MAX_PROPERTIES_DEPTH} levels: not shown]"


class SamplingConfig(BaseModel):
    """The guards of the original pipeline, plus how far around the hour a trace's events may lie."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_traces: int = Field(default=100, ge=0)
    max_trace_events: int = Field(default=50, ge=1)
    max_trace_properties_chars: int = Field(default=2_000_000, ge=1)
    # Events of a trace are looked for this far before and after the hour: far enough before to see that a
    # trace started in the previous hour (and so is not ours), far enough after to fetch a trace that runs on.
    trace_margin_minutes: int = Field(default=60, ge=0, le=24 * 60)
    # Properties characters (as the selection query measures them) fetched per query: bounds the raw rows
    # held at once, and in an embedded store the engine's buffers for them (several times the raw size, not
    # all returned to the system), so the peak memory of sampling no longer grows with the partition's raw
    # size. A trace larger than the budget is fetched alone. Changes how many queries build the sample, never
    # the sample. The budget trades peak memory against the number of queries (figures: bench/README.md,
    # peak memory).
    fetch_chunk_properties_chars: int = Field(default=16_000_000, ge=1)


class TraceEvent(BaseModel):
    """One event of a sampled trace, with its properties decoded."""

    model_config = ConfigDict(extra="forbid")

    uuid: str
    event: str
    timestamp: datetime
    properties: dict[str, Any]


class SampledTrace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trace_id: str
    first_timestamp: datetime
    event_count: int
    properties_chars: int
    events: list[TraceEvent]
    # Rows of this trace whose properties are not a JSON object: reported, not rendered.
    malformed_event_uuids: list[str] = Field(default_factory=list)


class SamplingStats(BaseModel):
    model_config = ConfigDict(extra="forbid")

    traces_in_window: int = 0
    traces_eligible: int = 0
    traces_selected: int = 0
    traces_excluded: dict[str, int] = Field(default_factory=dict)
    excluded_examples: dict[str, list[str]] = Field(default_factory=dict)
    events_without_trace_id: int = 0
    events_fetched: int = 0
    malformed_rows: int = 0
    malformed_event_uuids: list[str] = Field(default_factory=list)
    duplicate_events_dropped: int = 0
    # Events whose properties were nested deeper than ``MAX_PROPERTIES_DEPTH`` (kept, deep part cut).
    too_deep_event_uuids: list[str] = Field(default_factory=list)
    select_query_seconds: float = 0.0
    fetch_query_seconds: float = 0.0


class TeamHourSample(BaseModel):
    """The sampled traces of one team and one window: the unit every later stage works on."""

    model_config = ConfigDict(extra="forbid")

    team_id: int
    window_start: datetime
    window_end: datetime
    traces: list[SampledTrace]
    stats: SamplingStats

    def iter_jsonl(self) -> Iterator[bytes]:
        """JSON lines, one at a time, each ending in a newline: a header line (team, window, stats), then one
        trace per line; readable by any tool. Line by line, so writing a partition never holds a second
        copy of it (a whole partition's lines are ~200 MB at the size limits)."""
        yield self.model_dump_json(exclude={"traces"}).encode() + b"\n"
        for trace in self.traces:
            yield trace.model_dump_json().encode() + b"\n"

    def write_jsonl(self, handle: IO[bytes]) -> None:
        for line in self.iter_jsonl():
            handle.write(line)

    @classmethod
    def read_jsonl(cls, lines: Iterable[bytes], *, traces: bool = True) -> TeamHourSample:
        """The sample from its JSON lines as they arrive (a binary file iterates over them), parsing each
        trace's line before the next is read, so the raw text is never held whole next to the parsed traces.
        ``traces=False`` reads the header line only (team, window, stats) and leaves the traces empty.

        Lines must be split on ``b"\\n"`` only (a binary file, ``jsonl_lines``), never with ``splitlines``:
        JSON leaves U+2028, U+2029 and U+0085 unescaped inside strings, and ``str.splitlines`` would cut a
        trace's line in two at them."""
        iterator = iter(lines)
        header = next(iterator, b"")
        sample = cls.model_validate_json(header.replace(b"{", b'{"traces":[],', 1))
        if not traces:
            return sample
        sample.traces = [
            SampledTrace.model_validate_json(line) for line in iterator if line not in (b"", b"\n")
        ]
        return sample


def jsonl_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The lines of a byte stream that arrives in arbitrary chunks (an S3 body), split on ``b"\\n"`` only
    (see ``TeamHourSample.read_jsonl``). A line's parts are joined once, not re-concatenated per chunk as
    ``botocore``'s ``iter_lines`` does, which is quadratic in a multi-megabyte trace line."""
    pending: list[bytes] = []
    for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            pending.append(chunk[start:end])
            yield b"".join(pending)
            pending.clear()
            start = end + 1
        if start < len(chunk):
            pending.append(chunk[start:])
    if pending:
        yield b"".join(pending)
