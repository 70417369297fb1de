"""Benchmark 14: summary quality against the seeder's ground truth (issue 18).

The seeder knows, for every trace it writes, which events failed, which tool failed, the user's feedback and
its sentiment, and the slowest and the most expensive step (``trace_summaries.demo.truth``). The rendered
text's ``line_map`` turns each of those into lines, so a summary's citations can be checked, not only their
existence. For each summarizer, on a fixed seeded sample (team 1, consecutive hours of 20 traces, the
oversized kinds excluded by the sampling guards as in the pipeline):

* **citation accuracy**: of the items (bullets and notes) that mention the error / the failed tool / the
  feedback, the share whose cited lines include a line of that event;
* **coverage**: the share of traces with an error whose summary mentions it (anywhere, and in a note), and of
  traces with feedback (and with negative feedback) whose summary mentions it;
* **validity**: items whose reference resolves, items without one, references dropped;
* **shape**: title length, bullets and notes per trace, flows drawn vertically;
* **leakage**: traces whose summary repeats the prompt's own examples (the pipeline's warning);
* tokens and cost per trace.

"Mentions" is decided by words outside quotes (``ERROR_WORDS``, ``FEEDBACK_WORDS``, a failed tool's name; a
quote is the trace's own words, so a user asking why "test_discount is failing" is not an error mention), or
by quoting the feedback itself (24 consecutive characters of it, anywhere in the item): a paraphrase without
those words is not counted as a mention, which makes coverage a lower bound for fluent LLM summaries.

Summarizers: the offline heuristic one (target: >= 95% citation accuracy and coverage, it knows where things
are), our OpenAI-compatible test server (answers of real models' shapes, content unrelated to the trace: the
figures show what the pipeline makes of such answers, not a model), the packaged local models on llama.cpp
(SmolLM2-135M, and Qwen2.5-Coder-0.5B with ``make models-large``) on a smaller subset of the sample (the
traces with errors and feedback first; their figures are honest, not targets), and any endpoint given by
``OPENAI_BASE_URL`` (``TRACE_SUMMARIES_LLM_MODEL`` names its model).

    .venv/bin/python bench/bench_quality.py [--quick] [--no-local-models]     # its own table
    .venv/bin/python bench/run --only quality [--quick]

For prompt work: ``--models qwen05b`` (the local models to run, comma-separated), ``--prompt-versions v2,v3``
(a row per model and prompt version, the same traces: the earlier version is the baseline in the same run),
``--dump DIR`` (each summary's items with their cited lines and the ground truth's lines, a JSON file per
row). Local models answer at temperature 0 with a fixed seed, so two runs of one prompt give one answer and a
difference between rows is the prompt's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

from _common import START, Row, print_rows, row

TEAM_ID = 1
TRACES_PER_HOUR = 20
FULL_HOURS = 12
QUICK_HOURS = 4
# Traces per real local model (the slowest rows): errors and feedback first, then the rest in id order.
REAL_MODEL_TRACES = {True: 0, False: 8}
MODE = "detailed"
EVENT_FIELDS = ("uuid", "event", "timestamp", "properties")

ERROR_WORDS = re.compile(
    r"\b(error|errors|errored|fail\w*|exception|timeout|timed out|unavailable|503|500|429|rate.?limit\w*|"
    r"crash\w*|retr(y|ied|ies))\b|✗",
    re.IGNORECASE,
)
FEEDBACK_WORDS = re.compile(
    r"\b(feedback|complain\w*|rated|rating|thumbs|unhappy|angry|furious|frustrat\w*|useless|praise\w*|"
    r"thank\w*|satisf\w*)\b",
    re.IGNORECASE,
)
# Quoted text is the trace's own words (the user's question, the model's answer), not the summary's statement:
# "test_discount is failing" quoted is a question, not a mention of a failure.
_QUOTED = re.compile(r'"[^"]*"|“[^”]*”|«[^»]*»')
# An item quoting this many consecutive characters of the feedback mentions it, feedback words or not.
QUOTE_CHARS = 24
_REF = re.compile(r"L(\d+)(?:\s*-\s*L?(\d+))?")


@dataclass
class Case:
    trace_id: str
    truth: Any  # trace_summaries.demo.truth.TraceTruth
    events: list[dict[str, Any]]


@dataclass
class Tally:
    """Counts over one summarizer's summaries; ``figures`` turns them into shares."""

    traces: int = 0
    summarized: int = 0
    failed: int = 0
    items: int = 0
    items_resolved: int = 0
    items_without_ref: int = 0
    refs_dropped: int = 0
    mention: dict[str, int] = field(default_factory=lambda: {"error": 0, "tool": 0, "feedback": 0})
    accurate: dict[str, int] = field(default_factory=lambda: {"error": 0, "tool": 0, "feedback": 0})
    with_error: int = 0
    error_covered: int = 0
    error_in_note: int = 0
    with_feedback: int = 0
    feedback_covered: int = 0
    with_negative: int = 0
    negative_covered: int = 0
    title_chars: int = 0
    bullets: int = 0
    notes: int = 0
    vertical_flows: int = 0
    three_steps: int = 0
    three_steps_few_bullets: int = 0
    leaking: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0

    def figures(self) -> dict[str, float | None]:
        def share(part: int, whole: int) -> float | None:
            return round(part / whole, 3) if whole else None

        done = self.summarized
        return {
            "citation_error": share(self.accurate["error"], self.mention["error"]),
            "citation_tool": share(self.accurate["tool"], self.mention["tool"]),
            "citation_feedback": share(self.accurate["feedback"], self.mention["feedback"]),
            "citation_all": share(sum(self.accurate.values()), sum(self.mention.values())),
            "coverage_error": share(self.error_covered, self.with_error),
            "coverage_error_note": share(self.error_in_note, self.with_error),
            "coverage_feedback": share(self.feedback_covered, self.with_feedback),
            "coverage_negative": share(self.negative_covered, self.with_negative),
            "refs_resolved": share(self.items_resolved, self.items),
            "items_without_ref": share(self.items_without_ref, self.items),
            "refs_dropped_per_trace": round(self.refs_dropped / done, 3) if done else None,
            "title_chars": round(self.title_chars / done, 1) if done else None,
            "bullets": round(self.bullets / done, 2) if done else None,
            "notes": round(self.notes / done, 2) if done else None,
            "vertical_flow": share(self.vertical_flows, done),
            "few_bullets": share(self.three_steps_few_bullets, self.three_steps),
            "leaking": share(self.leaking, done),
            "tokens_per_trace": round(self.tokens / done, 1) if done else None,
            "cost_per_trace_usd": round(self.cost_usd / done, 8) if done else None,
            "failed": share(self.failed, self.traces),
            "seconds_per_trace": round(self.seconds / self.traces, 2) if self.traces else None,
        }


