"""6. Tokens: prompt tokens per trace, our rendering (nest + dedupe) versus the original flat rendering.

Traces: the seeder's (``trace_summaries.demo.generate_hour``: support/code/SQL agents, RAG, extraction,
writing chats, in OpenAI and Anthropic shapes), without the oversized kinds the sampling guards exclude.
Each is rendered twice with ``trace_summaries.text_repr.format_trace``: defaults (the original's flat
layout) and ``nest=True, dedupe=True`` (what the pipeline sends, in the compact layout that comes with
nesting: no blank lines, tree guides only on the tree lines). Tokens are counted with tiktoken's encoding
for the summarizing model (``gpt-4.1-nano`` -> ``o200k_base``), for the whole prompt as sent
(``summarize.chat_messages``: system + user message, plus OpenAI's per-message framing of 3 tokens and 3
for the reply) and for the trace text alone.

Nothing may be lost. Per trace, against the flat rendering:

* events: every event with a line in the flat text has one in ours (``line_map``), and every event but
  ``$ai_trace`` (which only names the trace) has at least one line;
* messages: the number of ``[i] ROLE`` messages, counting each ``[i..j] (same messages as ...)`` reference
  by what it cites, is the same;
* tool calls: the multiset of tool-call lines (``name(args)``), with references expanded to the lines
  they cite, is the same;
* every ``(same ... as Lx-Ly)`` reference cites lines that exist in the text. A single message's
  reference (``[3] ASSISTANT (same message as L067)``) cites the header line of its full rendering; its
  body is read from there to the next rule, message or section.

tiktoken fetches ``o200k_base`` from the internet on first use. Offline, ``encoding()`` below fetches it
from PyPI instead: the ``litellm`` wheel ships tiktoken's cache file (``pip download``, once, into
``.data/bench/tiktoken``), and tiktoken checks its SHA-256 against the hash it expects. Without tiktoken
or PyPI the counts fall back to a labelled approximation.

Run standalone: ``python bench/bench_tokens.py [--quick]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import BENCH_DATA, Row, print_rows, row, seeded_traces

from trace_summaries.summarize import chat_messages
from trace_summaries.summarize import partition as partition_summaries
from trace_summaries.summarize.steps import trace_name
from trace_summaries.text_repr import TraceText, format_trace

MODEL = "gpt-4.1-nano"
# What the trace_summaries asset renders with by default, when the installed pipeline defines it.
PIPELINE = getattr(partition_summaries, "PIPELINE_RENDERING", None)
TARGET_RATIO = 0.75  # at least 25% fewer tokens
# tiktoken's cache file name for o200k_base is the SHA-1 of its URL; this wheel ships that very file.
O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
WHEEL = "litellm==1.110.2"
PIP_DOWNLOAD = (sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:")
WHEEL_MEMBER = "litellm/litellm_core_utils/tokenizers/fb374d419588a4632f3f557e76b4b70aebbca790"
# OpenAI's chat framing: every message costs 3 tokens besides its content, and the reply is primed with 3.
TOKENS_PER_MESSAGE = 3
TOKENS_REPLY_PRIMING = 3


@dataclass
class Encoder:
    count: Callable[[str], int]
    label: str
    exact: bool


def _fetch_o200k(cache_dir: Path) -> None:
    """Puts tiktoken's cache file for o200k_base into ``cache_dir``, from the litellm wheel on PyPI."""
    target = cache_dir / hashlib.sha1(O200K_URL.encode()).hexdigest()
    if target.exists() and hashlib.sha256(target.read_bytes()).hexdigest() == O200K_SHA256:
        return
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-tiktoken-") as tmp:
        subprocess.run(
            [*PIP_DOWNLOAD, "--dest", tmp, WHEEL],
            check=True,
            timeout=600,
        )
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(WHEEL_MEMBER)
    if hashlib.sha256(data).hexdigest() != O200K_SHA256:
        raise RuntimeError(f"{WHEEL}: {WHEEL_MEMBER} is not tiktoken's o200k_base file")
    target.write_bytes(data)


