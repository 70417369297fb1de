"""Line numbers: added once over the whole text, zero-padded to the width of the total (``L01:``..``L23:``).

Numbering the whole text once (not each event body) is what makes a line reference point to one place.
"""

from __future__ import annotations


def number_width(total_lines: int) -> int:
    return len(str(total_lines))


def numbered(number: int, width: int, line: str) -> str:
    return f"L{number:0{width}d}: {line}"


def add_line_numbers(text: str) -> str:
    """``L1: ...`` for each line of ``text``; the original's helper, kept for texts built elsewhere."""
    lines = text.split("\n")
    width = number_width(len(lines))
    return "\n".join(numbered(number, width, line) for number, line in enumerate(lines, start=1))
