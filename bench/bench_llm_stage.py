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

Each run gets its own ``asyncio.run`` (a fresh HTTP connection pool, as each partition of the pipeline gets),
after one untimed warm-up; the median of ``REPEATS`` runs is reported. The server runs in its own process
(``_servers.py``) with TCP_NODELAY, so neither its CPU nor its Nagle delay is charged to the client.

``prototype`` rows run variants of the client to show what the changes recommended for
``summarize/llm.py`` and ``summarize/schema.py`` buy: ``LeanSummarizer`` (the response format built once,
the request body posted without the SDK's per-call TypedDict transform, one SSL context per process instead
of one per event loop) and, when ``aiohttp`` is installed, the same on the SDK's aiohttp transport
(``openai[aiohttp]``), whose per-request CPU is lower than httpx's. They are measurements of a proposal,
not of the shipped code.

Run standalone: ``python bench/bench_llm_stage.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib.util
import ssl
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import certifi
import openai
from _common import Row, print_rows, row, seeded_traces
from _servers import OpenAIServerProcess
from openai._constants import RAW_RESPONSE_HEADER
from openai.types.chat import ChatCompletion

from trace_summaries.summarize import LLMSettings, LLMSummarizer, response_format, summarize_many
from trace_summaries.summarize import llm as llm_module
from trace_summaries.text_repr import format_trace

LATENCY_S = 0.3
LEVELS = (5, 20, 50)
WAVES = 6
REPEATS = 3
TARGET_EFFICIENCY = 0.9


@functools.cache
def _shared_ssl_context() -> ssl.SSLContext:
    """Built once per process: ``AsyncOpenAI()`` otherwise builds one (40-90 ms, certifi) per event loop."""
    return ssl.create_default_context(cafile=certifi.where())


class LeanSummarizer(LLMSummarizer):
    """Prototype of the recommended change: same request, same parsing, less client CPU per call and per
    partition (one SSL context per process instead of one per event loop)."""

    _format = response_format()

    def _client(self) -> openai.AsyncOpenAI:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = openai.AsyncOpenAI(
                api_key=self.settings.api_key or llm_module.NO_API_KEY,
                base_url=self.settings.base_url or None,
                timeout=self.settings.timeout_s,
                max_retries=0,
                http_client=openai.DefaultAsyncHttpxClient(verify=_shared_ssl_context()),
            )
            self._clients[loop] = client
        return client

    async def _attempt(self, messages: list[dict[str, str]]) -> Any:
        # Error handling as in LLMSummarizer._attempt is left out: the prototype only meets a healthy server.
        client = self._client()
        async with asyncio.timeout(self.settings.timeout_s):
            raw = await client.post(
                "/chat/completions",
                body={"model": self.settings.model, "messages": messages, "response_format": self._format},
                cast_to=ChatCompletion,
                options={"headers": {RAW_RESPONSE_HEADER: "true"}},
            )
            request_id = raw.request_id  # type: ignore[attr-defined]
            completion = raw.parse()  # type: ignore[attr-defined]
        return llm_module._parse_completion(completion, request_id)


class AioHttpLeanSummarizer(LeanSummarizer):
    """The lean client on the SDK's aiohttp transport (``openai[aiohttp]``, not a project dependency)."""

    def _client(self) -> openai.AsyncOpenAI:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = openai.AsyncOpenAI(
                api_key=self.settings.api_key or llm_module.NO_API_KEY,
                base_url=self.settings.base_url or None,
                timeout=self.settings.timeout_s,
                max_retries=0,
                http_client=openai.DefaultAioHttpClient(),
            )
            self._clients[loop] = client
        return client


def _aiohttp_available() -> bool:
    return importlib.util.find_spec("aiohttp") is not None


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
    try:
        timeline.started = time.perf_counter()
        results = await summarize_many(timeline, items, "detailed", batch_size=concurrency)  # type: ignore[arg-type]
        wall = time.perf_counter() - timeline.started
    finally:
        await inner.aclose()
    failed = [r.error for r in results.values() if not r.generated]
    if failed:
        raise AssertionError(f"{len(failed)} summaries failed: {failed[:2]}")
    ends = sorted(timeline.ends)
    first_wave_end = ends[concurrency - 1]
    steady = (len(ends) - concurrency) / (ends[-1] - first_wave_end)
    return Measurement(wall, steady, len(items) / wall, first_wave_end)


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


def run(quick: bool = False) -> list[Row]:
    levels = (5, 20) if quick else LEVELS
    repeats = 1 if quick else REPEATS
    items = rendered_items(WAVES * max(levels))
    rows: list[Row] = []
    with OpenAIServerProcess(latency_s=LATENCY_S) as server:
        warm = LLMSettings(api_key="k", base_url=server.base_url)
        asyncio.run(_measure(LLMSummarizer, warm, items[:10], 5))  # imports, first connections
        asyncio.run(_measure(LeanSummarizer, warm, items[:10], 5))
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
                    note=f"{WAVES * concurrency} traces; runs {spread}",
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
        prototypes: list[tuple[str, type[LLMSummarizer]]] = [("lean client", LeanSummarizer)]
        if _aiohttp_available():
            prototypes.append(("lean client on aiohttp", AioHttpLeanSummarizer))
        else:
            rows.append(
                row("prototype lean client on aiohttp: skipped", None, "", note="aiohttp not installed")
            )
        for title, cls in prototypes:
            for concurrency in levels:
                ideal = concurrency / LATENCY_S
                runs, _ = _level(server, cls, items, concurrency, repeats)
                m = _median_run(runs)
                rows.append(
                    row(
                        f"prototype {title}, c={concurrency}: steady-state summaries/s",
                        m.steady_rate,
                        "summaries/s",
                        baseline=ideal,
                        note=f"end to end {m.overall_rate / ideal:.3f} of ideal; not the shipped code",
                    )
                )
        rows.append(_client_cpu_row(server, items))

    # The test server as shipped (Nagle's algorithm on): what the harness itself adds to every call.
    with OpenAIServerProcess(latency_s=LATENCY_S, nodelay=False) as shipped:
        runs, _ = _level(shipped, LLMSummarizer, items, 5, 1)
        rows.append(
            row(
                "c=5 against the test server as shipped (Nagle on)",
                runs[0].steady_rate,
                "summaries/s",
                baseline=5 / LATENCY_S,
                note="~40 ms delayed-ACK stall per call in openai_server.py, not in the client",
            )
        )
    return rows


def _client_cpu_row(server: OpenAIServerProcess, items: list[Any]) -> Row:
    """Client CPU per summary (process time), shipped client vs the prototype, at c=20."""
    settings = LLMSettings(api_key="k", base_url=server.base_url)
    per_call: dict[str, float] = {}
    classes: list[type[LLMSummarizer]] = [LLMSummarizer, LeanSummarizer]
    if _aiohttp_available():
        classes.append(AioHttpLeanSummarizer)
    for cls in classes:
        samples = []
        for _ in range(2):
            started = time.process_time()
            asyncio.run(_measure(cls, settings, items[:100], 20))
            samples.append((time.process_time() - started) / 100 * 1000)
        per_call[cls.__name__] = statistics.median(samples)
    aiohttp = per_call.get("AioHttpLeanSummarizer")
    return row(
        "client CPU per summary: prototype lean client vs shipped",
        per_call["LeanSummarizer"],
        "ms",
        baseline=per_call["LLMSummarizer"],
        note="process time of the bench process / summaries, c=20"
        + (f"; lean client on aiohttp {aiohttp:.2f} ms" if aiohttp else ""),
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print_rows(run(quick=parser.parse_args().quick))