def encoding() -> Encoder:
    """The model's tokenizer, offline; an approximation (labelled) only if that is impossible."""
    try:
        import tiktoken
        import tiktoken.model
    except ImportError:
        return _approximation("tiktoken is not installed")
    name = tiktoken.model.encoding_name_for_model(MODEL)
    cache_dir = Path(os.environ.get("TIKTOKEN_CACHE_DIR") or BENCH_DATA / "tiktoken")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache_dir)
    try:
        if name == "o200k_base":
            _fetch_o200k(cache_dir)
        enc = tiktoken.get_encoding(name)
    except Exception as exc:  # no PyPI either: say so in every row rather than fail the benchmark
        return _approximation(f"{name} unavailable offline ({type(exc).__name__})")
    return Encoder(lambda text: len(enc.encode(text, disallowed_special=())), f"tiktoken {name}", True)


def _approximation(reason: str) -> Encoder:
    pattern = re.compile(r"\w+|[^\w\s]|\s+")
    return Encoder(lambda text: len(pattern.findall(text)), f"APPROXIMATE (regex; {reason})", False)


def prompt_tokens(count: Callable[[str], int], text: str, name: str | None) -> int:
    messages = chat_messages(text, name, "detailed")
    return sum(count(m["content"]) + TOKENS_PER_MESSAGE for m in messages) + TOKENS_REPLY_PRIMING


# -- nothing lost ------------------------------------------------------------------------------------------

_NUMBERED = re.compile(r"^L(\d+): ?(.*)$")
_TREE = re.compile(r"^[│├└─ ]*")
_HEADER = re.compile(r"^\[(\d+)\] ([A-Z][A-Z_]*)$")
_ONE_REF = re.compile(r"^\[\d+\] [A-Z][A-Z_]* \(same (?:message|system prompt) as L(\d+)(?:-L(\d+))?\)$")
_RUN_REF = re.compile(r"^\[(\d+)\.\.(\d+)\] \(same messages as L(\d+)(?:-L(\d+))?\)$")
_BLOCK_REF = re.compile(r"^\(same as L(\d+)(?:-L(\d+))?\)$")
_TOOL_CALL = re.compile(r"^(?:- )?([A-Za-z_][\w.:-]*)\((.*)\)$")
CONTENT_SECTIONS = frozenset({"input", "output", "state_input", "state_output", "trace_state", "error"})


_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def _unescape(text: str) -> str:
    """Tool-call arguments as a reader sees them, whether non-ASCII was escaped (``\\u00f3``) or not."""
    if "\\u" not in text:
        return text
    raw = _ESCAPE.sub(lambda match: chr(int(match.group(1), 16)), text)
    return raw.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


@dataclass
class Inventory:
    """Messages and tool calls a rendering shows, references expanded to what they cite."""

    messages: int = 0
    tool_calls: Counter[str] = field(default_factory=Counter)
    broken_refs: int = 0

    def add(self, other: Inventory) -> None:
        self.messages += other.messages
        self.tool_calls.update(other.tool_calls)
        self.broken_refs += other.broken_refs