def corpus(hours: int) -> tuple[list[Case], dict[str, Any]]:
    """The sample: every trace of ``hours`` seeded hours that the sampling guards let through."""
    from trace_summaries.demo import DEFAULT_SEED
    from trace_summaries.demo.truth import hour_truths
    from trace_summaries.sample.model import SamplingConfig

    guards = SamplingConfig()
    cases: list[Case] = []
    excluded = 0
    for index in range(hours):
        events, truths = hour_truths(TEAM_ID, START + timedelta(hours=index), TRACES_PER_HOUR, DEFAULT_SEED)
        by_trace: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            trace_id = event["properties"].get("$ai_trace_id")
            if trace_id in truths:
                by_trace.setdefault(trace_id, []).append(event)
        for trace_id, trace_events in sorted(by_trace.items()):
            chars = sum(len(json.dumps(event["properties"])) for event in trace_events)
            if len(trace_events) > guards.max_trace_events or chars > guards.max_trace_properties_chars:
                excluded += 1
                continue
            cases.append(Case(trace_id, truths[trace_id], trace_events))
    shape = {
        "traces": len(cases),
        "excluded_oversized": excluded,
        "with_error": sum(case.truth.has_error for case in cases),
        "with_failed_tool": sum(bool(case.truth.failed_tools) for case in cases),
        "with_feedback": sum(case.truth.feedback_event is not None for case in cases),
        "with_negative_feedback": sum(case.truth.feedback_sentiment == "negative" for case in cases),
    }
    return cases, shape


def interesting_first(cases: Sequence[Case], count: int) -> list[Case]:
    """``count`` cases, those with an error, a failed tool or feedback first (a fixed, id-ordered choice)."""

    def weight(case: Case) -> tuple[int, str]:
        truth = case.truth
        score = 2 * bool(truth.failed_tools) + bool(truth.has_error) + 2 * (truth.feedback_event is not None)
        return (-score, case.trace_id)

    return sorted(cases, key=weight)[:count]


def quotes(text: str, source: str, chars: int = QUOTE_CHARS) -> bool:
    """Whether ``text`` repeats at least ``chars`` consecutive characters of ``source`` (anywhere in it:
    "The bot promised a refund and nothing happened" quotes "I'm furious. The bot promised a refund...")."""
    if not source or len(text) < chars:
        return False
    match = SequenceMatcher(None, text, source, autojunk=False).find_longest_match()
    return match.size >= chars


