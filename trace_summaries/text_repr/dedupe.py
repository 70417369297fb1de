"""Render repeated content once, then cite it by line number (the ``dedupe`` option, ours).

Agent traces repeat themselves: every generation of a loop resends the system prompt, the tool list and the
whole conversation so far, and each tool call appears once as an output and again as the next input. The
original renders all of it each time, so the text grows with the square of the loop length. With dedupe:

- a tool list seen before becomes ``AVAILABLE TOOLS: 3 (same tools as L020)``;
- a run of messages equal to a run rendered before becomes ``[1..6] (same messages as L040-L088)``, and a
  single one ``[7] ASSISTANT (same message as L090)`` (``same system prompt`` for a system message), so each
  generation only prints its new messages while every message index stays visible;
- a big state, string value or JSON tool result seen before becomes ``(same as L120-L180)``, also when it
  was rendered in another shape (a span's output state, then the tool message carrying it as JSON).

A reference only ever points backwards, to lines already placed, so it is valid in the final text. Runs may
point at lines that are themselves references (a chain of at most one step per generation), which keeps the
number of references per generation constant instead of growing with the conversation.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from trace_summaries.text_repr.anchors import (
    Anchor,
    BlockAnchor,
    BlockKey,
    ToolsAnchor,
)
from trace_summaries.text_repr.constants import DEDUPE_MIN_BLOCK_CHARS, DEDUPE_MIN_BLOCK_LINES
from trace_summaries.text_repr.values import canonical_json

# A message as rendered, without its index: the role, then the lines under the ``[i] ROLE`` header (text, or
# a reference line). Two messages are "the same" when a reader could not tell them apart.
MessageKey = tuple[str, tuple[Hashable, ...]]


@dataclass(frozen=True)
class MessageRun:
    """A run of messages already placed: ``length`` messages cited by the line range ``first``..``last``."""

    length: int
    first: int
    last: int
    # The full rendering of each message of the run, for later references to a single one of them.
    sources: tuple[tuple[int, int], ...]


@dataclass
class _PlacedList:
    keys: tuple[int, ...]
    starts: list[int]
    ends: list[int]
    # The full rendering each entry stands for (its own range when it is one).
    sources: list[tuple[int, int]]


@dataclass
class DedupeRegistry:
    """What has been placed so far, by content, with absolute line numbers."""

    tools: dict[str, int] = field(default_factory=dict)
    blocks: dict[BlockKey, tuple[int, int]] = field(default_factory=dict)
    _message_ids: dict[MessageKey, int] = field(default_factory=dict)
    _lists: list[_PlacedList] = field(default_factory=list)
    _positions: dict[int, list[tuple[int, int]]] = field(default_factory=dict)

    def message_id(self, key: MessageKey) -> int:
        """Messages are compared by a small int, so that matching runs never compares long texts twice."""
        return self._message_ids.setdefault(key, len(self._message_ids))

    def commit(self, anchor: Anchor, base: int) -> None:
        """Record ``anchor``, whose relative positions start at absolute line ``base``."""
        if isinstance(anchor, ToolsAnchor):
            self.tools.setdefault(anchor.key, base)
        elif isinstance(anchor, BlockAnchor):
            self.blocks.setdefault(anchor.key, (base, base + anchor.length - 1))
        else:
            placed = _PlacedList(
                keys=anchor.keys,
                starts=[base + entry.start for entry in anchor.entries],
                ends=[base + entry.end for entry in anchor.entries],
                sources=[entry.source or (base + entry.start, base + entry.end) for entry in anchor.entries],
            )
            list_id = len(self._lists)
            self._lists.append(placed)
            for position, key in enumerate(anchor.keys):
                self._positions.setdefault(key, []).append((list_id, position))

    def longest_run(self, keys: tuple[int, ...], start: int) -> MessageRun | None:
        """The longest run of placed messages equal to ``keys[start:...]``.

        Ties go to a run whose first message is a full rendering, then to the latest list (the nearest one
        to the reader). A single message is cited by its full rendering, never by a reference to it.
        """
        best: tuple[int, bool, int] | None = None
        best_run: MessageRun | None = None
        for list_id, position in self._positions.get(keys[start], ()):
            placed = self._lists[list_id]
            length = 1
            while (
                start + length < len(keys)
                and position + length < len(placed.keys)
                and placed.keys[position + length] == keys[start + length]
            ):
                length += 1
            is_full = placed.sources[position] == (placed.starts[position], placed.ends[position])
            score = (length, is_full, list_id)
            if best is None or score > best:
                best = score
                if length == 1:
                    first, last = placed.sources[position]
                else:
                    first, last = placed.starts[position], placed.ends[position + length - 1]
                best_run = MessageRun(
                    length=length,
                    first=first,
                    last=last,
                    sources=tuple(placed.sources[position : position + length]),
                )
        return best_run


def worth_referencing(lines: list[str]) -> bool:
    """Only big values are replaced: a reference to a one-liner costs as much as the line and reads worse."""
    return len(lines) >= DEDUPE_MIN_BLOCK_LINES or sum(map(len, lines)) >= DEDUPE_MIN_BLOCK_CHARS


def json_key(value: dict[str, Any] | list[Any]) -> BlockKey:
    return ("json", canonical_json(value))


def block_keys(lines: list[str], value: Any = None) -> list[BlockKey]:
    """The keys under which a rendered value is found again: its lines, and its JSON if it is structured."""
    keys: list[BlockKey] = [("text", tuple(lines))]
    if isinstance(value, dict | list):
        keys.append(json_key(value))
    return keys
