"""Leakage from the prompt: summary items that repeat the prompt's own example text instead of the trace.

A small model asked for a title may answer with the title the prompt showed as an example. Such a summary
describes the prompt, not the trace, and nothing else notices it: the JSON is valid and the line references
may even exist. This module flags a title, bullet or note that repeats example text of any prompt version we
ship (old versions included, since stored summaries were written with them).

The example text is read from the prompt files, never kept by hand, so a new prompt version is covered as
soon as it ships. In a prompt, example text is what is quoted (``"..."``, JSON values included), what is a
placeholder (``<...>``), and the block under an ``Example:`` or ``Shape:`` line. Every other word of
the prompts is rule text, and the vocabulary of the rules (``user``, ``tool``, ``error``) is what any summary
of any trace uses, so it is not evidence of a copy.

An item is flagged when it shares a run of at least two consecutive words with an example and either

- the run holds at least two *distinctive* words: not a stop word, not rule vocabulary, and absent from the
  trace text (``"Refund Request Routed to Billing Tool"`` on a trace about a SQL query); or
- the run is the whole example (three words or more), that phrase is not in the trace, and at least half of
  its words (stop words aside) are absent from the trace (a copied placeholder such as
  ``<one fact about this trace>``, whose words are all rule vocabulary).

Words are compared lower-cased and lightly stemmed (``routed`` and ``routes`` are one word). What the trace
itself says is never leakage: a trace really about a refund routed to billing may be summarized in those
words.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from trace_summaries.summarize.prompts import shipped_prompts
from trace_summaries.summarize.schema import SummarizationResponse

_WORD = re.compile(r"\w+")
_QUOTED = re.compile(r'"((?:[^"\\\n]|\\.)*)"')
_PLACEHOLDER = re.compile(r"<([^<>\n]+)>")
# "Example:" or "Shape:" alone on its line opens an example block, which runs to the next blank line.
_BLOCK_MARKER = re.compile(r"^\s*(?:example|shape)s?:\s*$", re.IGNORECASE)
_LINE_LABEL = re.compile(r"^l\d+$")
_SUFFIXES = ("ing", "ed", "es", "s")
_MIN_STEM = 3
# A copied example needs this many distinctive words, or must be a whole example of this many words.
_MIN_DISTINCTIVE = 2
_MIN_WHOLE_PHRASE = 3

# Function words: they join the words of an example but say nothing about where the text came from.
_STOP_WORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be been before being below between
    both but by can could did do does doing down during each few for from further had has have having he
    her here hers him his how i if in into is it its itself just me more most my no nor not now of off on
    once only or other our ours out over own same she should so some such than that the their theirs them
    then there these they this those through to too under until up very was we were what when where which
    while who whom why will with would you your yours
    """.split()  # noqa: SIM905 - a word list reads better as prose
)


@dataclass(frozen=True)
class PromptLeak:
    """One summary item that repeats prompt example text: the item (``title``, ``summary_bullets[2]``) and
    the repeated words as the item wrote them."""

    item: str
    phrase: str

    @property
    def warning(self) -> str:
        return f'{self.item} repeats prompt example text "{self.phrase}"'


@dataclass(frozen=True)
class _Examples:
    phrases: tuple[tuple[str, ...], ...]
    rule_words: frozenset[str]


def find_prompt_leaks(summary: SummarizationResponse, trace_text: str) -> list[PromptLeak]:
    """The items of ``summary`` that repeat prompt example text absent from ``trace_text``: one per item."""
    examples = _examples()
    trace_words = _stems(trace_text)
    trace_sequence = f" {' '.join(trace_words)} "
    trace_vocabulary = frozenset(trace_words)
    leaks: list[PromptLeak] = []
    for item, text in _items(summary):
        phrase = _leaked_phrase(text, examples, trace_vocabulary, trace_sequence)
        if phrase is not None:
            leaks.append(PromptLeak(item=item, phrase=phrase))
    return leaks


def leakage_warnings(summary: SummarizationResponse, trace_text: str) -> list[str]:
    """``find_prompt_leaks`` as the short strings stored in ``$ai_summary_warnings``."""
    return [leak.warning for leak in find_prompt_leaks(summary, trace_text)]


def example_phrases() -> Iterable[str]:
    """The example phrases the detector knows, lower-cased and stemmed (for inspection and tests)."""
    return [" ".join(words) for words in _examples().phrases]