def inventory(trace: TraceText) -> Inventory:
    lines: dict[int, str] = {}
    for raw in trace.text.split("\n"):
        match = _NUMBERED.match(raw)
        if match:
            lines[int(match.group(1))] = _TREE.sub("", match.group(2)).strip()
    memo: dict[int, Inventory] = {}

    def span(first: int, last: int, depth: int) -> Inventory:
        total = Inventory()
        if any(number not in lines for number in (first, last)):
            total.broken_refs += 1
            return total
        for number in range(first, last + 1):
            if number in lines:
                total.add(line(number, depth))
        return total

    def message_body(header: int) -> list[int]:
        source = trace.line_map.get(header)
        body: list[int] = []
        number = header + 1
        while number in lines and trace.line_map.get(number) == source:
            content = lines[number]
            if content.startswith("-----") or _HEADER.match(content) or _ONE_REF.match(content):
                break
            if _RUN_REF.match(content):
                break
            body.append(number)
            number += 1
        return body

    def line(number: int, depth: int = 0) -> Inventory:
        if number in memo:
            return memo[number]
        content = lines[number]
        source = trace.line_map.get(number)
        found = Inventory()
        if depth > 200:
            found.broken_refs += 1
        elif source is None or source.section not in CONTENT_SECTIONS:
            pass
        elif _HEADER.match(content):
            found.messages += 1
        elif match := _ONE_REF.match(content):
            # Cites the header line of the message's full rendering: its body is the lines after it, up to
            # the rule, the next message or the end of the section.
            found.messages += 1
            first = int(match.group(1))
            if first not in lines:
                found.broken_refs += 1
            else:
                for body in message_body(first):
                    found.add(line(body, depth + 1))
        elif match := _RUN_REF.match(content):
            # A run may cite a single line: a reference line that itself stands for the whole run.
            found.add(span(int(match.group(3)), int(match.group(4) or match.group(3)), depth + 1))
        elif match := _BLOCK_REF.match(content):
            found.add(span(int(match.group(1)), int(match.group(2) or match.group(1)), depth + 1))
        elif match := _TOOL_CALL.match(content):
            found.tool_calls[_unescape(content.removeprefix("- "))] += 1
        memo[number] = found
        return found

    total = Inventory()
    for number in lines:
        total.add(line(number))
    return total


def event_lines(trace: TraceText) -> set[str]:
    return {source.event_uuid for source in trace.line_map.values() if source.event_uuid}


@dataclass
class Losses:
    events: int = 0
    messages: int = 0
    tool_calls: int = 0
    broken_refs: int = 0
    traces_with_loss: list[str] = field(default_factory=list)


def check(events: list[dict[str, Any]], flat: TraceText, ours: TraceText, losses: Losses) -> None:
    before = (losses.events, losses.messages, losses.tool_calls, losses.broken_refs)
    ours_events = event_lines(ours)
    must_show = event_lines(flat) | {e["uuid"] for e in events if e["event"] != "$ai_trace"}
    losses.events += len(must_show - ours_events)
    flat_inv, ours_inv = inventory(flat), inventory(ours)
    losses.messages += max(0, flat_inv.messages - ours_inv.messages)
    losses.tool_calls += sum((flat_inv.tool_calls - ours_inv.tool_calls).values())
    losses.broken_refs += ours_inv.broken_refs
    if (losses.events, losses.messages, losses.tool_calls, losses.broken_refs) != before:
        losses.traces_with_loss.append(events[0]["properties"].get("$ai_trace_id", "?"))


# -- the benchmark -----------------------------------------------------------------------------------------


