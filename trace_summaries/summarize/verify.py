"""Checking each item of a summary against the lines it cites: supported, unsupported, or unverifiable.

A summary's bullets cite lines (``L12``, ``L10-L15``) so a reader can check them; this module does the
checking for them, opt-in (``verify: true`` in the ``trace_summaries`` run config). Each item gets a verdict,
``True`` (supported), ``False`` (unsupported) or ``None`` (unverifiable: it cites no line the text has, or
the check could not decide), judged on the cited lines plus ``CONTEXT_LINES`` lines around each. Items are
never dropped: an unsupported item is kept and marked, and the reader decides.

The summary's *faithfulness* is the share of supported items among the items that got a verdict
(``supported / (supported + unsupported)``); unverifiable items are left out of both sides, so a summary that
cites nothing has no score (None) rather than a score of 0.

Two checks:

- With an LLM endpoint (``LLMVerifier``): one call per trace, at temperature 0, holding every item with its
  lines, numbered, and a strict JSON schema for the answer, one verdict per item
  (``{"verdicts": [{"item": 1, "verdict": "supported"}]}``). On a self-hosted server (``base_url`` set, whose
  structured output is a grammar) the array is bounded to exactly the number of items, so a small model must
  close its JSON. The call's tokens and cost are counted apart from the summary's. An unusable answer (not
  JSON, off schema, refused, cut off) is retried once like the summary's, then the trace's items are
  unverifiable; verification never fails a trace or a run.
- Offline (``verify_lexically``, used with the heuristic summarizer): an item is supported when at least
  half of its content words (lowercased, stop words dropped, three characters or more) appear in its lines.
  This check is *weak*: it rewards copying the trace's words and cannot judge meaning, negation ("did not
  fail" matches a line saying "failed") or numbers (short numbers are not content words, and a wrong number
  next to the right words still passes). It is a cheap smoke test of the references, not a faithfulness
  judge.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from trace_summaries.summarize.line_refs import citable_lines
from trace_summaries.summarize.llm import LLMSummarizer
from trace_summaries.summarize.retry import TRANSIENT_REASONS
from trace_summaries.summarize.schema import SummarizationResponse, SummaryItem

if TYPE_CHECKING:
    from trace_summaries.text_repr import TraceText

VerificationMethod = Literal["lexical", "llm"]
VERIFY_SCHEMA_NAME = "summary_verification"
# Lines shown around each cited line: a statement often spans a call and its result.
CONTEXT_LINES = 2
# Cited lines per item at most (a range ``L10-L400`` is cut to its first lines), before the context.
MAX_CITED_LINES = 12
# Characters of one line shown to the LLM: a line holding a whole document would swamp the prompt.
MAX_LINE_CHARS = 400
# The lexical check: the share of an item's content words its lines must hold for it to be supported.
LEXICAL_THRESHOLD = 0.5

_VERDICTS: dict[str, bool | None] = {"supported": True, "unsupported": False, "unverifiable": None}
_TEXT_LINE = re.compile(r"^L(\d+): ?(.*)$", re.MULTILINE)
_CANONICAL_REF = re.compile(r"L(\d+)(?:\s*-\s*L?(\d+))?", re.IGNORECASE)
_WORD = re.compile(r"[^\W_]+")  # words, snake_case split into its parts
_CODE_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n(.*)\n```\s*$", re.DOTALL)

# Function words, and words every trace's lines hold (so matching them shows nothing).
_STOP_WORDS_TEXT = """
    the and for are was were been being has have had having but not nor yet with without from into onto
    upon this that these those then than there their them they its his her hers him she you your yours our
    ours who whom whose which what when where why how all any both each few more most other some such only
    own same too very can could will would shall should may might must does did doing done also just about
    above below after before again further once here over under out off via per while because until
    trace user users assistant step steps call calls called line lines item items
"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())


