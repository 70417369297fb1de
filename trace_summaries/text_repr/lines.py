"""Lines of the text while it is being built: plain strings, or references to other lines.

A rendered line must never contain a line break, or line numbers (and the line map) would drift from the
text; every value that enters the text goes through :func:`text_lines` or :func:`one_line`. References to
earlier lines (``(same messages as L040-L088)``) are kept as :class:`RefLine` until the final numbering is
known: the zero-padding depends on the total line count, and the compact layout renumbers the text when it
drops blank lines.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trace_summaries.text_repr.anchors import Anchor

# Everything ``str.splitlines`` treats as a line boundary besides "\n": a consumer that splits the text with
# ``splitlines`` must see the same lines as the numbering did.
_OTHER_LINE_BREAKS = re.compile("\r\n|[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_ANY_LINE_BREAK = re.compile("\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]+")


def text_lines(text: str) -> list[str]:
    """Split a value into lines exactly like the original (``split("\\n")``), also on other line breaks."""
    if _OTHER_LINE_BREAKS.search(text):
        text = _OTHER_LINE_BREAKS.sub("\n", text)
    return text.split("\n")


def one_line(text: str) -> str:
    """A value that must stay on its line (a name, a role, a model): line breaks become spaces."""
    return _ANY_LINE_BREAK.sub(" ", text) if _ANY_LINE_BREAK.search(text) else text


@dataclass(frozen=True)
class Cited:
    """Lines ``first``..``last`` cited by a reference, by their number while the text is built.

    Kept as numbers rather than text because the final numbers are only known at the end: the zero-padding
    depends on the total, and the compact layout drops blank lines, which renumbers everything after them.
    """

    first: int
    last: int

    def render(self, width: int) -> str:
        """``L040-L088``, or ``L040`` for a single line."""
        if self.first == self.last:
            return f"L{self.first:0{width}d}"
        return f"L{self.first:0{width}d}-L{self.last:0{width}d}"


# How the final text numbers a cited range, once lines may have been dropped.
Renumber = Callable[[Cited], Cited]


@dataclass(frozen=True)
class RefLine:
    """A line that cites other lines: text, and the :class:`Cited` ranges rendered once numbering is final."""

    parts: tuple[str | Cited, ...]

    def prefixed(self, prefix: str) -> RefLine:
        return RefLine((prefix, *self.parts)) if prefix else self

    def cited(self) -> list[Cited]:
        return [part for part in self.parts if isinstance(part, Cited)]

    def render(self, width: int, renumber: Renumber | None = None) -> str:
        return "".join(
            part if isinstance(part, str) else (part if renumber is None else renumber(part)).render(width)
            for part in self.parts
        )


Line = str | RefLine


def line_ref(number: int) -> RefLine:
    return RefLine((Cited(number, number),))


def range_parts(first: int, last: int) -> tuple[Cited]:
    """The part of a :class:`RefLine` that cites ``first``..``last``."""
    return (Cited(first, last),)


def is_blank(line: Line) -> bool:
    """A line that shows nothing (empty or whitespace only); a reference never is."""
    return isinstance(line, str) and not line.strip()


@dataclass
class Fragment:
    """Rendered lines, each tagged with its section, plus dedupe anchors relative to the first line.

    Renderers return fragments instead of writing into the document, because the original decides whether a
    section exists (and which blank lines precede it) only once its content is known. Anchors are committed
    with absolute line numbers when the fragment is placed.
    """

    lines: list[Line] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)
    anchors: list[tuple[int, Anchor]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.lines)

    def __bool__(self) -> bool:
        return bool(self.lines)

    def add(self, section: str, *lines: Line) -> None:
        """Add lines; a string holding line breaks becomes several lines, so none can slip through."""
        plain = [line for line in lines if isinstance(line, str)]
        if len(plain) == len(lines) and not _ANY_LINE_BREAK.search("".join(plain)):
            self.lines.extend(lines)
            self.sections.extend([section] * len(lines))
            return
        for line in lines:
            if isinstance(line, str) and _ANY_LINE_BREAK.search(line):
                pieces = text_lines(line)
                self.lines.extend(pieces)
                self.sections.extend([section] * len(pieces))
            else:
                self.lines.append(line)
                self.sections.append(section)

    def add_text(self, section: str, text: str) -> None:
        """Add a value that may span several lines."""
        self.add(section, text)

    def extend(self, section: str, lines: Sequence[Line]) -> None:
        self.add(section, *lines)

    def anchor(self, anchor: Anchor, offset: int | None = None) -> None:
        """Register ``anchor`` with positions relative to line ``offset`` (default: the next line)."""
        self.anchors.append((len(self.lines) if offset is None else offset, anchor))

    def append(self, other: Fragment, section: str | None = None) -> None:
        """Append ``other``; its lines keep their sections unless ``section`` overrides them."""
        base = len(self.lines)
        self.lines.extend(other.lines)
        self.sections.extend(other.sections if section is None else [section] * len(other.lines))
        self.anchors.extend((base + offset, anchor) for offset, anchor in other.anchors)
