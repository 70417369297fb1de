"""Benchmark of the trace text rendering (``trace_summaries.text_repr``).

Measures rendering throughput in MB of event properties per second on generated traces (agent loops with
tools, spans and growing conversations in the OpenAI, Anthropic and Gemini shapes, RAG traces) and on one
~2 MB trace, which is also rendered with ``max_length=500_000`` (sampled down to at most 500 KB). Each
figure is compared with a baseline measured in the same run: ``json.dumps``/``json.loads`` of the same
properties (the floor any renderer pays), or the original's flat layout for our nest+dedupe options.

Run: ``python bench/bench_text_repr.py`` (standard library only). ``run()`` returns the rows for an
aggregating ``bench/run``.
"""

from __future__ import annotations

import json
import random
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

try:
    from trace_summaries.text_repr import format_trace
except ModuleNotFoundError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from trace_summaries.text_repr import format_trace

Event = dict[str, Any]
SEED = 20261120
REPEATS = 3
GENERATED_TRACES = 120
BIG_TRACE_BYTES = 2_000_000
SAMPLED_MAX_LENGTH = 500_000
START = datetime(2026, 11, 20, 9, tzinfo=UTC)

WORDS = [
    "order",
    "customer",
    "invoice",
    "refund",
    "shipping",
    "warehouse",
    "delay",
    "policy",
    "account",
    "payment",
    "card",
    "address",
    "report",
    "quarter",
    "revenue",
    "table",
    "query",
    "latency",
    "error",
    "retry",
    "timeout",
    "region",
    "product",
    "stock",
    "price",
    "discount",
    "user",
]


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def paragraph(rng: random.Random, sentences: int) -> str:
    return " ".join(sentence(rng, rng.randint(6, 16)) for _ in range(sentences))


def tool_definitions(rng: random.Random, provider: str, count: int) -> list[dict[str, Any]]:
    tools = []
    for index in range(count):
        name = f"{rng.choice(WORDS)}_{rng.choice(WORDS)}_{index}"
        schema = {
            "type": "object",
            "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
            "required": ["query"],
        }
        description = paragraph(rng, 2)
        if provider == "openai":
            tools.append(
                {
                    "type": "function",
                    "function": {"name": name, "description": description, "parameters": schema},
                }
            )
        elif provider == "anthropic":
            tools.append({"name": name, "description": description, "input_schema": schema})
        else:
            tools.append({"name": name, "description": description, "parameters": schema})
    return [{"functionDeclarations": tools}] if provider == "gemini" else tools


