"""Anchors: where a rendered block, tool list or message list sits, so a later copy can point back to it.

Plain data, shared by the line builder (``lines``) and the de-duplication registry (``dedupe``).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass


@dataclass(frozen=True)
class ToolsAnchor:
    """The ``AVAILABLE TOOLS`` line of a tool list, at the anchor's offset."""

    key: str


# A value is found again by its rendered lines (``("text", lines)``) or, for a dict or list, by its JSON
# (``("json", canonical JSON)``): a tool span's output state and the tool message that carries the same
# result as a JSON string render differently but are the same value.
BlockKey = tuple[str, Hashable]


@dataclass(frozen=True)
class BlockAnchor:
    """A rendered value of ``length`` lines starting at the anchor's offset."""

    key: BlockKey
    length: int


@dataclass(frozen=True)
class MessageEntry:
    """Where one message of a list sits, relative to the anchor; ``source`` is set (absolute) when the entry
    is itself a reference, and then names the full rendering it stands for."""

    start: int
    end: int
    source: tuple[int, int] | None = None


@dataclass(frozen=True)
class MessagesAnchor:
    keys: tuple[int, ...]
    entries: tuple[MessageEntry, ...]


Anchor = ToolsAnchor | BlockAnchor | MessagesAnchor
