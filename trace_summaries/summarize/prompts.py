"""The versioned prompt files and the chat messages built from them.

Prompts are text files (``prompts/<name>.<version>.txt``) rather than Python strings so that a reviewer sees a
wording change as a prose diff, and a new wording ships as a new file next to the old one. ``PROMPT_VERSION``
names the files in use and is stamped on every summary event, so summaries written by different prompts can
be told apart (and re-run) later.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from importlib import resources
from string import Template

from trace_summaries.summarize.modes import SummaryMode

PROMPT_VERSION = "v4"
# Held back in the text's budget for the notable lines of the user message (``heuristic.notable_lines``).
NOTABLE_LINES_RESERVE_CHARS = 1200

_PACKAGE = "trace_summaries.summarize"


@cache
def load_prompt(name: str, version: str = PROMPT_VERSION) -> str:
    """The text of ``prompts/<name>.<version>.txt``, read from the installed package (works from a wheel)."""
    return (resources.files(_PACKAGE) / "prompts" / f"{name}.{version}.txt").read_text(encoding="utf-8")


@cache
def shipped_prompts() -> dict[str, str]:
    """Every prompt file we ship, of every version (``"system_detailed.v1"`` -> its text).

    Old versions stay: summaries written with them are still stored, and the leakage check must recognise
    their examples too.
    """
    folder = resources.files(_PACKAGE) / "prompts"
    return {
        entry.name.removesuffix(".txt"): entry.read_text(encoding="utf-8")
        for entry in sorted(folder.iterdir(), key=lambda entry: entry.name)
        if entry.name.endswith(".txt")
    }


def system_prompt(mode: SummaryMode, version: str = PROMPT_VERSION) -> str:
    return load_prompt(f"system_{mode}", version)


def user_prompt(
    trace_text: str,
    trace_name: str | None,
    version: str = PROMPT_VERSION,
    notable_lines: Sequence[str] = (),
) -> str:
    """The user message: the trace text embedded verbatim, and (versions that have the slot) its notable
    lines.

    ``Template`` only parses the template, never the values, so braces or dollar signs in a trace cannot
    break the substitution; versions without ``$notable_lines`` ignore it.
    """
    return Template(load_prompt("user", version)).substitute(
        trace_name=trace_name or "(unnamed trace)",
        trace_text=trace_text,
        notable_lines="\n".join(_notable_entry(line, version) for line in notable_lines) or "(none)",
    )


def _notable_entry(line: str, version: str) -> str:
    """One notable line (``"L045: what it shows"``) as the version writes it: ``notable.<version>.txt`` is
    its shape (``$ref``, ``$text``, ``$text_json``); without that file, the line as it is."""
    try:
        shape = load_prompt("notable", version)
    except FileNotFoundError:
        return line
    ref, _, text = line.partition(": ")
    return Template(shape.strip()).substitute(
        ref=ref, text=text, text_json=json.dumps(text, ensure_ascii=False)
    )


def chat_messages(
    trace_text: str,
    trace_name: str | None,
    mode: SummaryMode,
    version: str = PROMPT_VERSION,
    notable_lines: Sequence[str] = (),
) -> list[dict[str, str]]:
    """The ``messages`` of the chat completion: the mode's rules as system, the trace as user."""
    return [
        {"role": "system", "content": system_prompt(mode, version)},
        {"role": "user", "content": user_prompt(trace_text, trace_name, version, notable_lines)},
    ]