def _lines(refs: str) -> list[int]:
    numbers: list[int] = []
    for match in _REF.finditer(refs or ""):
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) else start
        numbers.extend(range(min(start, end), max(start, end) + 1))
    return numbers


def evaluate(
    cases: Sequence[Case], llm: Any, *, seconds_budget: float | None = None, dump: list[Any] | None = None
) -> Tally:
    """Summarizes ``cases`` as the asset does (its summarizer, rendering and checks) and counts."""
    from trace_summaries.defs.trace_summaries import TraceSummariesConfig, summarize_setup
    from trace_summaries.sample import SampledTrace, SamplingStats, TeamHourSample, TraceEvent
    from trace_summaries.text_repr import format_trace

    setup = summarize_setup(TraceSummariesConfig(mode=MODE), llm)
    traces = [
        SampledTrace(
            trace_id=case.trace_id,
            first_timestamp=min(event["timestamp"] for event in case.events),
            event_count=len(case.events),
            properties_chars=sum(len(json.dumps(event["properties"])) for event in case.events),
            events=[TraceEvent(**{key: event[key] for key in EVENT_FIELDS}) for event in case.events],
        )
        for case in cases
    ]
    sample = TeamHourSample(
        team_id=TEAM_ID,
        window_start=START,
        window_end=START + timedelta(hours=1),
        traces=traces,
        stats=SamplingStats(),
    )
    started = time.perf_counter()
    [partition] = setup.summarize({"bench": sample}).values()
    tally = Tally(traces=len(cases), seconds=time.perf_counter() - started)
    events = {event.properties.trace_id: event for event in partition.events}
    tally.failed = sum(1 for outcome in partition.outcomes if outcome.status == "failed")
    for case in cases:
        event = events.get(case.trace_id)
        if event is None:
            continue
        tally.summarized += 1
        properties = event.properties
        text = format_trace([dict(e) for e in case.events], options=setup.render)
        event_of = {number: source.event_uuid for number, source in text.line_map.items()}
        truth = case.truth
        items = [("bullet", item) for item in properties.bullets] + [
            ("note", item) for item in properties.interesting_notes
        ]
        mentioned_error = mentioned_error_in_note = mentioned_feedback = False
        feedback_text = (truth.feedback_text or "").lower()
        if dump is not None:
            dump.append(_dump_entry(case, properties, text, items))
        for section, item in items:
            tally.items += 1
            cited = {event_of.get(number) for number in _lines(item.line_refs)} - {None}
            if not item.line_refs.strip():
                tally.items_without_ref += 1
            elif cited:
                tally.items_resolved += 1
            words = _QUOTED.sub(" ", item.text)
            if truth.has_error and ERROR_WORDS.search(words):
                mentioned_error = True
                mentioned_error_in_note |= section == "note"
                tally.mention["error"] += 1
                tally.accurate["error"] += bool(cited & truth.error_events)
            if (
                truth.failed_tools
                and any(tool in words for tool in truth.failed_tools)
                and ERROR_WORDS.search(words)
            ):
                tally.mention["tool"] += 1
                tally.accurate["tool"] += bool(cited & truth.failed_tool_events)
            if truth.feedback_event and (
                FEEDBACK_WORDS.search(words) or quotes(item.text.lower(), feedback_text)
            ):
                mentioned_feedback = True
                tally.mention["feedback"] += 1
                tally.accurate["feedback"] += truth.feedback_event in cited
        if truth.has_error:
            tally.with_error += 1
            tally.error_covered += mentioned_error
            tally.error_in_note += mentioned_error_in_note
        if truth.feedback_event:
            tally.with_feedback += 1
            tally.feedback_covered += mentioned_feedback
            if truth.feedback_sentiment == "negative":
                tally.with_negative += 1
                tally.negative_covered += mentioned_feedback
        tally.refs_dropped += properties.line_refs_invalid
        tally.title_chars += len(properties.title)
        tally.bullets += len(properties.bullets)
        tally.notes += len(properties.interesting_notes)
        tally.vertical_flows += "↓" in properties.flow_diagram or properties.flow_diagram.count("\n") >= 2
        steps = sum(1 for e in case.events if e["event"] in ("$ai_generation", "$ai_span", "$ai_embedding"))
        if steps >= 3:
            tally.three_steps += 1
            tally.three_steps_few_bullets += len(properties.bullets) < 3
        tally.leaking += any("prompt" in warning.lower() for warning in properties.warnings)
        tally.tokens += properties.input_tokens + properties.output_tokens
        tally.cost_usd += properties.cost_usd or 0.0
    return tally


