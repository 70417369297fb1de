"""The text under construction, and the finished :class:`TraceText` with its line map.

Every line is recorded with where it came from (event and section) as it is added, so the line map is exact
by construction: later stages use it to check that a cited line exists and to link a bullet to its event.

The compact layout (nested traces) drops blank lines only here, once the whole text is known: renderers keep
building one layout, dedupe records the numbers lines had while being built, and numbering the kept lines
(and every reference with them) in one place is what keeps each ``Lnn`` pointing at the line it means.
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
from trace_summaries.text_repr.line_sampling import sample_lines
from trace_summaries.text_repr.lines import Cited, Fragment, Line, RefLine, Renumber, is_blank, text_lines
from trace_summaries.text_repr.numbering import number_width, numbered

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
    """Lines with their sources; fragments are placed with a prefix (tree indentation) and an event.

    With ``drop_blank_lines`` (the compact layout) :meth:`finish` leaves out every blank line: a third of the
    lines of a nested text, each costing its ``Lnn:`` prefix in tokens while telling the reader nothing.
    """

    def __init__(self, registry: DedupeRegistry | None = None, *, drop_blank_lines: bool = False) -> None:
        self._lines: list[Line] = []
        self._sources: list[LineSource] = []
        self._source_cache: dict[tuple[str | None, str], LineSource] = {}
        self._registry = registry
        self._drop_blank_lines = drop_blank_lines

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
        """Number every line (the kept ones, in the compact layout), then sample down to ``max_length``
        characters if needed."""
        built, sources = self._lines, list(self._sources)
        renumber: Renumber | None = None
        if self._drop_blank_lines:
            built, sources, renumber = _without_blank_lines(built, sources)
        total = len(built)
        width = number_width(total)
        lines = [
            numbered(number, width, line if isinstance(line, str) else line.render(width, renumber))
            for number, line in enumerate(built, start=1)
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


def _without_blank_lines(
    lines: list[Line], sources: list[LineSource]
) -> tuple[list[Line], list[LineSource], Renumber]:
    """The non-blank lines, their sources, and how a range cited while building is numbered among them.

    A cited range shrinks to its first and last kept lines (a message run ending on the blank line after its
    text now ends on the text). A range with nothing but blank lines keeps its first one, so that no
    reference ever cites a line that is not there.
    """
    keep = [not is_blank(line) for line in lines]
    for line in lines:
        if isinstance(line, RefLine):
            for cited in line.cited():
                if not any(keep[cited.first - 1 : cited.last]):
                    keep[cited.first - 1] = True
    # kept_up_to[n]: how many of the lines 1..n are kept, i.e. the new number of line n if it is kept.
    kept_up_to = [0]
    for kept in keep:
        kept_up_to.append(kept_up_to[-1] + kept)

    def renumber(cited: Cited) -> Cited:
        return Cited(kept_up_to[cited.first - 1] + 1, kept_up_to[cited.last])

    kept_lines = [line for line, kept in zip(lines, keep, strict=True) if kept]
    kept_sources = [source for source, kept in zip(sources, keep, strict=True) if kept]
    return kept_lines, kept_sources, renumber


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