class SummaryVerification(BaseModel):
    """The verdicts on one summary's items (bullets, then notes, in order) and what the check cost."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: VerificationMethod
    bullets: tuple[bool | None, ...]
    notes: tuple[bool | None, ...]
    # The verification call's own usage (the LLM check; 0 for the lexical one), every attempt summed.
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    # None when the model has no known price.
    cost_usd: float | None = 0.0
    attempts: int = 0
    # Why the LLM gave no usable verdicts (every item then unverifiable); None when it did.
    error: str | None = None

    @property
    def verdicts(self) -> tuple[bool | None, ...]:
        return self.bullets + self.notes

    @property
    def supported(self) -> int:
        return sum(verdict is True for verdict in self.verdicts)

    @property
    def unsupported(self) -> int:
        return sum(verdict is False for verdict in self.verdicts)

    @property
    def unverifiable(self) -> int:
        return sum(verdict is None for verdict in self.verdicts)

    @property
    def faithfulness(self) -> float | None:
        """Supported items among those with a verdict; None when no item got one."""
        return faithfulness(self.supported, self.unsupported)


def faithfulness(supported: int, unsupported: int) -> float | None:
    """``supported / (supported + unsupported)``, None when both are 0 (see the module's docstring)."""
    judged = supported + unsupported
    return supported / judged if judged else None


class SummaryVerifier(Protocol):
    """Gives a verdict on every item of a summary; never raises for an endpoint problem."""

    @property
    def method(self) -> VerificationMethod: ...

    async def verify(self, trace_text: TraceText, summary: SummarizationResponse) -> SummaryVerification: ...


def make_verifier(summarizer: object, *, context_lines: int = CONTEXT_LINES) -> SummaryVerifier:
    """The LLM check for a summary that came from an LLM endpoint, else the offline lexical one."""
    if isinstance(summarizer, LLMSummarizer):
        return LLMVerifier(summarizer, context_lines=context_lines)
    return LexicalVerifier(context_lines=context_lines)


async def verify_summary(
    trace_text: TraceText,
    summary: SummarizationResponse,
    llm: LLMSummarizer | None = None,
    *,
    context_lines: int = CONTEXT_LINES,
) -> SummaryVerification:
    """Verdicts on every item of ``summary``: by the LLM behind ``llm``, or lexically without one."""
    return await make_verifier(llm, context_lines=context_lines).verify(trace_text, summary)


# --- Evidence -------------------------------------------------------------------------------------------


def line_texts(trace_text: TraceText) -> dict[int, str]:
    """Every citable line's content (without its ``Lnn:`` prefix), by number."""
    citable = citable_lines(trace_text)
    return {
        int(match.group(1)): match.group(2)
        for match in _TEXT_LINE.finditer(trace_text.text)
        if citable(int(match.group(1)))
    }


def cited_numbers(line_refs: str, lines: dict[int, str]) -> list[int]:
    """The lines ``line_refs`` cites that ``lines`` has, in order, once, at most ``MAX_CITED_LINES``."""
    cited: list[int] = []
    for match in _CANONICAL_REF.finditer(line_refs):
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) else start
        for number in range(min(start, end), max(start, end) + 1):
            if len(cited) == MAX_CITED_LINES:
                return cited
            if number in lines and number not in cited:
                cited.append(number)
    return cited


def evidence(item: SummaryItem, lines: dict[int, str], context_lines: int = CONTEXT_LINES) -> list[int]:
    """The lines an item is judged on: those it cites and ``context_lines`` around each; empty when it
    cites no line the text has (the item is then unverifiable)."""
    cited = cited_numbers(item.line_refs, lines)
    shown = {
        number + offset
        for number in cited
        for offset in range(-context_lines, context_lines + 1)
        if number + offset in lines
    }
    return sorted(shown)


# --- The lexical check ----------------------------------------------------------------------------------


def content_words(text: str) -> set[str]:
    """Lowercased words (snake_case split) of three characters or more, not stop words, a final ``s``
    dropped (a crude plural)."""
    words = set()
    for word in _WORD.findall(text.lower()):
        if len(word) < 3 or word in STOP_WORDS:
            continue
        words.add(word[:-1] if len(word) > 3 and word.endswith("s") else word)
    return words


def lexical_verdict(text: str, evidence_text: str, threshold: float = LEXICAL_THRESHOLD) -> bool | None:
    """Whether ``evidence_text`` holds at least ``threshold`` of the content words of ``text``; None when
    ``text`` has no content word to look for."""
    wanted = content_words(text)
    if not wanted:
        return None
    found = wanted & content_words(evidence_text)
    return len(found) / len(wanted) >= threshold


