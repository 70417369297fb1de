"""What every renderer needs besides the value it renders: the options and the dedupe registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trace_summaries.text_repr.anchors import BlockAnchor
from trace_summaries.text_repr.dedupe import DedupeRegistry, block_keys, worth_referencing
from trace_summaries.text_repr.lines import Fragment, RefLine, range_parts, text_lines
from trace_summaries.text_repr.options import RenderOptions
from trace_summaries.text_repr.values import dumps, truncate_middle


@dataclass
class RenderContext:
    options: RenderOptions = field(default_factory=RenderOptions)
    registry: DedupeRegistry | None = None

    @classmethod
    def for_options(cls, options: RenderOptions) -> RenderContext:
        return cls(options=options, registry=DedupeRegistry() if options.dedupe else None)

    def dumps(self, value: Any, *, indent: int | None = None) -> str:
        return dumps(value, indent=indent, ascii_only=self.options.escape_non_ascii)

    def truncate(self, text: str) -> str:
        """A long single value, cut in the middle when ``truncate_values`` is on (as-is otherwise)."""
        if not self.options.truncate_values:
            return text
        return truncate_middle(text, self.options.truncate_buffer)

    def value_block(self, section: str, text: str, value: Any = None) -> Fragment:
        """A rendered value (a state, a string input or output), or a reference to its earlier rendering.

        ``value`` is the structured value ``text`` renders, if any, so that the same dict or list is found
        again whatever its rendering.
        """
        lines = text_lines(self.truncate(text))
        fragment = Fragment()
        if self.registry is not None and worth_referencing(lines):
            keys = block_keys(lines, value)
            placed = next((self.registry.blocks[key] for key in keys if key in self.registry.blocks), None)
            if placed is not None:
                fragment.add(section, same_as(*placed))
                return fragment
            for key in keys:
                fragment.anchor(BlockAnchor(key=key, length=len(lines)))
        fragment.extend(section, lines)
        return fragment


def same_as(first: int, last: int) -> RefLine:
    return RefLine(("(same as ", *range_parts(first, last), ")"))
