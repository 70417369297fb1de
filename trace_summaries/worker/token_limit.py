"""Cutting text to an embedding model's input limit without a tokenizer.

The exact tokenizer (tiktoken's cl100k) downloads its vocabulary on first use, which this project cannot
count on (no internet in CI or in air-gapped deployments), so token counts are estimated per character,
on the side of over-counting: ASCII letters, digits and spaces at 1/3 token each (English BPE averages
about 1/4, digits are grouped by three), ASCII punctuation at 1 token, and other characters at their UTF-8
byte count (cl100k is a byte-level BPE: a token is never shorter than one byte, so this part can only
over-count). Summaries are far below the limit; the cut matters for the odd giant one, where dropping a
tail is better than a request the API rejects.

``cut_to_byte_limit`` is the guaranteed bound (bytes >= tokens for a byte-level BPE), used as the fallback
when an endpoint still rejects an input as too long.
"""

from __future__ import annotations

_WORD_CHAR_TOKENS = 1 / 3


def _char_tokens(char: str) -> float:
    if char.isascii():
        return _WORD_CHAR_TOKENS if (char.isalnum() or char.isspace()) else 1.0
    return float(len(char.encode("utf-8")))


def estimate_tokens(text: str) -> float:
    return sum(_char_tokens(char) for char in text)


def cut_to_token_limit(text: str, max_tokens: int) -> str:
    """The longest prefix of ``text`` whose estimated token count is within ``max_tokens``."""
    # Fast path: every character costs at most 4 tokens (4 UTF-8 bytes).
    if len(text) * 4 <= max_tokens:
        return text
    total = 0.0
    for index, char in enumerate(text):
        total += _char_tokens(char)
        if total > max_tokens:
            return text[:index]
    return text


def cut_to_byte_limit(text: str, max_bytes: int) -> str:
    """The longest prefix of at most ``max_bytes`` UTF-8 bytes, never splitting a character."""
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", errors="ignore")
