"""2. LLM stage efficiency: summaries per second versus the ideal ``concurrency / latency``.

The OpenAI-compatible test server answers every chat completion after a fixed latency (300 ms), so with
``c`` calls in flight no client can do better than ``c / 0.3`` summaries per second. We run
``trace_summaries.summarize.summarize_many`` with ``LLMSummarizer`` (the real OpenAI SDK client, structured
output parsing, line-reference checks) and ``batch_size=c`` over ``WAVES * c`` rendered seeded traces.

Figures per level:

* steady state (the target): completions after the first wave divided by the time they took, i.e. the
  rate once every slot is busy. The first wave pays for the client and ``c`` new connections once per
  partition; it is reported separately, in
* end to end: all traces / wall time of ``summarize_many``, start-up included;
* the most calls the *server* counted in flight at once (must not exceed ``c``).

Ranged runs: the partitions of a run summarized together under one limit of ``c = 20`` calls
(``summarize_partitions_sync``, what the asset runs), against one partition after another at ``c`` (what it
ran before), for many small partitions and for a few large ones; wall time, and the ideal
``ceil(traces / c) * 0.3 s``.

Each run gets its own ``asyncio.run`` (a fresh HTTP connection pool, as each partition of the pipeline gets),
after one untimed warm-up; the median of ``REPEATS`` runs is reported. The server runs in its own process
(``_servers.py``), so its CPU is not charged to the client.

What else shares the machine decides much of the c=50 figure: at ~166 calls/s the client needs about a third
of a core, in bursts, and every millisecond it waits for a CPU delays the calls queued behind it. The
steady-state notes therefore give the 1-minute load average, the client's run-queue wait per summary (Linux
schedstat: time the event loop thread was ready to run but had no CPU) and the time the client spent in the
garbage collector during the run.

The ``variant`` rows are not the shipped code: they run the shipped client on the SDK's aiohttp transport
(``openai.DefaultAioHttpClient``, the ``openai[aiohttp]`` extra, not a project dependency) when aiohttp
happens to be installed, to keep the cost of that alternative measured (see ``summarize/llm.py`` for why it
is not shipped).

Run standalone: ``python bench/bench_llm_stage.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import math
import os
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
from _common import Row, print_rows, row, seeded_samples, seeded_traces, timed
from _servers import OpenAIServerProcess

from trace_summaries.summarize import LLMSettings, LLMSummarizer
from trace_summaries.summarize import llm as llm_module
from trace_summaries.summarize.pacing import CallPacer
from trace_summaries.summarize.partition import (
    PIPELINE_RENDERING,
    summarize_partitions_sync,
)
from trace_summaries.text_repr import format_trace
from trace_summaries_harness.one_partition import summarize_many, summarize_partition_sync

LATENCY_S = 0.3
LEVELS = (5, 20, 50)
WAVES = 6
REPEATS = 3
TARGET_EFFICIENCY = 0.9
# Ranged runs: (partitions, traces each). Small teams (most of them, most hours), and a few busy ones.
RANGE_SHAPES = ((20, 5), (4, 30))
RANGE_CONCURRENCY = 20

_SCHEDSTAT = Path("/proc/thread-self/schedstat")


class AioHttpSummarizer(LLMSummarizer):
    """Variant, not shipped: the shipped client on the SDK's aiohttp transport (``openai[aiohttp]``)."""

    def _client(self) -> openai.AsyncOpenAI:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = openai.AsyncOpenAI(
                api_key=self.settings.api_key or llm_module.NO_API_KEY,
                base_url=self.settings.base_url or None,
                timeout=self.settings.timeout_s,
                max_retries=0,
                http_client=openai.DefaultAioHttpClient(verify=llm_module._ssl_context()),
            )
            self._clients[loop] = client
        return client


def _aiohttp_available() -> bool:
    return importlib.util.find_spec("aiohttp") is not None


@contextlib.contextmanager
def _gc_time() -> Iterator[list[float]]:
    """Seconds spent in the garbage collector while the block runs: ``[total, full collections only]``.

    A full (generation 2) collection walks every object of the process and stops the event loop for tens of
    milliseconds, with every call in flight waiting on it; it is one source of run-to-run spread.
    """
    spent = [0.0, 0.0]
    started = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        elapsed = time.perf_counter() - started[0]
        spent[0] += elapsed
        if info["generation"] == 2:
            spent[1] += elapsed

    gc.callbacks.append(callback)
    try:
        yield spent
    finally:
        gc.callbacks.remove(callback)