def _dump_entry(case: Case, properties: Any, text: Any, items: list[tuple[str, Any]]) -> dict[str, Any]:
    """One summary for ``--dump``: its items with the lines they cite, and the truth's lines, for reading."""
    truth = case.truth
    lines_of: dict[str, list[int]] = {}
    for number, source in text.line_map.items():
        lines_of.setdefault(source.event_uuid, []).append(number)

    def lines(events: Any) -> list[int]:
        return sorted(n for uuid in events for n in lines_of.get(uuid, []))

    rendered = text.text.splitlines()
    return {
        "trace_id": case.trace_id,
        "title": properties.title,
        "truth": {
            "error_lines": lines(truth.error_events),
            "failed_tool_lines": lines(truth.failed_tool_events),
            "feedback_lines": lines([truth.feedback_event] if truth.feedback_event else []),
            "feedback_sentiment": truth.feedback_sentiment,
        },
        "items": [
            {
                "section": section,
                "text": item.text,
                "line_refs": item.line_refs,
                "cited": [rendered[n - 1] for n in _lines(item.line_refs) if 0 < n <= len(rendered)],
            }
            for section, item in items
        ],
        "text": text.text,
    }


# -- summarizers -------------------------------------------------------------------------------------------


@contextmanager
def offline() -> Iterator[Any]:
    from trace_summaries.defs.resources import LLMResource

    yield LLMResource()


@contextmanager
def test_server() -> Iterator[Any]:
    from _servers import OpenAIServerProcess

    from trace_summaries.defs.resources import LLMResource

    with OpenAIServerProcess(latency_s=0.0) as server:
        yield LLMResource(base_url=server.base_url, model="gpt-4.1-nano", max_attempts=2)


@contextmanager
def local_model(key: str, prompt_version: str | None = None) -> Iterator[Any]:
    from trace_summaries.defs.resources import LLMResource
    from trace_summaries_harness.llama_server import running_llama_server

    with (
        tempfile.TemporaryDirectory() as tmp,
        running_llama_server(key, log_path=Path(tmp) / "llama.log") as server,
    ):
        # Greedy with a fixed seed (llama.cpp's default seed is random): a run of one prompt repeats its
        # answers, so rows of two prompt versions differ by the prompt alone.
        yield LLMResource(
            base_url=server.base_url,
            model=server.model,
            timeout_s=600,
            trace_deadline_s=1200,
            temperature=0.0,
            prompt_version=prompt_version,
        )


@contextmanager
def configured_endpoint() -> Iterator[Any]:
    from trace_summaries.defs.resources import LLMResource

    yield LLMResource(
        base_url=os.environ["OPENAI_BASE_URL"],
        api_key=os.environ.get("OPENAI_API_KEY"),
        model=os.environ.get("TRACE_SUMMARIES_LLM_MODEL", "gpt-4.1-nano"),
    )


LOCAL_MODELS = {"smollm2": "SmolLM2-135M", "qwen05b": "Qwen2.5-Coder-0.5B"}


def summarizers(
    quick: bool,
    local_models: Sequence[str] = tuple(LOCAL_MODELS),
    prompt_versions: Sequence[str] = (),
) -> list[tuple[str, Any, bool]]:
    """(name, context manager factory, on the real-model subset)."""
    rows: list[tuple[str, Any, bool]] = [
        ("offline (heuristic)", offline, False),
        ("test server", test_server, False),
    ]
    if not quick:
        for key in local_models:
            for version in prompt_versions or [None]:
                name = f"{LOCAL_MODELS[key]} (llama.cpp)" + (f", prompt {version}" if version else "")
                rows.append((name, lambda key=key, version=version: local_model(key, version), True))
    if os.environ.get("OPENAI_BASE_URL"):
        rows.append(
            (f"endpoint {os.environ.get('TRACE_SUMMARIES_LLM_MODEL', '')}".strip(), configured_endpoint, True)
        )
    return rows


