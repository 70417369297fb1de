"""9. LLM pacing: throughput against an endpoint of limited capacity or rate, adaptive pacer vs fixed limit.

Two kinds of endpoint, both the OpenAI-compatible test server (``trace_summaries_harness.openai_server``) in
its own process, so its work is not charged to the client:

* **capacity C**: it serves at most C chat calls at once, each for ``LATENCY_S``, and queues the rest
  first come, first served (a llama.cpp server with C slots). No client can do better than ``C / latency``
  summaries per second. The step runs with ``batch_size = 4C`` (what a user who does not know C might set)
  and a per-attempt timeout of ``TIMEOUT_LATENCIES`` latencies, so a call queued behind three others times
  out (the issue's one-slot llama.cpp run: 20-70 s calls, a 120 s timeout, ``batch_size`` 5). Figures:
  generated summaries per second from the step's start to its last summary (start-up and the pacer's ramp
  included; building the events after it, the same for both limits, is in the note) as a share of
  ``C / latency``, timeouts the client saw, traces failed, and the most calls the server had in flight.
* **rate N per window W**: at most N chat calls accepted per sliding window of ``W`` seconds (a requests-per-
  minute quota with a window shorter than a minute, so the run stays short); beyond that, 429 at once with
  ``Retry-After`` (and ``retry-after-ms``). Calls are fast (``RATE_LATENCY_S``). The best any client can do
  is N calls at once, then N more each time the window slides past them: ``T`` traces take at least
  ``(ceil(T / N) - 1) * W`` seconds. Figure: that best time over the wall time (1.0: the quota fully used),
  and traces failed.

What runs is the step's code: ``summarize_partitions_sync`` over one partition of rendered seeded-like traces
with the shipped ``LLMSummarizer`` and its default retry policy (4 attempts, exponential backoff from 1 s).
The **baseline**, measured in the same run, is the limit that shipped before: ``batch_size`` calls in flight
from the start, for ever (``CallPacer.fixed``), and every failure counted against the trace's attempts.

Run standalone: ``python bench/bench_pacing.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import Row, print_rows, row

from trace_summaries.sample import SampledTrace, SamplingStats, TeamHourSample, TraceEvent
from trace_summaries.summarize import LLMSettings, LLMSummarizer
from trace_summaries.summarize.pacing import CallPacer
from trace_summaries.summarize.partition import PIPELINE_RENDERING, summarize_partitions_sync

REPO = Path(__file__).resolve().parents[1]
LATENCY_S = 0.2
TIMEOUT_LATENCIES = 3.0
CAPACITIES = (1, 4, 16)
BATCH_PER_CAPACITY = 4
# Full: every capacity gets about this many latencies of work at full speed (so the ramp is a small part).
FULL_ROUNDS = 100
QUICK_ROUNDS = 20
# Rate limit: N calls per W seconds, T traces; calls answered after RATE_LATENCY_S.
RATE_LATENCY_S = 0.05
FULL_RATE = (40, 4.0, 160)
QUICK_RATE = (20, 2.0, 60)
RATE_BATCH = 8
TARGET = 0.9
API_KEY = "sk-bench-pacing"


# -- the server, in its own process ------------------------------------------------------------------------


class ServerProcess:
    """The test server with a capacity or a rate limit, in a child process; ``stats()`` reads its counts."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.base_url = ""
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> ServerProcess:
        self._process = subprocess.Popen(
            [sys.executable, "-u", __file__, "--serve", json.dumps(self.options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        self.base_url = self._read()["base_url"]
        return self

    def __exit__(self, *exc: object) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            assert process.stdin is not None
            process.stdin.write('"stop"\n')
            process.stdin.flush()
            process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            process.terminate()
            process.wait(timeout=10)

    def stats(self) -> dict[str, Any]:
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write('"stats"\n')
        self._process.stdin.flush()
        return self._read()

    def _read(self) -> dict[str, Any]:
        assert self._process is not None and self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("the test server process exited")
        answer: dict[str, Any] = json.loads(line)
        return answer


def _serve(options: dict[str, Any]) -> None:
    sys.path.insert(0, str(REPO))
    from trace_summaries_harness.openai_server import OpenAICompatibleServer

    # Clean answers: pacing is measured against capacity and rate limits, not answer shapes.
    server = OpenAICompatibleServer(require_api_key=API_KEY, repertoire="clean", **options).start()
    print(json.dumps({"base_url": server.base_url}), flush=True)
    try:
        for line in sys.stdin:
            if json.loads(line) != "stats":
                break
            chat = server.chat_requests()
            stats = {
                "chat_requests": len(chat),
                "answered_200": sum(1 for request in chat if request.status == 200),
                "max_in_flight": server.max_in_flight,
                "max_serving": server.max_serving,
                "max_queued": server.max_queued,
                "abandoned": server.abandoned,
                "rate_limited": server.rate_limited,
            }
            print(json.dumps(stats), flush=True)
    finally:
        server.stop()


# -- the step -------------------------------------------------------------------------------------------


_HOUR = datetime(2026, 11, 1, 9, tzinfo=UTC)


def _sample(count: int) -> TeamHourSample:
    """One partition of small traces (a plan generation, a tool span, an answer): rendering costs little."""
    traces = []
    for i in range(count):
        trace_id = f"pacing-{i:05d}"
        at = _HOUR + timedelta(seconds=i)
        events = [
            TraceEvent(
                uuid=f"{trace_id}-{n}",
                event=name,
                timestamp=at + timedelta(milliseconds=n),
                properties={"$ai_trace_id": trace_id, **properties},
            )
            for n, (name, properties) in enumerate(
                [
                    ("$ai_trace", {"$ai_trace_name": f"Order question {i}"}),
                    (
                        "$ai_generation",
                        {
                            "$ai_span_name": "answer",
                            "$ai_model": "gpt-4.1-mini",
                            "$ai_input": [{"role": "user", "content": f"Where is my order {1000 + i}?"}],
                            "$ai_output_choices": [
                                {"message": {"role": "assistant", "content": "It ships tomorrow."}}
                            ],
                        },
                    ),
                    ("$ai_span", {"$ai_span_name": "lookup_order", "$ai_latency": 0.4}),
                ]
            )
        ]
        traces.append(
            SampledTrace(
                trace_id=trace_id,
                first_timestamp=at,
                event_count=len(events),
                properties_chars=sum(len(json.dumps(event.properties)) for event in events),
                events=events,
            )
        )
    return TeamHourSample(
        team_id=1,
        window_start=_HOUR,
        window_end=_HOUR + timedelta(hours=1),
        traces=traces,
        stats=SamplingStats(),
    )


@dataclass
class Run:
    traces: int
    generated: int
    failed: dict[str, int]
    # From the step's start to its last summary; then building the events (the same for both limits).
    wall_s: float
    after_s: float
    pacing: dict[str, int]
    server: dict[str, Any]


def _run(server: ServerProcess, traces: int, pacer: CallPacer, timeout_s: float) -> Run:
    settings = LLMSettings(api_key=API_KEY, base_url=server.base_url, timeout_s=timeout_s)
    summarizer = LLMSummarizer(settings)
    sample = _sample(traces)
    last_summary = [0.0]

    def progress(_key: str) -> Callable[[int, int, int], None]:
        def done(*_counts: int) -> None:
            last_summary[0] = time.perf_counter()

        return done

    started = time.perf_counter()
    results = summarize_partitions_sync(
        {"p": sample},
        summarizer,
        batch_size=pacer.max_limit,
        pacer=pacer,
        on_progress=progress,
        mode="minimal",
        render=PIPELINE_RENDERING,
    )
    ended = time.perf_counter()
    summaries = results["p"]
    return Run(
        traces=traces,
        generated=summaries.counts().get("generated", 0),
        failed=summaries.reasons("failed"),
        wall_s=last_summary[0] - started,
        after_s=ended - last_summary[0],
        pacing=pacer.stats().metadata(),
        server=server.stats(),
    )


def _note(run: Run) -> str:
    failed = sum(run.failed.values())
    return (
        f"{run.generated}/{run.traces} generated, {failed} failed {run.failed or ''}, "
        f"{run.pacing['llm_timeouts']} timeouts, {run.pacing['llm_rate_limited']} 429s, "
        f"{run.server['chat_requests']} calls, server max in flight {run.server['max_in_flight']}, "
        f"limit max {run.pacing['llm_concurrency_max_reached']} final {run.pacing['llm_concurrency_final']}, "
        f"{run.wall_s:.1f} s (+{run.after_s:.1f} s building events)"
    ).replace("  ", " ")


def capacity_rows(capacity: int, rounds: int) -> list[Row]:
    traces = capacity * rounds
    batch_size = BATCH_PER_CAPACITY * capacity
    timeout_s = TIMEOUT_LATENCIES * LATENCY_S
    ideal = capacity / LATENCY_S
    runs: dict[str, Run] = {}
    for name, pacer in (("fixed", CallPacer.fixed(batch_size)), ("paced", CallPacer(batch_size))):
        with ServerProcess(capacity=capacity, latency_s=LATENCY_S) as server:
            runs[name] = _run(server, traces, pacer, timeout_s)
        print(f"capacity {capacity} {name}: {_note(runs[name])}", file=sys.stderr, flush=True)
    paced, fixed = runs["paced"], runs["fixed"]

    def efficiency(run: Run) -> float:
        return run.generated / run.wall_s / ideal

    met = (
        efficiency(paced) >= TARGET
        and paced.pacing["llm_timeouts"] == 0
        and not paced.failed
        and paced.generated == traces
    )
    label = f"capacity {capacity}, batch_size {batch_size}, {traces} traces"
    return [
        row(
            f"{label}: summaries/s vs C/latency",
            efficiency(paced),
            "x ideal",
            baseline=efficiency(fixed),
            target=f">= {TARGET} with 0 timeouts",
            met=met,
            note=f"paced: {_note(paced)}; fixed: {_note(fixed)}",
        ),
        row(
            f"{label}: timeouts",
            paced.pacing["llm_timeouts"],
            "calls",
            baseline=fixed.pacing["llm_timeouts"],
            ratio=None,
            target="0",
            met=paced.pacing["llm_timeouts"] == 0,
        ),
        row(
            f"{label}: traces failed",
            sum(paced.failed.values()),
            "traces",
            baseline=sum(fixed.failed.values()),
            ratio=None,
            target="0",
            met=not paced.failed,
        ),
    ]


def rate_rows(limit: int, window_s: float, traces: int) -> list[Row]:
    best_s = (math.ceil(traces / limit) - 1) * window_s
    runs: dict[str, Run] = {}
    for name, pacer in (("fixed", CallPacer.fixed(RATE_BATCH)), ("paced", CallPacer(RATE_BATCH))):
        with ServerProcess(latency_s=RATE_LATENCY_S, rpm_limit=limit, rpm_window_s=window_s) as server:
            runs[name] = _run(server, traces, pacer, timeout_s=10.0)
        print(f"rate {limit}/{window_s:g}s {name}: {_note(runs[name])}", file=sys.stderr, flush=True)
    paced, fixed = runs["paced"], runs["fixed"]
    label = f"{limit} calls per {window_s:g} s window, batch_size {RATE_BATCH}, {traces} traces"

    def share(run: Run) -> float:
        return best_s / run.wall_s

    return [
        row(
            f"{label}: best possible time / wall time",
            share(paced),
            "x quota",
            baseline=share(fixed),
            target=f">= {TARGET}, no trace failed",
            met=share(paced) >= TARGET and not paced.failed and paced.generated == traces,
            note=f"best {best_s:g} s; paced: {_note(paced)}; fixed: {_note(fixed)}",
        ),
        row(
            f"{label}: traces failed",
            sum(paced.failed.values()),
            "traces",
            baseline=sum(fixed.failed.values()),
            ratio=None,
            target="0",
            met=not paced.failed,
        ),
    ]


def run(quick: bool = False) -> list[Row]:
    rounds = QUICK_ROUNDS if quick else FULL_ROUNDS
    rows: list[Row] = []
    for capacity in CAPACITIES:
        rows += capacity_rows(capacity, rounds)
    rows += rate_rows(*(QUICK_RATE if quick else FULL_RATE))
    return rows


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        _serve(json.loads(sys.argv[2]))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print_rows(run(quick=parser.parse_args().quick))