def run(quick: bool = False) -> list[Row]:
    encoder = encoding()
    traces: list[list[dict[str, Any]]] = []
    for team in range(1, 3 if quick else 6):
        traces += seeded_traces(30 if quick else 100, team_id=team, traces_per_hour=100)

    losses = Losses()
    flat_prompt: list[int] = []
    ours_prompt: list[int] = []
    flat_text: list[int] = []
    ours_text: list[int] = []
    agent_pairs: list[tuple[int, int]] = []
    pipeline_prompt: list[int] = []
    pipeline_losses = Losses()
    messages_total = tool_calls_total = 0
    for events in traces:
        flat = format_trace(events)
        ours = format_trace(events, nest=True, dedupe=True)
        check(events, flat, ours, losses)
        inv = inventory(flat)
        messages_total += inv.messages
        tool_calls_total += sum(inv.tool_calls.values())
        name = trace_name(events)
        flat_prompt.append(prompt_tokens(encoder.count, flat.text, name))
        ours_prompt.append(prompt_tokens(encoder.count, ours.text, name))
        if PIPELINE is not None:
            pipeline = format_trace(events, options=PIPELINE)
            check(events, flat, pipeline, pipeline_losses)
            pipeline_prompt.append(prompt_tokens(encoder.count, pipeline.text, name))
        flat_text.append(encoder.count(flat.text))
        ours_text.append(encoder.count(ours.text))
        generations = sum(1 for e in events if e["event"] == "$ai_generation")
        if generations >= 3:
            agent_pairs.append((ours_prompt[-1], flat_prompt[-1]))

    n = len(traces)
    ratio = sum(ours_prompt) / sum(flat_prompt)
    per_trace = sorted(o / f for o, f in zip(ours_prompt, flat_prompt, strict=True))
    label = encoder.label if encoder.exact else encoder.label.upper()
    rows = [
        row(
            "prompt tokens / trace: nest+dedupe vs flat",
            sum(ours_prompt) / n,
            "tokens",
            baseline=sum(flat_prompt) / n,
            target=f"ratio <= {TARGET_RATIO:.2f}",
            met=ratio <= TARGET_RATIO,
            note=f"{n} seeded traces; {label}; {(1 - ratio):.0%} fewer",
            digits=1,
        ),
        row(
            "trace text tokens / trace (text only)",
            sum(ours_text) / n,
            "tokens",
            baseline=sum(flat_text) / n,
            note=f"{1 - sum(ours_text) / sum(flat_text):.0%} fewer; system prompt excluded",
            digits=1,
        ),
        row(
            "agent traces (>= 3 generations): prompt tokens / trace",
            sum(o for o, _ in agent_pairs) / max(1, len(agent_pairs)),
            "tokens",
            baseline=sum(f for _, f in agent_pairs) / max(1, len(agent_pairs)),
            note=f"{len(agent_pairs)} traces",
            digits=1,
        ),
        *(
            [
                row(
                    "pipeline rendering (PIPELINE_RENDERING): prompt tokens / trace",
                    sum(pipeline_prompt) / n,
                    "tokens",
                    baseline=sum(flat_prompt) / n,
                    note=(
                        "what the asset sends: nest+dedupe+event details+trace state, non-ASCII kept; "
                        f"lost: {pipeline_losses.events} events, {pipeline_losses.messages} messages, "
                        f"{pipeline_losses.tool_calls} tool calls, {pipeline_losses.broken_refs} bad refs"
                    ),
                    digits=1,
                )
            ]
            if pipeline_prompt
            else []
        ),
        row(
            "per-trace prompt ratio: median / worst",
            statistics.median(per_trace),
            "ratio",
            note=f"worst trace {per_trace[-1]:.3f}, best {per_trace[0]:.3f}",
        ),
        row(
            "events lost (no line in our text)",
            losses.events,
            "events",
            target="= 0",
            met=losses.events == 0,
            note=f"{sum(len(t) for t in traces)} events",
        ),
        row(
            "messages lost",
            losses.messages,
            "messages",
            target="= 0",
            met=losses.messages == 0,
            note=f"{messages_total} message renderings in the flat texts",
        ),
        row(
            "tool calls lost",
            losses.tool_calls,
            "tool calls",
            target="= 0",
            met=losses.tool_calls == 0,
            note=f"{tool_calls_total} tool-call lines in the flat texts",
        ),
        row(
            "line references to missing lines",
            losses.broken_refs,
            "refs",
            target="= 0",
            met=losses.broken_refs == 0,
            note=("traces: " + ", ".join(losses.traces_with_loss[:3])) if losses.traces_with_loss else "",
        ),
    ]
    if not encoder.exact:
        for item in rows:
            if item["unit"] == "tokens":
                item["name"] += " (APPROXIMATE)"
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print_rows(run(quick=parser.parse_args().quick))