def _run_queue_wait_s() -> float | None:
    """Time this thread has spent runnable but waiting for a CPU (None where schedstat is missing)."""
    try:
        return int(_SCHEDSTAT.read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


@dataclass
class Timeline:
    """A Summarizer wrapper that records when each summary completes."""

    inner: LLMSummarizer
    started: float = field(default_factory=time.perf_counter)
    ends: list[float] = field(default_factory=list)

    @property
    def provider(self) -> Any:
        return self.inner.provider

    @property
    def model(self) -> str:
        return self.inner.model

    async def summarize(self, trace_text: Any, events: Sequence[Any], mode: Any) -> Any:
        result = await self.inner.summarize(trace_text, events, mode)
        self.ends.append(time.perf_counter() - self.started)
        return result


@dataclass
class Measurement:
    wall_s: float
    steady_rate: float
    overall_rate: float
    first_wave_s: float
    # Client (event loop thread) time waiting for a CPU per summary, in ms; None without schedstat.
    run_queue_wait_ms: float | None = None
    load_1m: float = 0.0
    gc_ms: float = 0.0
    full_gc_ms: float = 0.0


def rendered_items(count: int) -> list[tuple[str, Any, list[dict[str, Any]]]]:
    return [
        (f"trace-{index}", format_trace(events, nest=True, dedupe=True), events)
        for index, events in enumerate(seeded_traces(count))
    ]


async def _measure(
    cls: type[LLMSummarizer], settings: LLMSettings, items: list[Any], concurrency: int
) -> Measurement:
    inner = cls(settings)
    timeline = Timeline(inner)
    waited = _run_queue_wait_s()
    try:
        with _gc_time() as gc_s:
            timeline.started = time.perf_counter()
            results = await summarize_many(  # type: ignore[arg-type]
                timeline, items, "detailed", batch_size=concurrency, pacer=CallPacer.fixed(concurrency)
            )
            wall = time.perf_counter() - timeline.started
    finally:
        await inner.aclose()
    waited_after = _run_queue_wait_s()
    failed = [r.error for r in results.values() if not r.generated]
    if failed:
        raise AssertionError(f"{len(failed)} summaries failed: {failed[:2]}")
    ends = sorted(timeline.ends)
    first_wave_end = ends[concurrency - 1]
    steady = (len(ends) - concurrency) / (ends[-1] - first_wave_end)
    wait_ms = None
    if waited is not None and waited_after is not None:
        wait_ms = (waited_after - waited) * 1000 / len(items)
    return Measurement(
        wall,
        steady,
        len(items) / wall,
        first_wave_end,
        wait_ms,
        os.getloadavg()[0],
        gc_s[0] * 1000,
        gc_s[1] * 1000,
    )


def _level(
    server: OpenAIServerProcess,
    cls: type[LLMSummarizer],
    items: list[Any],
    concurrency: int,
    repeats: int,
) -> tuple[list[Measurement], int]:
    settings = LLMSettings(api_key="k", base_url=server.base_url, model="gpt-4.1-nano")
    batch = items[: WAVES * concurrency]
    runs: list[Measurement] = []
    max_in_flight = 0
    for _ in range(repeats):
        server.reset_stats()
        runs.append(asyncio.run(_measure(cls, settings, batch, concurrency)))
        stats = server.stats()
        if stats["chat_requests"] != len(batch) or stats["errors"]:
            raise AssertionError(f"c={concurrency}: server saw {stats}")
        max_in_flight = max(max_in_flight, stats["max_in_flight"])
    return runs, max_in_flight


def _median_run(runs: list[Measurement]) -> Measurement:
    return sorted(runs, key=lambda m: m.steady_rate)[len(runs) // 2]


def _contention(m: Measurement) -> str:
    """What the client waited on besides the server: other processes (load, run queue) and its own GC."""
    parts = [f"load 1m {m.load_1m:.2f}"]
    if m.run_queue_wait_ms is not None:
        parts.append(f"client run-queue wait {m.run_queue_wait_ms:.2f} ms/summary")
    parts.append(f"GC {m.gc_ms:.0f} ms (full {m.full_gc_ms:.0f} ms)")
    return "; ".join(parts)


def run(quick: bool = False) -> list[Row]:
    levels = (5, 20) if quick else LEVELS
    repeats = 1 if quick else REPEATS
    items = rendered_items(WAVES * max(levels))
    rows: list[Row] = []
    variants: list[tuple[str, type[LLMSummarizer]]] = []
    if _aiohttp_available():
        variants.append(("SDK aiohttp transport", AioHttpSummarizer))
    with OpenAIServerProcess(latency_s=LATENCY_S) as server:
        warm = LLMSettings(api_key="k", base_url=server.base_url)
        for cls in (LLMSummarizer, *(cls for _, cls in variants)):
            asyncio.run(_measure(cls, warm, items[:10], 5))  # imports, first connections
        for concurrency in levels:
            ideal = concurrency / LATENCY_S
            runs, max_in_flight = _level(server, LLMSummarizer, items, concurrency, repeats)
            m = _median_run(runs)
            spread = [round(r.steady_rate / ideal, 3) for r in runs]
            rows.append(
                row(
                    f"c={concurrency}: steady-state summaries/s vs c/latency",
                    m.steady_rate,
                    "summaries/s",
                    baseline=ideal,
                    target=f"ratio >= {TARGET_EFFICIENCY:.2f}",
                    met=m.steady_rate / ideal >= TARGET_EFFICIENCY,
                    note=f"{WAVES * concurrency} traces; runs {spread}; {_contention(m)}",
                )
            )
            rows.append(
                row(
                    f"c={concurrency}: end-to-end summaries/s (incl. start-up)",
                    m.overall_rate,
                    "summaries/s",
                    baseline=ideal,
                    note=(
                        f"wall {m.wall_s:.2f} s vs ideal {WAVES * LATENCY_S:.2f} s; "
                        f"first wave done at {m.first_wave_s:.3f} s"
                    ),
                )
            )
            rows.append(
                row(
                    f"c={concurrency}: max calls in flight (server count)",
                    max_in_flight,
                    "calls",
                    baseline=concurrency,
                    target=f"<= {concurrency}",
                    met=max_in_flight <= concurrency,
                )
            )
        rows += _ranged_rows(server, quick)
        rows.append(_client_cpu_row(server, items, variants))
        if not variants:
            rows.append(row("variant SDK aiohttp transport: skipped", None, "", note="aiohttp not installed"))
        for title, cls in variants:
            for concurrency in levels:
                ideal = concurrency / LATENCY_S
                runs, _ = _level(server, cls, items, concurrency, repeats)
                m = _median_run(runs)
                rows.append(
                    row(
                        f"variant {title}, c={concurrency}: steady-state summaries/s",
                        m.steady_rate,
                        "summaries/s",
                        baseline=ideal,
                        note=f"not the shipped code; runs {[round(r.steady_rate / ideal, 3) for r in runs]}; "
                        + _contention(m),
                    )
                )
    return rows


def _ranged_rows(server: OpenAIServerProcess, quick: bool) -> list[Row]:
    """A ranged run's partitions under one limit of calls in flight, against one partition after another.

    The baseline is what the asset did before: each partition in its own event loop at ``c`` calls, so a
    partition of 5 traces leaves 15 of 20 slots idle, and every partition ends on its slowest call.
    """
    settings = LLMSettings(api_key="k", base_url=server.base_url, model="gpt-4.1-nano")
    options: dict[str, Any] = {
        "mode": "detailed",
        "render": PIPELINE_RENDERING,
        "batch_size": RANGE_CONCURRENCY,
    }
    rows: list[Row] = []
    for partitions, traces in RANGE_SHAPES[:1] if quick else RANGE_SHAPES:
        samples = seeded_samples(partitions, traces)
        server.reset_stats()
        sequential_s, _ = timed(
            lambda samples=samples: [
                summarize_partition_sync(
                    sample, LLMSummarizer(settings), pacer=CallPacer.fixed(RANGE_CONCURRENCY), **options
                )
                for sample in samples.values()
            ]
        )
        server.reset_stats()
        shared_s, results = timed(
            lambda samples=samples: summarize_partitions_sync(
                samples, LLMSummarizer(settings), pacer=CallPacer.fixed(RANGE_CONCURRENCY), **options
            )
        )
        stats = server.stats()
        generated = sum(o.status == "generated" for r in results.values() for o in r.outcomes)
        if generated != partitions * traces or stats["errors"]:
            raise AssertionError(f"ranged run: {generated} generated, server saw {stats}")
        ideal = math.ceil(partitions * traces / RANGE_CONCURRENCY) * LATENCY_S
        rows.append(
            row(
                f"ranged run, {partitions} partitions x {traces} traces, c={RANGE_CONCURRENCY}: wall time",
                shared_s,
                "s",
                baseline=sequential_s,
                target="reported",
                note=(
                    f"baseline: one partition after another; ideal {ideal:.1f} s "
                    f"({shared_s / ideal:.2f}x ideal); server max in flight {stats['max_in_flight']}"
                ),
            )
        )
    return rows


def _client_cpu_row(
    server: OpenAIServerProcess, items: list[Any], variants: list[tuple[str, type[LLMSummarizer]]]
) -> Row:
    """Client CPU per summary (process time of the bench process), shipped client, c=20."""
    settings = LLMSettings(api_key="k", base_url=server.base_url)
    per_call: dict[str, float] = {}
    for title, cls in [("shipped", LLMSummarizer), *variants]:
        samples = []
        for _ in range(3):
            started = time.process_time()
            asyncio.run(_measure(cls, settings, items[:100], 20))
            samples.append((time.process_time() - started) / 100 * 1000)
        per_call[title] = statistics.median(samples)
    others = "".join(f"; {title} {value:.2f} ms" for title, value in per_call.items() if title != "shipped")
    return row(
        "client CPU per summary (shipped client)",
        per_call["shipped"],
        "ms",
        note="process time of the bench process / summaries, c=20, median of 3" + others,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print_rows(run(quick=parser.parse_args().quick))