def verify_lexically(
    trace_text: TraceText,
    summary: SummarizationResponse,
    *,
    context_lines: int = CONTEXT_LINES,
    threshold: float = LEXICAL_THRESHOLD,
) -> SummaryVerification:
    """The offline check of every item (weak: see the module's docstring)."""
    lines = line_texts(trace_text)

    def verdict(item: SummaryItem) -> bool | None:
        shown = evidence(item, lines, context_lines)
        if not shown:
            return None
        return lexical_verdict(item.text, "\n".join(lines[number] for number in shown), threshold)

    return SummaryVerification(
        method="lexical",
        bullets=tuple(verdict(item) for item in summary.summary_bullets),
        notes=tuple(verdict(item) for item in summary.interesting_notes),
    )


class LexicalVerifier:
    """``verify_lexically`` behind the ``SummaryVerifier`` protocol."""

    method: VerificationMethod = "lexical"

    def __init__(self, *, context_lines: int = CONTEXT_LINES) -> None:
        self.context_lines = context_lines

    async def verify(self, trace_text: TraceText, summary: SummarizationResponse) -> SummaryVerification:
        return verify_lexically(trace_text, summary, context_lines=self.context_lines)


# --- The LLM check --------------------------------------------------------------------------------------

SYSTEM_PROMPT = """You check a summary of an LLM application's trace against the trace itself.
Each numbered item below is one statement of the summary, followed by the trace lines it cites and a few \
lines around them.
For every item give one verdict:
- "supported": the lines state or directly imply the statement;
- "unsupported": the lines contradict the statement, or say something else;
- "unverifiable": the lines are not enough to tell.
Judge only from the lines shown, not from what is likely.
Answer with JSON only: {"verdicts": [{"item": <item number>, "verdict": "supported" | "unsupported" | \
"unverifiable"}]}, one verdict per item, in the order of the items."""


def verification_response_format(items: int, *, bounded: bool) -> dict[str, Any]:
    """The strict JSON schema of the answer; ``bounded`` (grammar servers) asks for exactly ``items``
    verdicts, numbered 1 to ``items``, so a small model can neither stop early, repeat itself until its cap,
    nor number the items from the text (SmolLM2 answered item 18, after "18°C" in the lines)."""
    verdicts: dict[str, Any] = {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "item": {"type": "integer"},
                "verdict": {"type": "string", "enum": list(_VERDICTS)},
            },
            "required": ["item", "verdict"],
            "additionalProperties": False,
        },
    }
    if bounded:
        verdicts |= {"minItems": items, "maxItems": items}
        verdicts["items"]["properties"]["item"] = {"type": "integer", "enum": list(range(1, items + 1))}
    return {
        "type": "json_schema",
        "json_schema": {
            "name": VERIFY_SCHEMA_NAME,
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"verdicts": verdicts},
                "required": ["verdicts"],
                "additionalProperties": False,
            },
        },
    }


def verification_messages(
    items: Sequence[tuple[SummaryItem, list[int]]], lines: dict[int, str]
) -> list[dict[str, str]]:
    """The chat messages of one verification call: the items numbered from 1, each with its lines."""
    parts = []
    for number, (item, shown) in enumerate(items, start=1):
        quoted = "\n".join(f"L{line}: {_shorten(lines[line])}" for line in shown)
        parts.append(f"Item {number}: {item.text}\nCited: {item.line_refs}\nLines:\n{quoted}")
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "\n\n".join(parts)},
    ]


class VerdictContentError(ValueError):
    """The answer holds no usable verdicts."""


