"""The text under construction, and the finished :class:`TraceText` with its line map.

Every line is recorded with where it came from (event and section) as it is added, so the line map is exact
by construction: later stages use it to check that a cited line exists and to link a bullet to its event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from trace_summaries.text_repr.constants import (
    SAMPLED_VIEW_HEADER,
    SAMPLED_VIEW_LINE_NUMBER,
    SAMPLED_VIEW_NOTE_POSITION,
)
from trace_summaries.text_repr.dedupe import DedupeRegistry
from trace_summaries.text_repr.lines import Fragment, Line, text_lines
from trace_summaries.text_repr.numbering import number_width, numbered
from trace_summaries.text_repr.sampling import sample_lines

SECTIONS = frozenset(
    {
        "header",
        "tree",
        "tools",
        "input",
        "output",
        "error",
        "state_input",
        "state_output",
        "embedding",
        "event",
        "sampled_view",
        "trace_state",
    }
)


@dataclass(frozen=True)
class LineSource:
    """Where a line of the text came from.

    ``event_uuid`` is None for trace-level lines (header, rules, ``TRACE HIERARCHY:``, the sampled-view
    note); ``section`` is one of :data:`SECTIONS` (``tree`` is an event's own ``├─``/``└─`` line).
    """

    event_uuid: str | None
    section: str


@dataclass(frozen=True)
class TraceText:
    """The rendered trace: ``text`` (every line ``L<nn>: ...``) and ``line_map``, which holds exactly the
    line numbers present in ``text`` (after sampling, the sampled-view note is line 0)."""

    text: str
    line_map: dict[int, LineSource]
    total_lines: int
    sampled: bool

    def has_line(self, n: int) -> bool:
        return n in self.line_map

    def lines_of_event(self, event_uuid: str) -> list[int]:
        """The line numbers rendered from one event, in order."""
        return [number for number, source in self.line_map.items() if source.event_uuid == event_uuid]


class DocumentBuilder:
    """Lines with their sources; fragments are placed with a prefix (tree indentation) and an event."""

    def __init__(self, registry: DedupeRegistry | None = None) -> None:
        self._lines: list[Line] = []
        self._sources: list[LineSource] = []
        self._source_cache: dict[tuple[str | None, str], LineSource] = {}
        self._registry = registry

    def _source(self, event_uuid: str | None, section: str) -> LineSource:
        key = (event_uuid, section)
        source = self._source_cache.get(key)
        if source is None:
            source = self._source_cache[key] = LineSource(event_uuid, section)
        return source

    @property
    def next_line(self) -> int:
        """The number the next added line will get."""
        return len(self._lines) + 1

    def add(self, event_uuid: str | None, section: str, *lines: str) -> None:
        source = self._source(event_uuid, section)
        for line in lines:
            for piece in text_lines(line):
                self._lines.append(piece)
                self._sources.append(source)

    def place(self, fragment: Fragment, event_uuid: str | None, prefix: str = "") -> None:
        """Add a fragment's lines behind ``prefix`` and commit its dedupe anchors at their final numbers."""
        base = self.next_line
        self._lines.extend(
            prefix + line if isinstance(line, str) else line.prefixed(prefix) for line in fragment.lines
        )
        sources = {section: self._source(event_uuid, section) for section in set(fragment.sections)}
        self._sources.extend(sources[section] for section in fragment.sections)
        if self._registry is not None:
            for offset, anchor in fragment.anchors:
                self._registry.commit(anchor, base + offset)

    def finish(self, max_length: int | None) -> TraceText:
        """Number every line, then sample down to ``max_length`` characters if needed."""
        total = len(self._lines)
        width = number_width(total)
        lines = [
            numbered(number, width, line if isinstance(line, str) else line.render(width))
            for number, line in enumerate(self._lines, start=1)
        ]
        text = "\n".join(lines)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # Lone surrogates (JSON allows "\ud800") cannot be written as UTF-8: each becomes "?", one
            # character for one, so no line changes length or number.
            text = text.encode("utf-8", errors="replace").decode("utf-8")
            lines = text.split("\n")
        numbers = list(range(1, total + 1))
        sources = list(self._sources)

        sample = sample_lines(lines, max_length, self._note_line(width)) if max_length else None
        if sample is None:
            return TraceText(
                text=text, line_map=dict(zip(numbers, sources, strict=True)), total_lines=total, sampled=False
            )

        kept_lines = [lines[index] for index in sample.kept]
        kept_numbers = [numbers[index] for index in sample.kept]
        kept_sources = [sources[index] for index in sample.kept]
        if sample.note is not None:
            at = SAMPLED_VIEW_NOTE_POSITION
            kept_lines.insert(at, sample.note)
            kept_numbers.insert(at, SAMPLED_VIEW_LINE_NUMBER)
            kept_sources.insert(at, self._source(None, "sampled_view"))
        text = "\n".join(kept_lines)
        if sample.cut and max_length is not None and len(text) > max_length:
            text, kept_numbers, kept_sources = _cut(
                text, kept_lines, kept_numbers, kept_sources, max_length, width
            )
        return TraceText(
            text=text,
            line_map=dict(zip(kept_numbers, kept_sources, strict=True)),
            total_lines=total,
            sampled=True,
        )

    @staticmethod
    def _note_line(width: int) -> Callable[[float, int], str]:
        def note(percent: float, total: int) -> str:
            return numbered(
                SAMPLED_VIEW_LINE_NUMBER, width, SAMPLED_VIEW_HEADER.format(percent=percent, total=total)
            )

        return note


def _cut(
    text: str,
    lines: list[str],
    numbers: list[int],
    sources: list[LineSource],
    max_length: int,
    width: int,
) -> tuple[str, list[int], list[LineSource]]:
    """The last resort of sampling: cut the text at ``max_length``; a line stays in the map only if its
    ``L<nn>: `` prefix survived."""
    kept_numbers: list[int] = []
    kept_sources: list[LineSource] = []
    offset = 0
    for line, number, source in zip(lines, numbers, sources, strict=True):
        if offset + len(numbered(number, width, "")) > max_length:
            break
        kept_numbers.append(number)
        kept_sources.append(source)
        offset += len(line) + 1
    cut = text[:max_length]
    if len(kept_numbers) < cut.count("\n") + 1:
        # The last line lost part of its "L<nn>: " prefix: drop it, every line must start with its number.
        cut = cut[: cut.rfind("\n")] if "\n" in cut else ""
    return cut, kept_numbers, kept_sources