def _items(summary: SummarizationResponse) -> Iterator[tuple[str, str]]:
    yield "title", summary.title
    for index, bullet in enumerate(summary.summary_bullets):
        yield f"summary_bullets[{index}]", bullet.text
    for index, note in enumerate(summary.interesting_notes):
        yield f"interesting_notes[{index}]", note.text


def _leaked_phrase(
    text: str, examples: _Examples, trace_vocabulary: frozenset[str], trace_sequence: str
) -> str | None:
    """The longest run of ``text`` that is leaked example text, as written in ``text``; None if none is."""
    surface = [word for word in _WORD.findall(text) if not _LINE_LABEL.match(word.lower())]
    words = [_stem(word) for word in surface]
    best: tuple[int, int] | None = None
    for phrase in examples.phrases:
        for start, length in _common_runs(words, phrase):
            run = words[start : start + length]
            distinctive = [
                word
                for word in run
                if _is_content(word) and word not in examples.rule_words and word not in trace_vocabulary
            ]
            content = [word for word in run if _is_content(word)]
            absent = [word for word in content if word not in trace_vocabulary]
            whole = (
                length == len(phrase)
                and length >= _MIN_WHOLE_PHRASE
                and f" {' '.join(phrase)} " not in trace_sequence
                and bool(absent)
                and 2 * len(absent) >= len(content)
            )
            if (len(distinctive) >= _MIN_DISTINCTIVE or whole) and (best is None or length > best[1]):
                best = (start, length)
    if best is None:
        return None
    start, length = best
    return " ".join(surface[start : start + length])


def _common_runs(words: list[str], phrase: tuple[str, ...]) -> Iterator[tuple[int, int]]:
    """``(start in words, length)`` of every maximal run of at least two words shared with ``phrase``."""
    for i in range(len(words)):
        for j in range(len(phrase)):
            if words[i] != phrase[j] or (i > 0 and j > 0 and words[i - 1] == phrase[j - 1]):
                continue
            length = 1
            limit = min(len(words) - i, len(phrase) - j)
            while length < limit and words[i + length] == phrase[j + length]:
                length += 1
            if length >= 2:
                yield i, length


def _is_content(word: str) -> bool:
    return len(word) > 1 and word not in _STOP_WORDS


@functools.cache
def _examples() -> _Examples:
    """The example phrases and the rule vocabulary of every prompt file we ship."""
    phrases: dict[tuple[str, ...], None] = {}
    rule_words: set[str] = set()
    for text in shipped_prompts().values():
        examples, rules = split_prompt(text)
        for example in examples:
            words = tuple(_stems(example))
            if len(words) >= 2:
                phrases.setdefault(words)
        rule_words.update(word for word in _stems(rules) if _is_content(word))
    return _Examples(phrases=tuple(phrases), rule_words=frozenset(rule_words))


def split_prompt(text: str) -> tuple[list[str], str]:
    """A prompt's example texts (quoted strings, placeholders, example blocks) and its remaining rule text."""
    examples: list[str] = []
    rules: list[str] = []
    in_block = False
    for line in text.splitlines():
        if in_block:
            if line.strip():
                examples.append(line)
                continue
            in_block = False
        if _BLOCK_MARKER.match(line):
            in_block = True
            continue
        quoted = [_unescape(match) for match in _QUOTED.findall(line)]
        examples.extend(quoted)
        rest = _QUOTED.sub(" ", line)
        for example in [*quoted, rest]:
            examples.extend(_PLACEHOLDER.findall(example))
        rules.append(_PLACEHOLDER.sub(" ", rest))
    # A placeholder's parts ("<what the user asked, 3-10 words>") are examples of their own.
    parts = [part for example in examples for part in example.split(",") if "," in example]
    return examples + parts, "\n".join(rules)


def _unescape(quoted: str) -> str:
    """A JSON string's text: ``\\n`` separates steps of an example flow, it is not the word ``n``."""
    return re.sub(r"\\(.)", lambda match: " " if match.group(1) in "nt" else match.group(1), quoted)


def _stems(text: str) -> list[str]:
    return [_stem(word) for word in _WORD.findall(text.lower()) if not _LINE_LABEL.match(word)]


def _stem(word: str) -> str:
    """A crude stem that maps a word's usual forms to one key (``route``, ``routes``, ``routed``: ``rout``).

    Not linguistics, only consistency: prompt, item and trace go through the same function.
    """
    word = word.lower()
    if word in _STOP_WORDS:
        return word
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= _MIN_STEM:
            word = word[: -len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) > _MIN_STEM else word
