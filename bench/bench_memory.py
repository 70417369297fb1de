"""7. Memory: peak RSS of a partition of 100 traces at the size limits (50 events, ~2,000,000 chars each).

The store holds one team-hour of 100 agent traces, each exactly at the sampling guards: 50 events
(a root span, 24 generations that resend the whole growing conversation, 24 tool spans, a ``$ai_trace``)
and just under 2,000,000 characters of properties, so all 100 are selected (~200 MB of JSON). It is built
once into ``.data/bench/`` by ``limit_trace`` below.

The partition runs as Dagster runs it, one process per asset step, each a fresh child process whose peak
RSS is the figure (``VmHWM`` of the child: its ``ru_maxrss`` would not do, Linux carries it across exec
from the forked parent):

* ``sampled_traces`` step: ``sample_team_hour`` (embedded chDB in the process; the events fetched in chunks of
  ``SamplingConfig.fetch_chunk_properties_chars``), then the sample written as JSON lines by the
  ``SampleIOManager`` (streamed to a temporary file, renamed into place);
* ``trace_summaries`` step: the sample read back line by line by the ``SampleIOManager``,
  ``summarize_partition`` (render with the asset's options, the offline ``HeuristicSummarizer``, build
  events), ``replace_summary_events``.

Both steps import the IO manager, and with it Dagster (~80 MB), as a real step process does.

The target is on the embedded store (the default, ``make dev``), where the chDB engine lives in the step
process. Also measured: the same steps against ClickHouse over HTTP (the production path; the engine is in
the HTTP front's process), and a process that only imports the pipeline and opens an embedded session (the
floor every embedded step pays). Each child also reports its high-water mark after every stage, which shows
where the memory goes.

Figures (MB, peak RSS of each step process, 100 traces, 199 MB of properties, this harness on 2 CPUs), before
and after issue 8's memory change (before: one fetch query, the object built and parsed whole by
``to_jsonl``/``from_jsonl``; after: fetches of at most 16 MB of properties, JSON lines streamed):

==========================  ===========  =======  ==================================================
step                        before       after    where the peak is now
==========================  ===========  =======  ==================================================
sampled_traces, embedded    1,644-1,687  773-779  the sample, on top of the ~406 MB floor
trace_summaries, embedded   803          763      ``write events``: opening the embedded store (+225)
sampled_traces, HTTP        979-983      421      the sample
trace_summaries, HTTP       803-804      532-539  render + summarize
==========================  ===========  =======  ==================================================

(Before this harness imported Dagster, ~80 MB less per process, it gave 1,794-1,805 / 723 embedded and
894-918 / 723 over HTTP before the change.)

Ranged step (issue 19): a sharded schedule tick or a backfill runs many (hour, team) partitions in one step.
Both steps stream them: ``sampled_traces`` writes each sample through the sample store as soon as it is
sampled, and ``trace_summaries`` reads a partition only when its calls are needed to keep ``batch_size``
busy, letting each trace go as its call ends. The ranged rows run the real assets through Dagster
(``dg.materialize`` with a partition range, an ephemeral instance, the local-disk ``SampleIOManager``), one
process per step and, as ``trace_summaries_job`` runs them (in-process executor), both steps in one process,
over ``RANGE_PARTITIONS`` (50) team partitions of one hour. Building 50 x 100 limit-size traces (10 GB of
properties) is too slow for this harness, so the range has ``RANGE_FULL`` full partitions of 100 limit-size
traces (the first two and the last two: a streaming step holds at most one full partition and the last
calls of the one before, and the last ones show whether memory creeps over the range) and 46 of
``RANGE_SMALL_TRACES`` (10) limit-size traces. The summarizer is the offline one behind ``RANGE_CALL_S`` of
simulated call latency, so a partition's last calls are still in flight while the next partition is read, as
with an endpoint.

Run standalone: ``python bench/bench_memory.py [--quick] [--ranged-only]``.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import BENCH_DATA, Row, print_rows, row

TARGET_MB = 1024
MAX_EVENTS = 50
MAX_CHARS = 2_000_000
TRACE_CHARS = 1_990_000  # just under the guard
STEPS = 24  # generations; plus as many tool spans, a root span and a $ai_trace event: 50 events
HOUR = datetime(2026, 11, 1, 12, tzinfo=UTC)
TEAM = 1
LAYOUT_VERSION = 2
# The ranged step: teams 1..RANGE_PARTITIONS of HOUR; the first and last RANGE_FULL // 2 teams get 100 traces.
RANGE_PARTITIONS = 50
RANGE_FULL = 4
RANGE_FULL_TRACES = 100
RANGE_SMALL_TRACES = 10
RANGE_CALL_S = 0.3
RANGE_BATCH_SIZE = 5

WORDS = [
    *("invoice", "customer", "refund", "shipping", "warehouse", "delay", "policy", "account", "payment"),
    *("card", "address", "report", "quarter", "revenue", "table", "query", "latency", "error", "retry"),
    *("timeout", "region", "product", "stock", "price", "discount", "user", "order"),
]


def _encode(properties: dict[str, Any]) -> str:
    return json.dumps(properties, ensure_ascii=False, separators=(",", ":"))


def _text(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(WORDS)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)[:chars]


def limit_trace(rng: random.Random, result_chars: int, start: datetime) -> list[dict[str, Any]]:
    """An agent loop of 50 events; ``result_chars`` sets the size of each tool result."""
    trace_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    root = f"{trace_id}-root"
    system = {"role": "system", "content": _text(rng, 2_000)}
    tools = [
        {
            "type": "function",
            "function": {
                "name": f"tool_{index}",
                "description": _text(rng, 200),
                "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
            },
        }
        for index in range(6)
    ]
    conversation: list[dict[str, Any]] = [system, {"role": "user", "content": _text(rng, 400)}]
    events: list[dict[str, Any]] = []
    clock = 0.0

    def emit(event: str, properties: dict[str, Any]) -> None:
        nonlocal clock
        clock += rng.uniform(0.2, 2.0)
        events.append(
            {
                "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "event": event,
                "timestamp": start + timedelta(seconds=clock),
                "properties": {"$ai_trace_id": trace_id, **properties},
                "team_id": TEAM,
                "distinct_id": "bench-user",
            }
        )

    for step in range(STEPS):
        call = {
            "id": f"call_{step}",
            "type": "function",
            "function": {"name": f"tool_{step % 6}", "arguments": json.dumps({"query": _text(rng, 60)})},
        }
        output = {"role": "assistant", "content": None, "tool_calls": [call]}
        emit(
            "$ai_generation",
            {
                "$ai_parent_id": root,
                "$ai_model": "gpt-4.1-mini",
                "$ai_provider": "openai",
                "$ai_input": list(conversation),
                "$ai_output_choices": [{"message": output}],
                "$ai_tools": tools,
                "$ai_latency": round(rng.uniform(0.3, 3.0), 3),
                "$ai_input_tokens": rng.randint(1_000, 90_000),
                "$ai_output_tokens": rng.randint(10, 300),
            },
        )
        result = _text(rng, result_chars)
        emit(
            "$ai_span",
            {
                "$ai_parent_id": root,
                "$ai_span_name": f"tool:tool_{step % 6}",
                "$ai_input_state": json.loads(call["function"]["arguments"]),
                "$ai_output_state": result,
            },
        )
        conversation += [output, {"role": "tool", "tool_call_id": call["id"], "content": result}]
    emit("$ai_span", {"$ai_span_id": root, "$ai_span_name": "agent", "$ai_input_state": conversation[1]})
    emit("$ai_trace", {"$ai_span_name": "agent run", "$ai_output_state": {"status": "done"}})
    return events


def _trace_chars(events: list[dict[str, Any]]) -> int:
    return sum(len(_encode(event["properties"]).encode()) for event in events)


def calibrated_trace(seed: int, start: datetime) -> list[dict[str, Any]]:
    """The largest trace (by tool result size) that stays at or under ``TRACE_CHARS``."""
    low, high = 100, 20_000
    best: list[dict[str, Any]] = []
    while low <= high:
        middle = (low + high) // 2
        events = limit_trace(random.Random(seed), middle, start)
        if _trace_chars(events) <= TRACE_CHARS:
            best, low = events, middle + 1
        else:
            high = middle - 1
    return best


def memory_store(traces: int) -> Path:
    """The chDB directory holding ``traces`` limit-sized traces in one team-hour (built once)."""
    root = BENCH_DATA / f"memory-t{traces}-c{TRACE_CHARS}-v{LAYOUT_VERSION}"
    data_dir = root / "clickhouse"
    if (root / "done").exists():
        return data_dir
    print(f"building {traces} limit-sized traces in {root} (once) ...", file=sys.stderr, flush=True)
    _build_store(root, (calibrated_trace(i, HOUR + timedelta(seconds=30 * i)) for i in range(traces)))
    return data_dir


def _build_store(root: Path, traces: Iterable[list[dict[str, Any]]]) -> None:
    """Writes ``traces`` (each at the size limits) into ``root``'s chDB directory in batches, merges them into
    one part as a server's background merges leave it (no merge runs inside a measured process), and marks
    the directory done."""
    from trace_summaries.demo import to_event_rows
    from trace_summaries.store import TraceStore

    store = TraceStore(f"chdb://{root / 'clickhouse'}")
    store.ensure_schema()
    with store.session() as client:
        client.command("TRUNCATE TABLE events")
    batch: list[dict[str, Any]] = []
    for events in traces:
        assert len(events) == MAX_EVENTS and _trace_chars(events) <= MAX_CHARS
        batch += events
        if len(batch) >= 500:
            store.insert_events(to_event_rows(batch))
            batch = []
    store.insert_events(to_event_rows(batch))
    with store.session() as client:
        client.command("OPTIMIZE TABLE events FINAL")
    (root / "done").write_text("ok")


def _range_traces(team: int, full: int, partitions: int) -> int:
    return RANGE_FULL_TRACES if team <= full // 2 or team > partitions - full // 2 else RANGE_SMALL_TRACES


def _clone(events: list[dict[str, Any]], team: int, index: int) -> list[dict[str, Any]]:
    """A limit-size trace again, for another team: new trace id, uuids and team, the same sizes."""
    rng = random.Random(f"{team}-{index}")
    old = events[0]["properties"]["$ai_trace_id"]
    new = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    renamed = {old: new, f"{old}-root": f"{new}-root"}
    cloned = []
    for event in events:
        properties = dict(event["properties"])
        for field in ("$ai_trace_id", "$ai_parent_id", "$ai_span_id"):
            if field in properties:
                properties[field] = renamed[properties[field]]
        uuid_ = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        cloned.append({**event, "uuid": uuid_, "team_id": team, "properties": properties})
    return cloned


def ranged_store(partitions: int, full: int) -> Path:
    """The chDB directory of the ranged step: teams 1..``partitions`` in HOUR, limit-size traces (built once;
    each team's traces are clones of the same calibrated ones, under their own ids)."""
    name = f"memory-range-p{partitions}-f{full}x{RANGE_FULL_TRACES}-s{RANGE_SMALL_TRACES}-c{TRACE_CHARS}"
    root = BENCH_DATA / f"{name}-v{LAYOUT_VERSION}"
    data_dir = root / "clickhouse"
    if (root / "done").exists():
        return data_dir
    print(f"building the ranged step's traces in {root} (once) ...", file=sys.stderr, flush=True)
    most = max(_range_traces(team, full, partitions) for team in range(1, partitions + 1))
    base = [calibrated_trace(index, HOUR + timedelta(seconds=30 * index)) for index in range(most)]
    _build_store(
        root,
        (
            _clone(base[index], team, index)
            for team in range(1, partitions + 1)
            for index in range(_range_traces(team, full, partitions))
        ),
    )
    return data_dir


# -- the measured processes ------------------------------------------------------------------------------


def _hwm_mb() -> float:
    """This process's RSS high-water mark so far (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(mode: str, dsn: str, handoff: str) -> dict[str, Any]:
    """One process of the partition; returns its peak RSS, the high-water mark after each stage, times."""
    marks: dict[str, float] = {}
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def mark(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        marks[stage] = round(_hwm_mb(), 1)
        seconds[stage] = round(now - clock, 3)
        clock = now

    import dagster as dg

    from trace_summaries.defs.io_managers import SampleIOManager
    from trace_summaries.sample import SamplingConfig, sample_team_hour
    from trace_summaries.store import TraceStore
    from trace_summaries.summarize import HeuristicSummarizer
    from trace_summaries.summarize import partition as partition_summaries
    from trace_summaries.text_repr import RenderOptions
    from trace_summaries_harness import one_partition
    from trace_summaries_harness.one_partition import replace_summary_events

    store = TraceStore(dsn)
    io_manager = SampleIOManager(base_dir=handoff)
    key = f"{HOUR:%Y-%m-%d-%H:%M}|{TEAM}"
    partition = {
        "asset_key": dg.AssetKey("sampled_traces"),
        "partition_key": key,
        "asset_partitions_def": dg.StaticPartitionsDefinition([key]),
    }
    mark("imports")
    facts: dict[str, Any] = {}
    if mode == "floor":
        with store.session() as client:
            client.query("SELECT count() FROM events")
        mark("session")
    if mode == "sample":
        with store.session() as client:
            sample = sample_team_hour(client, TEAM, HOUR, HOUR + timedelta(hours=1), SamplingConfig())
        mark("sample")
        facts["traces"] = len(sample.traces)
        facts["excluded"] = sum(sample.stats.traces_excluded.values())
        facts["properties_mb"] = round(sum(t.properties_chars for t in sample.traces) / 1e6, 1)
        io_manager.handle_output(dg.build_output_context(**partition), {key: sample})
        mark("write JSON lines")
    if mode == "summarize":
        sample = io_manager.load_input(dg.build_input_context(**partition))[key]
        mark("read JSON lines")
        rendering = getattr(partition_summaries, "PIPELINE_RENDERING", None) or RenderOptions(
            nest=True, dedupe=True
        )
        result = one_partition.summarize_partition_sync(
            sample, HeuristicSummarizer(), mode="detailed", batch_size=5, render=rendering
        )
        mark("render + summarize + build events")
        facts["summaries"] = len(result.events)
        with store.session() as client:
            replace_summary_events(
                client,
                team_id=result.team_id,
                window_start=result.window_start,
                window_end=result.window_end,
                mode=result.mode,
                events=result.events,
            )
        mark("write events")
    # VmHWM, not ru_maxrss: on Linux ru_maxrss survives exec, so a child forked from a big parent reports
    # the parent's RSS at fork time when that is larger than anything the child itself ever used.
    return {"peak_mb": round(_hwm_mb(), 1), "marks": marks, "seconds": seconds, **facts}


def ranged_child(mode: str, dsn: str, handoff: str, partitions: int) -> dict[str, Any]:
    """One process of the ranged run, through Dagster: ``range-sample`` (the ``sampled_traces`` step),
    ``range-summarize`` (the ``trace_summaries`` step, its input read from ``handoff``) or ``range-run``
    (both, in one process, as the in-process executor runs them)."""
    marks: dict[str, float] = {}
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def mark(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        marks[stage] = round(_hwm_mb(), 1)
        seconds[stage] = round(now - clock, 3)
        clock = now

    import asyncio
    from collections.abc import Sequence

    import dagster as dg

    from trace_summaries.defs.io_managers import SampleIOManager, SummaryEventsIOManager
    from trace_summaries.defs.partition_sets import TEAMS
    from trace_summaries.defs.resources import ClickHouseResource, LLMResource
    from trace_summaries.defs.sampled_traces import sampled_traces
    from trace_summaries.defs.trace_summaries import trace_summaries
    from trace_summaries.summarize import Summarizer, SummaryMode, TraceSummaryResult
    from trace_summaries.text_repr import TraceText

    class SlowCalls:
        """The offline summarizer, answering after ``RANGE_CALL_S`` as an endpoint would."""

        def __init__(self, inner: Summarizer) -> None:
            self._inner = inner
            self.provider = inner.provider
            self.model = inner.model

        async def summarize(
            self, trace_text: TraceText, events: Sequence[Any], mode: SummaryMode
        ) -> TraceSummaryResult:
            await asyncio.sleep(RANGE_CALL_S)
            return await self._inner.summarize(trace_text, events, mode)

        async def aclose(self) -> None:
            await self._inner.aclose()

    class SlowLLM(LLMResource):
        def summarizer(
            self, *, model: str | None, max_attempts: int | None, bounded_output: bool = False
        ) -> Summarizer:
            return SlowCalls(
                super().summarizer(model=model, max_attempts=max_attempts, bounded_output=bounded_output)
            )

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(TEAMS.name, [str(team) for team in range(1, partitions + 1)])
    clickhouse = ClickHouseResource(dsn=dsn)
    resources = {
        "clickhouse": clickhouse,
        "llm": SlowLLM(),
        "sample_io_manager": SampleIOManager(base_dir=handoff),
        "summary_events_io_manager": SummaryEventsIOManager(clickhouse=clickhouse),
    }
    hour = f"{HOUR:%Y-%m-%d-%H:%M}"
    selection = {"range-sample": [sampled_traces], "range-summarize": [trace_summaries]}.get(mode)
    mark("imports")
    result = dg.materialize(
        [sampled_traces, trace_summaries],
        selection=selection,
        instance=instance,
        resources=resources,
        run_config=None
        if mode == "range-sample"
        else {"ops": {"trace_summaries": {"config": {"batch_size": RANGE_BATCH_SIZE}}}},
        tags={
            "dagster/asset_partition_range_start": f"{hour}|1",
            "dagster/asset_partition_range_end": f"{hour}|{partitions}",
        },
    )
    mark(mode.removeprefix("range-"))
    facts: dict[str, Any] = {}
    for asset, figure in (("sampled_traces", "traces_selected"), ("trace_summaries", "generated")):
        materializations = result.asset_materializations_for_node(asset)
        if materializations:
            facts[figure] = materializations[0].metadata[figure].value
            facts[f"{asset}_partitions"] = materializations[0].metadata["partitions"].value
    return {"peak_mb": round(_hwm_mb(), 1), "marks": marks, "seconds": seconds, **facts}


def _run_child(mode: str, dsn: str, handoff: Path, *extra: str) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, __file__, "--child", mode, dsn, str(handoff), *extra],
        check=True,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def _describe(result: dict[str, Any]) -> str:
    return "; ".join(
        f"{stage} {mb:.0f} MB/{result['seconds'][stage]:.1f}s" for stage, mb in result["marks"].items()
    )


def _partition(dsn: str, handoff: Path, traces: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two step processes of the partition; the sample passes between them through ``handoff``."""
    shutil.rmtree(handoff, ignore_errors=True)
    sampled = _run_child("sample", dsn, handoff)
    summarized = _run_child("summarize", dsn, handoff)
    shutil.rmtree(handoff, ignore_errors=True)
    if sampled["traces"] != traces or sampled["excluded"] or summarized["summaries"] != traces:
        raise AssertionError(f"expected {traces} traces selected and summarized: {sampled}, {summarized}")
    return sampled, summarized


def ranged_rows(quick: bool = False) -> list[Row]:
    """Peak RSS of a ranged run of ``RANGE_PARTITIONS`` partitions (embedded chDB): each step's process, and
    both steps in one process."""
    partitions, full = (6, 2) if quick else (RANGE_PARTITIONS, RANGE_FULL)
    data_dir = ranged_store(partitions, full)
    dsn = f"chdb://{data_dir}"
    handoff = data_dir.parent / "intermediate"
    expected = sum(_range_traces(team, full, partitions) for team in range(1, partitions + 1))
    results: dict[str, dict[str, Any]] = {}
    for mode in ("range-sample", "range-summarize", "range-run"):
        if mode != "range-summarize":
            shutil.rmtree(handoff, ignore_errors=True)
        results[mode] = _run_child(mode, dsn, handoff, str(partitions))
    shutil.rmtree(handoff, ignore_errors=True)
    for mode, result in results.items():
        counted = [result.get(figure) for figure in ("traces_selected", "generated") if figure in result]
        if not counted or any(count != expected for count in counted):
            raise AssertionError(f"{mode}: expected {expected} traces sampled and summarized: {result}")
    steps = max(results["range-sample"]["peak_mb"], results["range-summarize"]["peak_mb"])
    shape = (
        f"{partitions} partitions: {full} of {RANGE_FULL_TRACES} limit-size traces (first and last), "
        f"{partitions - full} of {RANGE_SMALL_TRACES}; {expected} traces; batch_size {RANGE_BATCH_SIZE}, "
        f"{RANGE_CALL_S} s per call"
    )
    return [
        row(
            f"peak RSS, ranged step of {partitions} partitions (embedded chDB)",
            steps,
            "MB",
            baseline=TARGET_MB,
            target=f"< {TARGET_MB} MB",
            met=steps < TARGET_MB,
            note=f"worst step process; {shape}",
        ),
        row(
            "  sampled_traces step (range)",
            results["range-sample"]["peak_mb"],
            "MB",
            note=_describe(results["range-sample"]),
        ),
        row(
            "  trace_summaries step (range)",
            results["range-summarize"]["peak_mb"],
            "MB",
            note=_describe(results["range-summarize"]),
        ),
        row(
            "  both steps in one process (range, in-process executor)",
            results["range-run"]["peak_mb"],
            "MB",
            baseline=TARGET_MB,
            note=_describe(results["range-run"]),
        ),
    ]


def run(quick: bool = False) -> list[Row]:
    from trace_summaries_harness.clickhouse_http import clickhouse_http_server

    traces = 20 if quick else 100
    data_dir = memory_store(traces)
    embedded = f"chdb://{data_dir}"
    handoff = data_dir.parent / "intermediate"
    floor = _run_child("floor", embedded, handoff)
    sampled, summarized = _partition(embedded, handoff, traces)
    with clickhouse_http_server(data_dir) as front:
        http_sampled, http_summarized = _partition(front.dsn, handoff, traces)

    worst = max(sampled["peak_mb"], summarized["peak_mb"])
    http_worst = max(http_sampled["peak_mb"], http_summarized["peak_mb"])
    return [
        row(
            f"peak RSS, partition of {traces} limit-size traces (embedded chDB)",
            worst,
            "MB",
            baseline=TARGET_MB,
            target=f"< {TARGET_MB} MB",
            met=worst < TARGET_MB,
            note=f"worst step process; {sampled['properties_mb']} MB of properties selected",
        ),
        row("  sampled_traces step", sampled["peak_mb"], "MB", note=_describe(sampled)),
        row("  trace_summaries step", summarized["peak_mb"], "MB", note=_describe(summarized)),
        row(
            "same over ClickHouse HTTP (no engine in the process)",
            http_worst,
            "MB",
            baseline=TARGET_MB,
            note="worst step process",
        ),
        row("  sampled_traces step (HTTP)", http_sampled["peak_mb"], "MB", note=_describe(http_sampled)),
        row(
            "  trace_summaries step (HTTP)", http_summarized["peak_mb"], "MB", note=_describe(http_summarized)
        ),
        row("floor: imports + one embedded store session", floor["peak_mb"], "MB", note=_describe(floor)),
        *ranged_rows(quick),
    ]


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        if sys.argv[2].startswith("range-"):
            print(json.dumps(ranged_child(*sys.argv[2:5], int(sys.argv[5]))))
        else:
            print(json.dumps(child(*sys.argv[2:5])))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--ranged-only", action="store_true", help="only the ranged step's rows")
    arguments = parser.parse_args()
    print_rows(ranged_rows(arguments.quick) if arguments.ranged_only else run(quick=arguments.quick))