def measure(
    quick: bool = False,
    local_models: Sequence[str] = tuple(LOCAL_MODELS),
    prompt_versions: Sequence[str] = (),
    dump_dir: Path | None = None,
) -> tuple[dict[str, dict[str, float | None]], dict[str, Any]]:
    cases, shape = corpus(QUICK_HOURS if quick else FULL_HOURS)
    subset = interesting_first(cases, REAL_MODEL_TRACES[quick] or len(cases))
    results: dict[str, dict[str, float | None]] = {}
    for name, factory, on_subset in summarizers(quick, local_models, prompt_versions):
        chosen = subset if on_subset else cases
        dump: list[Any] | None = [] if dump_dir is not None else None
        try:
            with factory() as llm:
                figures = evaluate(chosen, llm, dump=dump).figures()
        except Exception as exc:  # e.g. the larger model not installed: the row says why
            print(f"{name}: not measured ({type(exc).__name__}: {exc})", file=sys.stderr)
            continue
        figures["traces"] = len(chosen)
        results[name] = figures
        if dump_dir is not None:
            dump_dir.mkdir(parents=True, exist_ok=True)
            slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
            (dump_dir / f"{slug}.json").write_text(json.dumps(dump, indent=1, ensure_ascii=False))
        print(markdown({name: figures}).splitlines()[-1], file=sys.stderr, flush=True)  # as each row is done
    return results, shape


COLUMNS = (
    ("citation_error", "cite: error"),
    ("citation_tool", "cite: failed tool"),
    ("citation_feedback", "cite: feedback"),
    ("coverage_error", "covers error"),
    ("coverage_error_note", "error in a note"),
    ("coverage_feedback", "covers feedback"),
    ("coverage_negative", "covers negative feedback"),
    ("refs_resolved", "refs resolve"),
    ("items_without_ref", "items without ref"),
    ("refs_dropped_per_trace", "refs dropped / trace"),
    ("title_chars", "title chars"),
    ("bullets", "bullets"),
    ("notes", "notes"),
    ("vertical_flow", "vertical flow"),
    ("few_bullets", "< 3 bullets at >= 3 steps"),
    ("leaking", "leaks prompt examples"),
    ("tokens_per_trace", "tokens / trace"),
    ("cost_per_trace_usd", "cost / trace (USD)"),
    ("failed", "failed"),
    ("traces", "traces"),
)


def markdown(results: dict[str, dict[str, float | None]]) -> str:
    lines = ["| summarizer | " + " | ".join(label for _, label in COLUMNS) + " |"]
    lines.append("|---" * (len(COLUMNS) + 1) + "|")
    for name, figures in results.items():
        cells = ["-" if figures.get(key) is None else f"{figures[key]:g}" for key, _ in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(
    quick: bool = False,
    local_models: Sequence[str] = tuple(LOCAL_MODELS),
    prompt_versions: Sequence[str] = (),
    dump_dir: Path | None = None,
) -> list[Row]:
    results, shape = measure(quick, local_models, prompt_versions, dump_dir)
    note = (
        f"{shape['traces']} seeded traces ({shape['excluded_oversized']} oversized excluded): "
        f"{shape['with_error']} with an error, {shape['with_failed_tool']} with a failed tool, "
        f"{shape['with_feedback']} with feedback ({shape['with_negative_feedback']} negative)"
    )
    rows: list[Row] = []
    heuristic = results.get("offline (heuristic)", {})
    for key, label in (("citation_all", "citation accuracy"), ("coverage_error", "error coverage")):
        value = heuristic.get(key)
        rows.append(
            row(
                f"offline summarizer: {label}",
                value,
                "share",
                target=">= 0.95",
                met=value is not None and value >= 0.95,
                note=note if not rows else "",
            )
        )
    for name, figures in results.items():
        rows.append(
            row(
                f"{name}: citation accuracy / error coverage",
                figures.get("citation_all"),
                "share",
                note=(
                    f"{figures['traces']:g} traces; error coverage {figures.get('coverage_error')}, "
                    f"feedback coverage {figures.get('coverage_feedback')}, "
                    f"refs resolve {figures.get('refs_resolved')}, bullets {figures.get('bullets')}, "
                    f"tokens/trace {figures.get('tokens_per_trace')}"
                ),
            )
        )
    print(markdown(results))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-local-models", action="store_true")
    parser.add_argument("--models", default=",".join(LOCAL_MODELS), help="local models: smollm2,qwen05b")
    parser.add_argument("--prompt-versions", default="", help="e.g. v2,v3: a row per version")
    parser.add_argument("--dump", type=Path, default=None, help="a directory for each row's summaries")
    args = parser.parse_args()
    models = [] if args.no_local_models else [m for m in args.models.split(",") if m]
    unknown = set(models) - set(LOCAL_MODELS)
    if unknown:
        parser.error(f"unknown local models {sorted(unknown)}; known: {', '.join(LOCAL_MODELS)}")
    versions = [v for v in args.prompt_versions.split(",") if v]
    print_rows(run(args.quick, models, versions, args.dump))


if __name__ == "__main__":
    main()