def tool_call_message(provider: str, call_id: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
    if provider == "openai":
        call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
        return {"role": "assistant", "content": None, "tool_calls": [call]}
    if provider == "anthropic":
        return {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": call_id, "name": name, "input": args}],
        }
    return {"role": "model", "parts": [{"functionCall": {"name": name, "args": args}}]}


def tool_result_message(provider: str, call_id: str, name: str, result: Any) -> dict[str, Any]:
    if provider == "openai":
        return {"role": "tool", "tool_call_id": call_id, "content": json.dumps(result)}
    if provider == "anthropic":
        block = {"type": "tool_result", "tool_use_id": call_id, "content": json.dumps(result)}
        return {"role": "user", "content": [block]}
    return {"role": "function", "parts": [{"functionResponse": {"name": name, "response": result}}]}


def user_message(provider: str, text: str) -> dict[str, Any]:
    if provider == "gemini":
        return {"role": "user", "parts": [{"text": text}]}
    return {"role": "user", "content": text}


class TraceBuilder:
    def __init__(self, rng: random.Random, trace_id: str) -> None:
        self.rng = rng
        self.trace_id = trace_id
        self.events: list[Event] = []
        self.clock = 0.0

    def emit(self, event: str, properties: dict[str, Any]) -> Event:
        self.clock += self.rng.uniform(0.05, 2.0)
        row = {
            "uuid": f"{self.trace_id}-{len(self.events):04d}",
            "event": event,
            "timestamp": START + timedelta(seconds=self.clock),
            "properties": {"$ai_trace_id": self.trace_id, **properties},
        }
        self.events.append(row)
        return row


def agent_trace(rng: random.Random, trace_id: str, steps: int, result_words: int = 60) -> list[Event]:
    """An agent loop: each generation resends the system prompt, the tools and the conversation so far."""
    provider = rng.choice(["openai", "anthropic", "gemini"])
    model = {"openai": "gpt-4.1-mini", "anthropic": "claude-sonnet-4", "gemini": "gemini-2.5-flash"}[provider]
    b = TraceBuilder(rng, trace_id)
    tools = tool_definitions(rng, provider, rng.randint(3, 8))
    system = {"role": "system", "content": paragraph(rng, 12)}
    conversation: list[dict[str, Any]] = [user_message(provider, paragraph(rng, 2))]
    if provider != "gemini":
        conversation.insert(0, system)
    b.emit(
        "$ai_span",
        {
            "$ai_span_id": f"{trace_id}-root",
            "$ai_parent_id": trace_id,
            "$ai_span_name": "agent",
            "$ai_input_state": {"question": conversation[-1]},
            "$ai_latency": 12.5,
        },
    )
    for step in range(steps):
        final = step == steps - 1
        name = f"tool_{step % 3}"
        call_id = f"call_{step}"
        args = {"query": sentence(rng, 5), "limit": rng.randint(1, 50)}
        if final:
            output = {"role": "assistant", "content": paragraph(rng, 3)}
        else:
            output = tool_call_message(provider, call_id, name, args)
        b.emit(
            "$ai_generation",
            {
                "$ai_parent_id": f"{trace_id}-root",
                "$ai_span_name": "llm",
                "$ai_model": model,
                "$ai_provider": provider,
                "$ai_latency": rng.uniform(0.3, 4.0),
                "$ai_total_cost_usd": rng.uniform(0, 0.02),
                "$ai_input_tokens": rng.randint(500, 9000),
                "$ai_output_tokens": rng.randint(10, 400),
                "$ai_tools": tools,
                "$ai_input": list(conversation),
                "$ai_output_choices": [{"message": output}],
                **({"$ai_system_instruction": system["content"]} if provider == "gemini" else {}),
            },
        )
        conversation.append(output)
        if not final:
            result = {"rows": [{"id": i, "text": sentence(rng, result_words // 10)} for i in range(10)]}
            b.emit(
                "$ai_span",
                {
                    "$ai_parent_id": f"{trace_id}-root",
                    "$ai_span_name": f"tool:{name}",
                    "$ai_input_state": args,
                    "$ai_output_state": result,
                    "$ai_latency": 0.4,
                },
            )
            conversation.append(tool_result_message(provider, call_id, name, result))
    if rng.random() < 0.3:
        b.emit("$ai_metric", {"$ai_metric_name": "helpfulness", "$ai_metric_value": rng.random()})
    if rng.random() < 0.3:
        b.emit("$ai_feedback", {"$ai_feedback_text": paragraph(rng, 1)})
    b.emit(
        "$ai_trace",
        {
            "$ai_span_name": "agent run",
            "$ai_input_state": conversation[1 if provider != "gemini" else 0],
            "$ai_output_state": conversation[-1],
        },
    )
    return b.events


def rag_trace(rng: random.Random, trace_id: str) -> list[Event]:
    b = TraceBuilder(rng, trace_id)
    question = paragraph(rng, 1)
    documents = [paragraph(rng, 3) for _ in range(5)]
    b.emit(
        "$ai_embedding", {"$ai_model": "text-embedding-3-small", "$ai_input": question, "$ai_latency": 0.1}
    )
    b.emit(
        "$ai_span",
        {
            "$ai_span_name": "retrieve",
            "$ai_input_state": {"query": question, "top_k": 5},
            "$ai_output_state": {"documents": documents},
            "$ai_latency": 0.3,
        },
    )
    context = "\n".join(f"[{i + 1}] {doc}" for i, doc in enumerate(documents))
    b.emit(
        "$ai_generation",
        {
            "$ai_model": "gpt-4o-mini",
            "$ai_latency": 1.2,
            "$ai_total_cost_usd": 0.0004,
            "$ai_input": [
                {"role": "system", "content": f"Answer from the context.\n{context}"},
                {"role": "user", "content": question},
            ],
            "$ai_output_choices": [{"message": {"role": "assistant", "content": paragraph(rng, 2)}}],
        },
    )
    return b.events


def generated_traces() -> list[list[Event]]:
    rng = random.Random(SEED)
    traces = []
    for index in range(GENERATED_TRACES):
        trace_id = f"trace-{index:04d}"
        if rng.random() < 0.7:
            traces.append(agent_trace(rng, trace_id, steps=rng.randint(2, 10)))
        else:
            traces.append(rag_trace(rng, trace_id))
    return traces


def big_trace() -> list[Event]:
    """One agent trace of about 2 MB of properties (long tool results, resent every step)."""
    rng = random.Random(SEED + 1)
    steps = 4
    while True:
        events = agent_trace(rng, "trace-big", steps=steps, result_words=400)
        if properties_bytes([events]) >= BIG_TRACE_BYTES:
            return events
        steps += 2


def properties_bytes(traces: list[list[Event]]) -> int:
    return sum(len(json.dumps(event["properties"])) for events in traces for event in events)


def approximate_tokens(text: str) -> int:
    """Words, punctuation marks and whitespace runs: a stand-in for BPE tokens when comparing renderings."""
    return len(re.findall(r"\w+|[^\w\s]|\s+", text))


def best_seconds(work: Callable[[], Any]) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def row(name: str, value: float, unit: str, baseline: float, note: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "value": round(value, 3),
        "unit": unit,
        "baseline": round(baseline, 3),
        "ratio": round(value / baseline, 3) if baseline else float("nan"),
        "note": note,
    }


def run() -> list[dict[str, Any]]:
    """All rows: name, value, unit, baseline (measured in the same run), ratio = value / baseline."""
    rows: list[dict[str, Any]] = []
    traces = generated_traces()
    megabytes = properties_bytes(traces) / 1e6

    def dump_all() -> None:
        for events in traces:
            for event in events:
                json.dumps(event["properties"])

    def render_all(**options: Any) -> Callable[[], None]:
        return lambda: [format_trace(events, **options) for events in traces]

    floor = megabytes / best_seconds(dump_all)
    flat = megabytes / best_seconds(render_all())
    improved = megabytes / best_seconds(render_all(nest=True, dedupe=True))
    rows.append(row("generated: render flat (original options)", flat, "MB/s", floor, "baseline: json.dumps"))
    rows.append(row("generated: render nest+dedupe", improved, "MB/s", flat, "baseline: flat render"))

    raw = [
        [{**event, "properties": json.dumps(event["properties"])} for event in events] for events in traces
    ]

    def load_all() -> None:
        for events in raw:
            for event in events:
                json.loads(event["properties"])

    raw_floor = megabytes / best_seconds(load_all)
    raw_flat = megabytes / best_seconds(lambda: [format_trace(events) for events in raw])
    rows.append(
        row(
            "generated, raw JSON properties: render flat", raw_flat, "MB/s", raw_floor, "baseline: json.loads"
        )
    )

    agents = [events for events in traces if any(e["properties"].get("$ai_tools") for e in events)]
    flat_texts = [format_trace(events).text for events in agents]
    improved_texts = [format_trace(events, nest=True, dedupe=True).text for events in agents]
    rows.append(
        row(
            "agent traces: tokens (approx.) nest+dedupe",
            sum(map(approximate_tokens, improved_texts)),
            "tokens",
            sum(map(approximate_tokens, flat_texts)),
            "baseline: flat; lower is better",
        )
    )
    rows.append(
        row(
            "agent traces: characters nest+dedupe",
            sum(map(len, improved_texts)),
            "chars",
            sum(map(len, flat_texts)),
            "baseline: flat; lower is better",
        )
    )

    big = big_trace()
    big_megabytes = properties_bytes([big]) / 1e6
    big_floor = big_megabytes / best_seconds(lambda: [json.dumps(event["properties"]) for event in big])
    unlimited = format_trace(big, max_length=None)
    rows.append(
        row(
            f"{big_megabytes:.1f} MB trace: render flat, no limit",
            big_megabytes / best_seconds(lambda: format_trace(big, max_length=None)),
            "MB/s",
            big_floor,
            "baseline: json.dumps",
        )
    )
    sampled = format_trace(big, max_length=SAMPLED_MAX_LENGTH)
    assert sampled.sampled and len(sampled.text) <= SAMPLED_MAX_LENGTH, len(sampled.text)
    sampled_seconds = best_seconds(lambda: format_trace(big, max_length=SAMPLED_MAX_LENGTH))
    rows.append(
        row(
            f"{big_megabytes:.1f} MB trace: render + sample to 500 KB",
            big_megabytes / sampled_seconds,
            "MB/s",
            big_floor,
            "baseline: json.dumps",
        )
    )
    rows.append(
        row(
            f"{big_megabytes:.1f} MB trace: sampled text size",
            len(sampled.text),
            "chars",
            len(unlimited.text),
            f"baseline: unsampled; {len(sampled.line_map)} of {sampled.total_lines} lines",
        )
    )
    improved_big = format_trace(big, nest=True, dedupe=True, max_length=None)
    rows.append(
        row(
            f"{big_megabytes:.1f} MB trace: text size nest+dedupe",
            len(improved_big.text),
            "chars",
            len(unlimited.text),
            "baseline: flat; lower is better",
        )
    )
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    headers = ("name", "value", "unit", "baseline", "ratio", "note")
    table = [[str(r[h]) for h in headers] for r in rows]
    widths = [max(len(h), *(len(cells[i]) for cells in table)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for cells in table:
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)))


if __name__ == "__main__":
    started = time.perf_counter()
    print_table(run())
    print(f"\n({time.perf_counter() - started:.1f} s)")
