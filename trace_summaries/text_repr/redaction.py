"""Optional PII redaction of trace text before it reaches the LLM (pure: no I/O).

Off by default. When on, every match of a pattern is replaced with ``[REDACTED:<kind>]`` and counted per
kind; the counts go on the summary event (``$ai_summary_redactions``). Redaction works line by line on the
rendered text and only after each line's ``L<nn>: `` prefix, and a replacement never contains a line break,
so line numbers, the number of lines and the line map stay exactly as rendered: the model's line refs still
point where they did.

Built-in kinds, applied in this order (a part already redacted is never matched again):

- ``api_key``: OpenAI/Anthropic ``sk-...``, AWS ``AKIA...``/``ASIA...``, GitHub ``ghp_...`` and
  ``github_pat_...``, Stripe ``sk_live_...``, Slack ``xox?-...``, Google ``AIza...``;
- ``token``: ``Bearer <token>`` and JWT-like ``eyJ....eyJ....<sig>``;
- ``email``;
- ``card``: 13 to 19 digits, contiguous or grouped by spaces or dashes as cards print them, starting with
  a card network's digit (2 to 6) and passing the Luhn check (any other number of that shape is left
  alone);
- ``phone``: international (``+<cc> ...``, ``00<cc> ...``), North-American (``(555) 123-4567``) or national
  with a trunk ``0`` (``020 7946 0958``); dates, times, IP addresses, amounts, lists of numbers and bare
  digit runs are not phones.

``extra_patterns`` adds kinds (name -> regular expression), applied after the built-in ones; an extra with a
built-in name replaces that pattern (``card`` and ``phone`` keep their digit checks), and an empty expression
turns a kind off.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from trace_summaries.text_repr.document import TraceText

REDACTED = "[REDACTED:{kind}]"

DEFAULT_PATTERNS: dict[str, str] = {
    "api_key": (
        r"(?<![\w-])(?:"
        r"sk-(?:[A-Za-z0-9]+-)*[A-Za-z0-9_-]{16,}"
        r"|(?:AKIA|ASIA)[0-9A-Z]{16}"
        r"|gh[pousr]_[A-Za-z0-9]{30,}"
        r"|github_pat_[A-Za-z0-9_]{22,}"
        r"|(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}"
        r"|xox[abposr]-[A-Za-z0-9-]{10,}"
        r"|AIza[0-9A-Za-z_-]{35}"
        r")(?![\w-])"
    ),
    "token": (
        r"(?i:\bbearer)\s+[A-Za-z0-9._~+/-]{8,}=*"
        r"|(?<![\w-])eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}(?![\w-])"
    ),
    "email": r"(?i)(?<![\w.%+-])[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}(?![\w-])",
    # Contiguous, in groups of four (a last group of 1-3 for 17-19 digits), or Amex's 4-6-5.
    "card": (
        r"(?<![\w.,/:-])"
        r"(?:\d{13,19}|\d{4}(?:[ -]\d{4}){2,3}(?:[ -]\d{1,3})?|\d{4}[ -]\d{6}[ -]\d{4,5})"
        r"(?![\w/:-]|[.,]\d)"
    ),
    "phone": (
        r"(?<![\w+.,/:-])"
        r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?"
        r"\d{2,4}(?:[ .-]\d{2,4}){1,4}"
        r"(?![\w/:-]|[.,]\d)"
    ),
}

_KIND = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
# A rendered line: "L<nn>: " then the content (the sampled-view note is line L00).
_LINE_PREFIX = re.compile(r"L\d+: ")


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _is_card(match: str) -> bool:
    """13 to 19 digits, a card network's first digit (2 to 6) and a valid Luhn checksum."""
    digits = re.sub(r"\D", "", match)
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_valid(digits)


# North-American grouping: (555) 123-4567, 555-123-4567, 555.123.4567, 555 123 4567.
_NANP = re.compile(r"(?:\(\d{3}\)|\d{3})[ .-]?\d{3}[ .-]\d{4}")
# A date at the start (2026-11-20 0930, 20/11/2026 1030) is a timestamp, not a phone number.
_DATE_START = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}(?!\d)|\d{1,2}[-./]\d{1,2}[-./]\d{4}(?!\d)")


def _is_phone(match: str) -> bool:
    """International numbers (+<cc> or 00<cc>, 8 to 15 digits), North-American groupings, or national
    numbers with a trunk 0 (020 7946 0958, 06 12 34 56 78); not dates, IP addresses or lists of numbers."""
    digits = len(re.sub(r"\D", "", match))
    if _DATE_START.match(match):
        return False
    if match.startswith(("+", "00")):
        return 8 <= digits <= 15
    if _NANP.fullmatch(match):
        return True
    return match.startswith(("0", "(0")) and 10 <= digits <= 11


# Checks a match must also pass to count as the kind (kept when a pattern of that name is replaced).
_VALIDATORS: dict[str, Callable[[str], bool]] = {"card": _is_card, "phone": _is_phone}


