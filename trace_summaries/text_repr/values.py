"""Rendering of single values: JSON dumps that never raise, middle truncation, literals, YAML-like errors.

Event properties come from many SDKs and sometimes from hand-written code, so any of these may meet a value
of a shape nobody planned for; each function here returns text for anything and never raises.
"""

from __future__ import annotations

import ast
import json
import math
from typing import Any

from trace_summaries.text_repr.constants import MAX_UNPARSED_DISPLAY_LENGTH
from trace_summaries.text_repr.lines import one_line


def dumps(value: Any, *, indent: int | None = None, ascii_only: bool = True) -> str:
    """``json.dumps`` as the original used it, but total: unknown objects become strings, cycles a repr."""
    try:
        return json.dumps(value, indent=indent, ensure_ascii=ascii_only, default=str)
    except (ValueError, TypeError, RecursionError):
        return safe_repr(value)


def canonical_json(value: Any) -> str:
    """A stable key for "the same value": JSON with sorted keys, or a repr when that is impossible."""
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (ValueError, TypeError, RecursionError):
        return safe_repr(value)


def safe_repr(value: Any, limit: int | None = None) -> str:
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__ must not break the rendering of a trace
        text = f"<{type(value).__name__}>"
    return text if limit is None or len(text) <= limit else text[:limit] + "..."


def unparsed(label: str, value: Any, *, ascii_only: bool = True) -> list[str]:
    """The original's clear fallback for a value of unknown shape: a label, then its JSON cut to 500 chars."""
    text = dumps(value, ascii_only=ascii_only)
    if len(text) > MAX_UNPARSED_DISPLAY_LENGTH:
        text = text[:MAX_UNPARSED_DISPLAY_LENGTH] + "..."
    return [f"[Unparsed {label}: {type(value).__name__}]", text]


def truncate_middle(text: str, buffer: int) -> str:
    """Keep the first and last ``buffer // 2`` characters of a long value, saying how much was cut.

    The original's plain-text (no markers) form: ``first + "\\n\\n... (N chars truncated) ...\\n\\n" + last``
    with N = len - buffer.
    """
    if len(text) <= buffer:
        return text
    half = buffer // 2
    return f"{text[:half]}\n\n... ({len(text) - buffer} chars truncated) ...\n\n{text[-half:]}"


def parse_structured_string(text: str) -> dict[str, Any] | list[Any] | None:
    """A dict or list written as JSON or as a Python literal (the original used ``ast.literal_eval``).

    JSON is tried first because ``literal_eval`` rejects ``true``/``false``/``null``; both are only tried on
    text that looks like a container, which is all they could return anyway.
    """
    stripped = text.strip()
    if not stripped or stripped[0] not in "[{":
        return None
    try:
        value = json.loads(stripped)
    except (ValueError, RecursionError):
        try:
            value = ast.literal_eval(stripped)
        except Exception:  # literal_eval raises many kinds (SyntaxError, MemoryError, RecursionError, ...)
            return None
    return value if isinstance(value, dict | list) else None


def yaml_like_lines(value: Any, indent: int = 0) -> list[str]:
    """Structured errors as ``key: value`` lines, nested by two spaces (the original's error layout)."""
    lines: list[str] = []
    prefix = "  " * indent
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list):
                lines.append(f"{prefix}{as_text(key)}:")
                lines.extend(yaml_like_lines(item, indent + 1))
            else:
                lines.append(f"{prefix}{as_text(key)}: {as_text(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list):
                lines.append(f"{prefix}-")
                lines.extend(yaml_like_lines(item, indent + 1))
            else:
                lines.append(f"{prefix}- {as_text(item)}")
    else:
        lines.append(f"{prefix}{as_text(value)}")
    return lines


def as_number(value: Any) -> float | None:
    """A latency or cost as a float; numeric strings count (some SDKs send them), booleans and NaN do not."""
    if isinstance(value, bool):
        return None
    if not isinstance(value, int | float | str):
        return None
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def as_text(value: Any) -> str:
    """A scalar shown as text: strings as they are, anything else as ``str`` prints it (never raising:
    ``str`` of an int over 4300 digits does)."""
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except Exception:
        return safe_repr(value)


def is_set(value: Any) -> bool:
    """Truthiness of a flag such as ``$ai_is_error``, where SDKs may send the string ``"false"``."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "no", "none", "null")
    return bool(value)


def one_line_text(value: Any) -> str:
    """A name, role or model as a single line of text."""
    return one_line(as_text(value))
