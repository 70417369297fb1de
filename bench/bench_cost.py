"""Cost per 1,000 traces on OpenAI (gpt-4.1-nano): standard tier, flex tier, and with the prompt cache.

Traces: the seeder's (``_common.seeded_traces``), rendered as the pipeline renders them. Input tokens are
counted with the model's own tokenizer (``bench_tokens.encoding``: tiktoken's o200k_base, offline), with
OpenAI's chat framing. Output tokens: the offline summarizer's answers for the same traces, as JSON, counted
the same way (a stand-in: an LLM's answers are of the same shape and bounded by the same schema).

Prices: ``summarize/pricing.py`` (list prices; flex at ``FLEX_PRICE_FACTOR``). The prompt cache: OpenAI caches
a prompt's longest common prefix once it is at least 1,024 tokens, in steps of 128; our prefix is the system
prompt and the user message's fixed sentence, which come before the trace. Baseline: the standard tier
without cache, in the same run.

Run standalone: ``python bench/bench_cost.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from _common import Row, print_rows, row, seeded_traces
from bench_tokens import MODEL, PIPELINE, TOKENS_PER_MESSAGE, TOKENS_REPLY_PRIMING, encoding

from trace_summaries.summarize import HeuristicSummarizer, chat_messages
from trace_summaries.summarize.pricing import estimate_cost_usd
from trace_summaries.summarize.steps import trace_name
from trace_summaries.text_repr import format_trace

CACHE_MIN_TOKENS = 1024
CACHE_STEP_TOKENS = 128
MARKER = "\x00TRACE\x00"


def cached_prefix_tokens(prefix_tokens: int) -> int:
    """What OpenAI serves from its cache for a prompt whose first ``prefix_tokens`` repeat across calls."""
    if prefix_tokens < CACHE_MIN_TOKENS:
        return 0
    return CACHE_MIN_TOKENS + (prefix_tokens - CACHE_MIN_TOKENS) // CACHE_STEP_TOKENS * CACHE_STEP_TOKENS


def run(quick: bool = False) -> list[Row]:
    encoder = encoding()
    count = 40 if quick else 200
    # The static prefix: everything before the trace text (system prompt, then the user message's start).
    system, user = chat_messages(MARKER, MARKER, "detailed")
    static = user["content"].split(MARKER, 1)[0]
    prefix = encoder.count(system["content"]) + TOKENS_PER_MESSAGE + encoder.count(static)
    cached = cached_prefix_tokens(prefix)
    summarizer = HeuristicSummarizer()
    inputs: list[int] = []
    outputs: list[int] = []
    for events in seeded_traces(count):
        text = format_trace(events, options=PIPELINE)
        messages = chat_messages(text.text, trace_name(events), "detailed")
        inputs.append(
            sum(encoder.count(m["content"]) + TOKENS_PER_MESSAGE for m in messages) + TOKENS_REPLY_PRIMING
        )
        result = asyncio.run(summarizer.summarize(text, events, "detailed"))
        outputs.append(encoder.count(result.summary.model_dump_json()) if result.summary else 0)

    def per_thousand(**options: object) -> float:
        total = sum(
            estimate_cost_usd(MODEL, i, o, **options) or 0.0  # type: ignore[arg-type]
            for i, o in zip(inputs, outputs, strict=True)
        )
        return total / len(inputs) * 1000

    standard = per_thousand()
    note = f"{encoder.label}; {count} seeded traces; output: offline summarizer's answers as JSON"
    return [
        row("input tokens per trace (mean)", sum(inputs) / len(inputs), "tokens", digits=1, note=note),
        row("output tokens per trace (mean)", sum(outputs) / len(outputs), "tokens", digits=1),
        row(
            "static prompt prefix (before the trace)",
            prefix,
            "tokens",
            note=f"cached by OpenAI from {CACHE_MIN_TOKENS} tokens: {cached} of it would be",
        ),
        row(f"{MODEL}: standard tier, per 1,000 traces", standard, "USD", digits=4),
        row(
            f"{MODEL}: flex tier, per 1,000 traces",
            per_thousand(flex=True),
            "USD",
            baseline=standard,
            digits=4,
            target="reported",
        ),
        row(
            f"{MODEL}: standard with the prompt cache, per 1,000 traces",
            per_thousand(cached_input_tokens=cached),
            "USD",
            baseline=standard,
            digits=4,
            note="no saving while the static prefix is under the cache's minimum" if not cached else "",
        ),
        row(
            f"{MODEL}: flex with the prompt cache, per 1,000 traces",
            per_thousand(flex=True, cached_input_tokens=cached),
            "USD",
            baseline=standard,
            digits=4,
        ),
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print_rows(run(quick=parser.parse_args().quick))
    sys.exit(0)