@dataclass(frozen=True)
class RedactionConfig:
    """What to redact. ``enabled=False`` (the default) leaves every text untouched."""

    enabled: bool = False
    patterns: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_PATTERNS))
    extra_patterns: Mapping[str, str] = field(default_factory=dict)
    _compiled: tuple[tuple[str, re.Pattern[str]], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        merged = {**self.patterns, **self.extra_patterns}
        compiled: list[tuple[str, re.Pattern[str]]] = []
        for kind, pattern in merged.items():
            if not isinstance(kind, str) or not _KIND.fullmatch(kind):
                raise ValueError(
                    f"invalid redaction kind {kind!r}: use letters, digits and '_' (e.g. 'customer_id')"
                )
            if not isinstance(pattern, str):
                raise ValueError(f"redaction pattern {kind!r} must be a regular expression string")
            if not pattern:
                continue  # an empty pattern turns the kind off
            try:
                compiled.append((kind, re.compile(pattern)))
            except re.error as exc:
                raise ValueError(
                    f"redaction pattern {kind!r} is not a valid regular expression: {exc}"
                ) from None
        object.__setattr__(self, "_compiled", tuple(compiled))

    @property
    def kinds(self) -> list[str]:
        return [kind for kind, _ in self._compiled]

    def redact_text(self, text: str) -> tuple[str, dict[str, int]]:
        """The text with matches replaced, and how many of each kind. Line numbering is kept: a line that
        starts with ``L<nn>: `` keeps that prefix untouched, and the number of lines never changes."""
        if not self.enabled or not self._compiled or not text:
            return text, {}
        counts: Counter[str] = Counter()
        lines = text.split("\n")
        for index, line in enumerate(lines):
            prefix = _LINE_PREFIX.match(line)
            start = prefix.end() if prefix else 0
            content = self._redact_line(line[start:], counts)
            lines[index] = line[:start] + content
        return "\n".join(lines), dict(counts)

    def redact_value(self, value: Any) -> tuple[Any, dict[str, int]]:
        """A copy of a JSON-like value (dicts, lists, scalars) with every string redacted, keys included.
        Iterative, so any nesting depth is fine."""
        if not self.enabled or not self._compiled:
            return value, {}
        counts: Counter[str] = Counter()

        def clean(item: Any) -> Any:
            if isinstance(item, str):
                return self._redact_line(item, counts, multiline=True)
            return item

        # Containers are rebuilt top-down: each work item is (how to store the copy, the original value).
        result: list[Any] = [None]
        work: list[tuple[Callable[[Any], None], Any]] = [(_setter(result, 0), value)]
        while work:
            assign, item = work.pop()
            if isinstance(item, dict):
                new_dict: dict[Any, Any] = {}
                assign(new_dict)
                for key, child in item.items():
                    new_key = clean(key)
                    if new_key != key and new_key in new_dict:  # two keys redacted alike: keep both
                        new_key = f"{new_key}#{len(new_dict)}"
                    new_dict[new_key] = None
                    work.append((_setter(new_dict, new_key), child))
            elif isinstance(item, list | tuple):
                new_list: list[Any] = [None] * len(item)
                assign(new_list)
                for position, child in enumerate(item):
                    work.append((_setter(new_list, position), child))
            else:
                assign(clean(item))
        return result[0], dict(counts)

    def _redact_line(self, content: str, counts: Counter[str], *, multiline: bool = False) -> str:
        if not content:
            return content
        if multiline and "\n" in content:
            return "\n".join(self._redact_line(part, counts) for part in content.split("\n"))
        # Pieces of the line: (text, already redacted). Later patterns only look at unredacted pieces.
        pieces: list[tuple[str, bool]] = [(content, False)]
        for kind, pattern in self._compiled:
            validator = _VALIDATORS.get(kind)
            marker = REDACTED.format(kind=kind)
            next_pieces: list[tuple[str, bool]] = []
            for text, done in pieces:
                if done:
                    next_pieces.append((text, done))
                    continue
                position = 0
                for match in pattern.finditer(text):
                    found = match.group(0)
                    if not found or (validator is not None and not validator(found)):
                        continue
                    if match.start() > position:
                        next_pieces.append((text[position : match.start()], False))
                    next_pieces.append((marker, True))
                    counts[kind] += 1
                    position = match.end()
                if position < len(text):
                    next_pieces.append((text[position:], False))
            pieces = next_pieces
        return "".join(text for text, _ in pieces)


def _setter(container: dict[Any, Any] | list[Any], key: Any) -> Callable[[Any], None]:
    def assign(value: Any) -> None:
        container[key] = value

    return assign


def redact_text(text: str, config: RedactionConfig) -> tuple[str, dict[str, int]]:
    """``config.redact_text(text)``: the redacted text and the count of each kind."""
    return config.redact_text(text)


def redact_trace_text(trace_text: TraceText, config: RedactionConfig) -> tuple[TraceText, dict[str, int]]:
    """The rendered trace with its text redacted; line map, total and sampling flag unchanged."""
    text, counts = config.redact_text(trace_text.text)
    if not counts:
        return trace_text, {}
    return dataclasses.replace(trace_text, text=text), counts