def parse_verdicts(content: str, items: int) -> list[bool | None]:
    """The verdict on items 1..``items`` in an answer; an item the answer leaves out (or names twice: the
    first counts) is unverifiable. An answer of exactly one verdict per item whose numbers are not 1 to
    ``items`` (a small model numbers them from the text) is read in order, as the prompt asks for them.
    ``VerdictContentError`` when the answer is not JSON of the schema or holds no verdict on any item."""
    fenced = _CODE_FENCE.match(content.strip())
    try:
        data = json.loads(fenced.group(1) if fenced else content)
    except ValueError as exc:
        raise VerdictContentError(f"invalid_json: {exc}") from exc
    entries = data.get("verdicts") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise VerdictContentError("schema_violation: no 'verdicts' list")
    usable = [
        (entry.get("item"), entry["verdict"].strip().lower())
        for entry in entries
        if isinstance(entry, dict)
        and isinstance(entry.get("verdict"), str)
        and entry["verdict"].strip().lower() in _VERDICTS
    ]
    numbers = [number for number, _ in usable]
    if len(usable) == items and sorted(n if type(n) is int else 0 for n in numbers) != list(
        range(1, items + 1)
    ):
        usable = [(position, verdict) for position, (_, verdict) in enumerate(usable, start=1)]
    found: dict[int, bool | None] = {}
    for number, verdict in usable:
        if type(number) is int and 1 <= number <= items and number not in found:
            found[number] = _VERDICTS[verdict]
    if not found:
        raise VerdictContentError("schema_violation: no verdict on any item")
    return [found.get(number) for number in range(1, items + 1)]


class LLMVerifier:
    """One verification call per trace through the summarizer's endpoint (its client, pacer and prices).

    Items citing no line of the text are unverifiable without asking; a summary none of whose items cites
    a line costs no call at all.
    """

    method: VerificationMethod = "llm"

    def __init__(
        self,
        summarizer: LLMSummarizer,
        *,
        context_lines: int = CONTEXT_LINES,
        rng: random.Random | None = None,
    ) -> None:
        self.summarizer = summarizer
        self.context_lines = context_lines
        self._rng = rng or random.Random()

    async def verify(self, trace_text: TraceText, summary: SummarizationResponse) -> SummaryVerification:
        lines = line_texts(trace_text)
        items = [*summary.summary_bullets, *summary.interesting_notes]
        shown = [evidence(item, lines, self.context_lines) for item in items]
        asked = [index for index, numbers in enumerate(shown) if numbers]
        verdicts: list[bool | None] = [None] * len(items)
        usage: dict[str, Any] = {"input_tokens": 0, "output_tokens": 0, "cached_input_tokens": 0}
        cost: float | None = 0.0
        attempts = 0
        error: str | None = None
        if asked:
            settings = self.summarizer.settings
            messages = verification_messages([(items[i], shown[i]) for i in asked], lines)
            json_format = verification_response_format(len(asked), bounded=settings.base_url is not None)
            content_failures = 0
            while True:
                answer = await self.summarizer.complete_json(messages, json_format)
                attempts += 1
                for key in usage:
                    usage[key] += getattr(answer, key)
                cost = None if cost is None or answer.cost_usd is None else cost + answer.cost_usd
                if answer.content is not None:
                    try:
                        parsed = parse_verdicts(answer.content, len(asked))
                        for index, verdict in zip(asked, parsed, strict=True):
                            verdicts[index] = verdict
                        error = None
                        break
                    except VerdictContentError as exc:
                        error = f"{exc}{' (the answer reached its cap)' if answer.cut_off else ''}"
                        retryable = content_failures < settings.content_retries
                        content_failures += 1
                else:
                    error = f"{answer.reason}: {answer.error}"
                    if answer.reason in TRANSIENT_REASONS:
                        retryable = attempts < settings.max_attempts
                    else:  # refused or empty (content), or a client error retrying cannot help
                        retryable = content_failures < settings.content_retries and answer.reason in {
                            "refused",
                            "empty_content",
                        }
                        content_failures += 1
                if not retryable or attempts >= settings.max_attempts:
                    break
                if answer.reason in TRANSIENT_REASONS:
                    wait = settings.retry_policy.wait_s(attempts, answer.retry_after_s, self._rng)
                    await asyncio.sleep(wait)
        return SummaryVerification(
            method="llm",
            bullets=tuple(verdicts[: len(summary.summary_bullets)]),
            notes=tuple(verdicts[len(summary.summary_bullets) :]),
            cost_usd=cost,
            attempts=attempts,
            error=error,
            **usage,
        )


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_LINE_CHARS else text[: MAX_LINE_CHARS - 1] + "…"
