"""16. Scale: an hour of 1,000 teams through the real daemon, the LLM simulated at 1 s per call.

Issue target: an hour of 1,000 teams through the real daemon (LLM simulated at 1 s per call, concurrency as
configured) finishes within the hour, with orchestration overhead under 10% of the wall time.

The stack is the production one, sized for this 2-core machine (every part a real process on 127.0.0.1):

* Dagster instance: ``deploy/dagster.yaml`` (PostgreSQL storage, QueuedRunCoordinator, run retries and
  monitoring) on a fresh PostgreSQL (``trace_summaries_harness/postgres.py``), with the concurrency of this
  benchmark (``CONFIG`` below): ``max_concurrent_runs`` and the ``llm`` pool's limit, instead of production's
  20 runs / 8 pool slots (2 cores cannot host 20 run processes);
* ``dagster-webserver`` + ``dagster-daemon`` (``trace_summaries_harness/dagster_stack.py``);
* the trace store: the ClickHouse HTTP interface over chDB (``trace_summaries_harness/clickhouse_http.py``),
  as production reaches ClickHouse, so concurrent runs share one server rather than an embedded directory;
* the LLM: the OpenAI-compatible test server in its own process (``bench/_servers.py``), 1 s per chat call,
  no capacity limit (it never queues), clean answers (no refusals or cut-offs, hence no retries: every call
  is one trace), reached through ``OPENAI_BASE_URL``/``OPENAI_API_KEY`` (not the offline heuristic);
* no Kafka and no S3: embedding requests are skipped with a warning, samples go to local disk;
* ``TRACE_SUMMARIES_START_DATE`` is the summarized hour, so no other schedule adds runs: at 01:30 UTC the
  daily cluster schedule would otherwise launch one run per team for yesterday (1,000 runs, minutes of the
  scheduler daemon's time) in the middle of the measurement.

1,000 teams (40 with ``--quick``) with ``TRACES`` small traces each in ONE hour, registered as dynamic
partitions (one ``add_dynamic_partitions`` call on the Postgres instance before the stack starts) and
allowlisted (``TRACE_SUMMARIES_ALLOWED_TEAM_IDS``, so the team sensor agrees). The REAL schedule ticks:
the stack starts with ``TRACE_SUMMARIES_SCHEDULE_MINUTE`` half an hour away, and once the daemon has the
schedule's state the daemon is rolled out again with the minute of a tick at least ``TICK_LEAD_S`` ahead
(as ``trace_summaries_tests/test_production_stack.py`` does), so the new daemon is up before its tick.
Sharded mode: ``shard_size`` teams per ranged run, ``TRACE_SUMMARIES_LLM_CONCURRENCY`` calls in flight per
run (the run config's ``batch_size``), ``TRACE_SUMMARIES_MAX_TRACES`` = ``TRACES``.

Wall time: from the tick's scheduled time to the end of the last run. Ideal (the baseline): LLM calls x 1 s
/ (min(llm pool, runs) x LLM concurrency per run), the wall of a pipeline that did nothing but wait for the
simulated LLM at full concurrency. Overhead = wall - ideal, as a share of the wall (target < 10%); wall
target < 3600 s. Also: runs, partitions materialized (per asset, must equal the teams), the chat calls the
server saw (must equal teams x traces), summary events written, tick-to-first-run-start latency, the
server's peak of calls in flight, where the time went per run (queued, start-up, sampling, pool wait,
summarizing, writing the summaries, the rest) from the runs' step events, what the steps' pacers did (their
materializations' metadata), the overhead split by cause (``overhead_row``), and the machine's CPU by kind
of process (``_common.CpuMeter``, from ``/proc``).

Configuration (``FULL``; written down, as the target is "concurrency as configured"): 1,000 teams x 10
traces = 10,000 calls; sharded, 20 runs of 50 teams; ``max_concurrent_runs`` 6 and ``llm`` pool 4 (two
runs start up and sample while four summarize; measured with 8, the hand-overs were quicker but every step
slower on the shared cores: 385.9 s against 357.2 s; with 10, 481.7 s; production's ratio is 20 / 8, one
core per run pod); 10 calls in flight per run -> 40 at a time, ideal 250 s; the deployed daemon threads
(``deploy/dagster.yaml``) and Dagster switches (``_common.deployed_dagster_env``: the planned events for the
daemon, the event batch size for the runs). ``QUICK``: 40 teams, 4 runs of 10, 4 runs / pool 4.

What changed the figure (December 2026, this 2-core machine, nothing else running; each row of
bench/README.md's history is one run of this benchmark):

* creating the tick's runs: one ``ASSET_MATERIALIZATION_PLANNED`` event per partition and asset, each
  through new PostgreSQL connections, made the run queue pace the hour (486 s to submit 20 runs, wall 728.5 s,
  65.7% overhead); the daemon's submit threads and ``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS``
  (deploy/) create them in 8 s: wall 405-430 s (38-42%);
* the end of each step: a ranged step's 50 materializations (x 3 assets) were 150 writes through new
  connections, 5.4 s per run inside the summaries step's pool slot; ``DAGSTER_EVENT_BATCH_SIZE`` (deploy/)
  writes a step's in one statement: 1.6 s. The summaries step now starts its calls where the last step on
  the endpoint left them (``pacing.warm_start``), and run processes no longer import scikit-learn (1.5 s of
  CPU each, only the daily cluster runs use it): wall 357 s (30%);
* the rest is this machine: the run processes, the simulated LLM server, ClickHouse's HTTP front and
  PostgreSQL share 2 cores (73% busy over the hour), so a summaries step takes ~60 s for its 50 s of calls;
  alone on the machine the same step (500 traces, 10 in flight, warm start) takes 52.3 s. A run process
  costs ~20 s of CPU, a quarter of it loading the code location (Dagster, the definitions, openai, boto3).

Run standalone: ``python bench/bench_scale_hour.py [--quick]``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from _common import (
    CpuMeter,
    Row,
    bench_main,
    deployed_dagster_env,
    environment,
    instance_growth,
    instance_size,
    row,
)
from _servers import OpenAIServerProcess

from trace_summaries.demo import seed_store
from trace_summaries.partitions import hour_key
from trace_summaries.scheduling.run_plan import last_complete_hour
from trace_summaries.store import TraceStore
from trace_summaries_harness.clickhouse_http import clickhouse_http_server
from trace_summaries_harness.dagster_stack import PROJECT, Stack, StackError, dagster_stack, start_daemon
from trace_summaries_harness.ports import wait_until
from trace_summaries_harness.postgres import postgres_server

SCHEDULE = "hourly_trace_summaries_schedule"
ASSETS = ("sampled_traces", "trace_summaries", "embedding_requests")
LLM_LATENCY_S = 1.0
TARGET_OVERHEAD = 0.10
TARGET_WALL_S = 3600.0
# The new daemon (code server included) is up well within this on a loaded 2-core machine.
TICK_LEAD_S = 60
READY_TIMEOUT_S = 300
RUNS_TIMEOUT_S = 3600.0
POLL_S = 2.0
# The LLM step's pacing, from its materializations' metadata (summarize/pacing.py, the asset's figures).
PACER_FIGURES = (
    "llm_concurrency_final",
    "llm_concurrency_decreases",
    "llm_latency_p50_s",
    "llm_latency_p95_s",
)


@dataclass(frozen=True)
class Sizing:
    teams: int
    traces: int  # per team, in the one hour
    shard_size: int  # teams per ranged run
    max_concurrent_runs: int  # dagster.yaml concurrency.runs.max_concurrent_runs
    llm_pool: int  # dagster.yaml concurrency.pools.default_limit (the `llm` pool)
    llm_concurrency: int  # TRACE_SUMMARIES_LLM_CONCURRENCY: calls in flight per run

    @property
    def runs(self) -> int:
        return -(-self.teams // self.shard_size)

    @property
    def calls(self) -> int:
        return self.teams * self.traces

    @property
    def in_flight(self) -> int:
        return min(self.llm_pool, self.max_concurrent_runs, self.runs) * self.llm_concurrency

    @property
    def ideal_s(self) -> float:
        return self.calls * LLM_LATENCY_S / self.in_flight

    def describe(self) -> str:
        return (
            f"{self.teams} teams x {self.traces} traces, sharded {self.runs} runs of {self.shard_size}, "
            f"max_concurrent_runs {self.max_concurrent_runs}, llm pool {self.llm_pool}, "
            f"LLM concurrency {self.llm_concurrency}/run -> {self.in_flight} calls in flight; "
            "deploy/'s daemon settings and Dagster switches (planned events, event batches)"
        )


# 10,000 calls at 40 in flight: an ideal of 250 s. 20 runs of 50 teams (5 waves of 4 in the llm pool), and
# 6 run slots for 4 pool slots, so the next runs start up and sample while 4 others summarize.
FULL = Sizing(teams=1000, traces=10, shard_size=50, max_concurrent_runs=6, llm_pool=4, llm_concurrency=10)
QUICK = Sizing(teams=40, traces=10, shard_size=10, max_concurrent_runs=4, llm_pool=4, llm_concurrency=10)


def log(message: str) -> None:
    print(f"[bench_scale_hour {datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def write_instance_yaml(home: Path, sizing: Sizing) -> None:
    """deploy/dagster.yaml with this benchmark's run concurrency and llm pool limit."""
    config = yaml.safe_load((PROJECT / "deploy" / "dagster.yaml").read_text())
    config["concurrency"]["runs"]["max_concurrent_runs"] = sizing.max_concurrent_runs
    config["concurrency"]["pools"]["default_limit"] = sizing.llm_pool
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


@contextlib.contextmanager
def open_instance(env: dict[str, str]) -> Iterator[Any]:
    """The Postgres-backed instance opened in this process (its dagster.yaml reads the environment)."""
    import dagster as dg

    with environment(env), dg.DagsterInstance.get() as instance:
        yield instance


def schedule_state(instance: Any) -> Any:
    from dagster._core.scheduler.instigation import InstigatorType

    states = instance.all_instigator_state(instigator_type=InstigatorType.SCHEDULE)
    return next((state for state in states if state.name == SCHEDULE), None)


def next_tick(now: datetime) -> datetime:
    ahead = now + timedelta(seconds=TICK_LEAD_S)
    return ahead.replace(second=0, microsecond=0) + timedelta(minutes=1)


def seed(store: TraceStore, sizing: Sizing, hour: datetime) -> float:
    started = time.monotonic()
    seed_store(
        store,
        list(range(1, sizing.teams + 1)),
        [hour],
        sizing.traces,
        progress=False,
        neighbours=False,
        include_non_ai=False,
        oversized_fraction=0.0,
    )
    return time.monotonic() - started


def count_summaries(store: TraceStore) -> int:
    """Summary events in the store (only the tick's hour is summarized)."""
    with store.session() as client:
        rows = client.query("SELECT count() FROM events WHERE event = '$ai_trace_summary'").result_rows
    return int(rows[0][0])


def roll_out_daemon(stack: Stack, log_path: Path) -> None:
    [old] = [process for process in stack.processes if process.name == "daemon"]
    old.stop()
    stack.processes[stack.processes.index(old)] = start_daemon(stack, log_path)


def wait_for_tick_runs(
    stack: Stack, instance: Any, state: Any, tick_ts: float, deadline: float, meter: CpuMeter
) -> Any:
    """The tick at ``tick_ts`` once it has launched its runs and every run has finished (the CPU meter
    sampled at each look)."""
    import dagster as dg
    from dagster._core.scheduler.instigation import TickStatus

    done_statuses = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
    found: dict[str, Any] = {}

    def done() -> bool:
        stack.check_alive()
        meter.sample()
        if "tick" not in found:
            ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=5)
            for tick in ticks:
                if tick.timestamp == tick_ts and tick.status in (TickStatus.SUCCESS, TickStatus.FAILURE):
                    if tick.status == TickStatus.FAILURE:
                        raise StackError(f"the tick failed: {tick.error}\n{stack.logs()}")
                    found["tick"] = tick
                    log(f"tick evaluated: {len(tick.run_ids)} runs requested")
            if "tick" not in found:
                return False
        runs = instance.get_runs(filters=dg.RunsFilter(run_ids=list(found["tick"].run_ids)))
        finished = sum(1 for run in runs if run.status in done_statuses)
        if finished != found.get("finished"):
            found["finished"] = finished
            log(f"{finished}/{len(found['tick'].run_ids)} runs finished")
        return len(runs) == len(found["tick"].run_ids) and finished == len(runs)

    wait_until(
        done, timeout_s=max(1.0, deadline - time.monotonic()), what="the tick's runs", interval_s=POLL_S
    )
    return found["tick"]


def run_timings(instance: Any, run_ids: list[str]) -> list[dict[str, float]]:
    """Per run: created, started, ended, and each step's start and end (from the event log)."""
    import dagster as dg
    from dagster._core.events import DagsterEventType

    records = instance.get_run_records(filters=dg.RunsFilter(run_ids=run_ids))
    kinds = {
        DagsterEventType.STEP_START,
        DagsterEventType.STEP_SUCCESS,
        DagsterEventType.STEP_FAILURE,
        DagsterEventType.STEP_OUTPUT,
        DagsterEventType.ASSET_MATERIALIZATION,
    }
    timings: list[dict[str, float]] = []
    for record in records:
        timing: dict[str, float] = {
            "created": record.create_timestamp.timestamp(),
            "start": record.start_time or 0.0,
            "end": record.end_time or 0.0,
            "failed": float(record.dagster_run.status != dg.DagsterRunStatus.SUCCESS),
            "teams": float(record.dagster_run.tags.get("trace_summaries/teams", 0)),
        }
        for entry in instance.all_logs(record.dagster_run.run_id, of_type=kinds):
            step = entry.step_key or ""
            kind = entry.dagster_event_type
            if kind == DagsterEventType.ASSET_MATERIALIZATION:
                # The step's pacing figures (the same on each of its partitions' materializations).
                metadata = entry.asset_materialization.metadata if entry.asset_materialization else {}
                for name in PACER_FIGURES:
                    if name in metadata:
                        timing[f"{step}:{name}"] = float(metadata[name].value)
                continue
            # The step's output is returned when its work is done; the IO manager writes it after that.
            if kind == DagsterEventType.STEP_OUTPUT:
                timing.setdefault(f"{step}:output", entry.timestamp)
            else:
                which = "start" if kind == DagsterEventType.STEP_START else "end"
                timing[f"{step}:{which}"] = entry.timestamp
        timings.append(timing)
    return timings


def materialized(instance: Any, hour_prefix: str) -> dict[str, int]:
    import dagster as dg

    return {
        asset: sum(
            1
            for key in instance.get_materialized_partitions(dg.AssetKey(asset))
            if str(key).startswith(hour_prefix)
        )
        for asset in ASSETS
    }


def breakdown(timings: list[dict[str, float]]) -> dict[str, float]:
    """Mean seconds per run in each phase, over all runs."""
    phases: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        phases.setdefault(name, []).append(value)

    for t in timings:
        sample_start = t.get("sampled_traces:start", t["start"])
        sample_end = t.get("sampled_traces:end", sample_start)
        llm_start = t.get("trace_summaries:start", sample_end)
        llm_end = t.get("trace_summaries:end", llm_start)
        add("queued+launch", t["start"] - t["created"])
        add("start-up", sample_start - t["start"])
        add("sampling", sample_end - sample_start)
        add("pool wait", llm_start - sample_end)
        llm_output = t.get("trace_summaries:output", llm_end)
        add("summarize", llm_output - llm_start)
        add("write", llm_end - llm_output)
        add("after", t["end"] - llm_end)
    return {name: sum(values) / len(values) for name, values in phases.items()}


def measure(tmp: Path, sizing: Sizing) -> dict[str, Any]:
    started = time.monotonic()
    now = datetime.now(UTC)
    placeholder_minute = (now.minute + 30) % 60
    teams = [str(team) for team in range(1, sizing.teams + 1)]
    figures: dict[str, Any] = {}
    with contextlib.ExitStack() as services:
        pg = services.enter_context(postgres_server())
        clickhouse = services.enter_context(clickhouse_http_server(tmp / "clickhouse"))
        llm = services.enter_context(OpenAIServerProcess(latency_s=LLM_LATENCY_S))
        store = TraceStore(clickhouse.dsn)
        store.ensure_schema()
        # The hour the tick will summarize, if it comes within the next few minutes (checked again below).
        hour = last_complete_hour(next_tick(now + timedelta(seconds=90)), timedelta(0))
        figures["seed_s"] = seed(store, sizing, hour)
        log(
            f"seeded {sizing.teams} teams x {sizing.traces} traces for {hour:%Y-%m-%d %H}:00 in "
            f"{figures['seed_s']:.1f} s"
        )

        home = tmp / "dagster_home"
        write_instance_yaml(home, sizing)
        env = (
            pg.instance_env(home)
            | {
                "TRACE_SUMMARIES_CLICKHOUSE_DSN": clickhouse.dsn,
                "TRACE_SUMMARIES_ALLOWED_TEAM_IDS": ",".join(teams),
                # The partitions start at the summarized hour: the daily cluster schedule (01:30 UTC) then
                # skips yesterday instead of launching one run per team (1,000 runs) if the bench spans 01:30.
                "TRACE_SUMMARIES_START_DATE": hour.strftime("%Y-%m-%dT%H:%M"),
                "TRACE_SUMMARIES_SCHEDULE_MINUTE": str(placeholder_minute),
                "TRACE_SUMMARIES_SCHEDULE_MODE": "sharded",
                "TRACE_SUMMARIES_SHARD_SIZE": str(sizing.shard_size),
                "TRACE_SUMMARIES_MAX_TRACES": str(sizing.traces),
                "TRACE_SUMMARIES_LLM_CONCURRENCY": str(sizing.llm_concurrency),
                "OPENAI_BASE_URL": llm.base_url,
                "OPENAI_API_KEY": "bench-scale-hour",
            }
            | deployed_dagster_env()
        )
        # The instance's schema is created here (not by webserver and daemon at once), and the teams added.
        with open_instance(env) as instance:
            instance.add_dynamic_partitions("teams", teams)
        stack = services.enter_context(dagster_stack(tmp / "stack", env))
        instance = services.enter_context(open_instance(env))

        def ready_for_tick() -> bool:
            stack.check_alive()
            return schedule_state(instance) is not None

        wait_until(ready_for_tick, timeout_s=READY_TIMEOUT_S, what="the schedule's state", interval_s=1.0)
        state = schedule_state(instance)
        figures["stack_s"] = time.monotonic() - started
        tick = next_tick(datetime.now(UTC))
        tick_hour = last_complete_hour(tick, timedelta(0))
        if tick_hour != hour:  # crossed an hour boundary meanwhile: seed the hour the tick summarizes
            hour = tick_hour
            figures["seed_s"] += seed(store, sizing, hour)
            tick = next_tick(datetime.now(UTC))
            if last_complete_hour(tick, timedelta(0)) != hour:
                raise RuntimeError("the tick's hour moved twice")
        stack.env["TRACE_SUMMARIES_SCHEDULE_MINUTE"] = str(tick.minute)
        roll_out_daemon(stack, tmp / "stack" / "daemon-tick-minute.log")
        rolled_out = time.time()
        log(f"stack ready in {figures['stack_s']:.0f} s; tick at {tick:%H:%M:%S}, {sizing.describe()}")

        # When the new daemon is up: its first heartbeat under a new daemon id.
        old_ids = {hb.daemon_id for hb in instance.get_daemon_heartbeats().values()}

        def new_daemon_up() -> bool:
            stack.check_alive()
            return any(
                hb.daemon_id not in old_ids and hb.timestamp >= rolled_out
                for hb in instance.get_daemon_heartbeats().values()
            )

        wait_until(new_daemon_up, timeout_s=READY_TIMEOUT_S, what="the new daemon", interval_s=1.0)
        figures["daemon_up_before_tick_s"] = tick.timestamp() - time.time()
        llm.reset_stats()
        meter = CpuMeter()
        meter.start()
        size_before = instance_size(pg)
        load_before = os.getloadavg()[0]
        tick_record = wait_for_tick_runs(
            stack,
            instance,
            state,
            tick.timestamp(),
            time.monotonic() + TICK_LEAD_S + 120 + RUNS_TIMEOUT_S,
            meter,
        )
        figures["cpu"] = meter.by_category()
        figures["machine_busy"] = meter.machine_busy()
        load_after = os.getloadavg()[0]
        figures["instance_growth"] = instance_growth(size_before, instance_size(pg))
        run_ids = list(tick_record.run_ids)
        timings = run_timings(instance, run_ids)
        figures["server"] = llm.stats()
        figures["materialized"] = materialized(instance, hour_key(hour))
        figures["summaries"] = count_summaries(store)
        figures["hour"] = hour
        figures["tick_ts"] = tick.timestamp()
        figures["tick_end_ts"] = getattr(tick_record, "end_timestamp", None) or tick_record.timestamp
        figures["timings"] = timings
        figures["load"] = (load_before, load_after)
        # Stop the stack before PostgreSQL: its processes hold connections to it.
        services.close()
    figures["total_s"] = time.monotonic() - started
    return figures


def run(quick: bool = False) -> list[Row]:
    sizing = QUICK if quick else FULL
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-hour-"))
    try:
        figures = measure(tmp, sizing)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    timings = figures["timings"]
    tick_ts = figures["tick_ts"]
    failed = int(sum(t["failed"] for t in timings))
    last_end = max(t["end"] for t in timings)
    first_start = min(t["start"] for t in timings)
    first_created = min(t["created"] for t in timings)
    last_created = max(t["created"] for t in timings)
    wall = last_end - tick_ts
    ideal = sizing.ideal_s
    overhead = (wall - ideal) / wall
    server = figures["server"]
    phases = breakdown(timings)
    llm_busy = [
        t["trace_summaries:end"] - t["trace_summaries:start"] for t in timings if "trace_summaries:end" in t
    ]
    pool_slots = min(sizing.llm_pool, sizing.max_concurrent_runs, sizing.runs)
    occupancy = sum(llm_busy) / (wall * pool_slots)
    materialized_counts = figures["materialized"]
    complete = (
        failed == 0
        and all(count == sizing.teams for count in materialized_counts.values())
        and server["chat_requests"] == sizing.calls
        and figures["summaries"] == sizing.calls
    )
    log(
        f"done in {figures['total_s']:.0f} s: wall {wall:.1f} s, ideal {ideal:.1f} s, overhead {overhead:.1%}"
    )
    return [
        row(
            f"{sizing.teams} teams x 1 h: wall time, tick to last run end",
            wall,
            "s",
            baseline=ideal,
            target=f"< {TARGET_WALL_S:.0f} s",
            met=wall < TARGET_WALL_S and complete,
            note=(
                f"{sizing.describe()}; baseline: the ideal LLM-bound wall, {sizing.calls} calls x "
                f"{LLM_LATENCY_S:g} s / {sizing.in_flight} in flight; 1-min load "
                f"{figures['load'][0]:.1f} before, {figures['load'][1]:.1f} after"
            ),
            digits=1,
        ),
        row(
            "orchestration overhead (wall - ideal) / wall",
            overhead * 100,
            "%",
            target=f"< {TARGET_OVERHEAD:.0%}",
            met=overhead < TARGET_OVERHEAD,
            note=f"{wall - ideal:.1f} s over the ideal {ideal:.1f} s",
            digits=1,
        ),
        row(
            "runs launched by the tick",
            len(timings),
            "runs",
            target=f"= {sizing.runs}, all succeeded",
            met=len(timings) == sizing.runs and failed == 0,
            note=f"{failed} not succeeded; schedule mode sharded, shard size {sizing.shard_size}",
        ),
        row(
            "partitions materialized",
            min(materialized_counts.values()),
            "partitions",
            target=f"= {sizing.teams} per asset",
            met=all(count == sizing.teams for count in materialized_counts.values()),
            note=", ".join(f"{asset} {count}" for asset, count in materialized_counts.items()),
        ),
        row(
            "LLM calls the server saw",
            server["chat_requests"],
            "calls",
            target=f"= {sizing.calls} (teams x traces)",
            met=server["chat_requests"] == sizing.calls,
            note=(
                f"{server['errors']} errors; {figures['summaries']} summary events written; peak in flight "
                f"{server['max_in_flight']} (configured {sizing.in_flight})"
            ),
        ),
        row(
            "daemon latency: tick to first run started",
            first_start - tick_ts,
            "s",
            note=(
                f"runs created (submitted to the queue) {first_created - tick_ts:.1f} to "
                f"{last_created - tick_ts:.1f} s after the tick; "
                f"tick completed {figures['tick_end_ts'] - tick_ts:.1f} s after its scheduled time; "
                f"new daemon up {figures['daemon_up_before_tick_s']:.0f} s before the tick"
            ),
            digits=1,
        ),
        row(
            "per run, mean seconds by phase",
            sum(phases.values()),
            "s",
            note=", ".join(f"{name} {value:.1f}" for name, value in phases.items())
            + f"; summarize steps busy {sum(llm_busy):.0f} run-s = {occupancy:.0%} of the llm pool's "
            f"{pool_slots} slots x the wall; {pacing_note(timings, sizing)}",
            digits=1,
        ),
        overhead_row(timings, wall, sizing),
        cpu_row(figures["cpu"], figures["machine_busy"], sizing),
        *growth_rows(figures["instance_growth"], sizing),
    ]


def overhead_row(timings: list[dict[str, float]], wall: float, sizing: Sizing) -> Row:
    """Where the overhead (wall - ideal) went, in seconds of the wall: the llm pool's slots x the wall,
    split into the calls' ideal time, the summarize steps' time beyond it (the pacer's start, calls in
    flight below the limit: a starved process, the pacer lowering its limit), the summary writes (the IO
    manager, inside the step and so inside its pool slot), and the slots' idle time (before the first
    steps, hand-overs between runs, the tail)."""
    slots = min(sizing.llm_pool, sizing.max_concurrent_runs, sizing.runs)
    steps = [t for t in timings if "trace_summaries:end" in t]
    summarize = sum(
        t.get("trace_summaries:output", t["trace_summaries:end"]) - t["trace_summaries:start"] for t in steps
    )
    write = sum(
        t["trace_summaries:end"] - t.get("trace_summaries:output", t["trace_summaries:end"]) for t in steps
    )
    ideal_slot_s = sizing.calls * LLM_LATENCY_S / sizing.llm_concurrency
    idle = slots * wall - summarize - write
    parts = {
        "summarize beyond the calls' time": (summarize - ideal_slot_s) / slots,
        "writes": write / slots,
        "pool slots idle": idle / slots,
    }
    return row(
        "overhead by cause",
        wall - sizing.ideal_s,
        "s",
        note=", ".join(f"{name} {seconds:.1f} s ({seconds / wall:.1%})" for name, seconds in parts.items())
        + f" of the wall, per slot of the llm pool's {slots}",
        digits=1,
    )


def cpu_row(cpu: dict[str, float], busy: float, sizing: Sizing) -> Row:
    """How busy the machine's cores were from the tick's wait to the last run's end, and who used them."""
    runs = cpu.get("run workers", 0.0)
    return row(
        "machine CPU busy while the hour ran",
        busy * 100,
        "%",
        note=f"{os.cpu_count()} cores; CPU seconds by process: "
        + ", ".join(f"{name} {seconds:.0f}" for name, seconds in cpu.items())
        + f"; run workers {runs * 1000 / sizing.calls:.1f} ms of CPU per trace (every step and start-up)",
        digits=1,
    )


def pacing_note(timings: list[dict[str, float]], sizing: Sizing) -> str:
    """What the LLM steps' pacers did: the limit they ended at, how often they lowered it, the latency."""

    def values(name: str) -> list[float]:
        return [t[f"trace_summaries:{name}"] for t in timings if f"trace_summaries:{name}" in t]

    finals, decreases = values("llm_concurrency_final"), values("llm_concurrency_decreases")
    p50, p95 = values("llm_latency_p50_s"), values("llm_latency_p95_s")
    if not finals:
        return "no pacing figures"
    return (
        f"pacer: final limit {min(finals):.0f}-{max(finals):.0f} of {sizing.llm_concurrency}, "
        f"{sum(decreases):.0f} decreases in {len(decreases)} steps; call latency p50 "
        f"{sum(p50) / len(p50):.2f} s, p95 {sum(p95) / len(p95):.2f} s (mean over steps)"
    )


def growth_rows(growth: dict[str, tuple[int, int]], sizing: Sizing) -> list[Row]:
    """What the scheduled hour added to the instance's database, per hour and per day at this size."""
    rows_added = sum(rows for rows, _ in growth.values())
    bytes_added = sum(size for _, size in growth.values())
    partitions = sizing.teams * len(ASSETS)
    top = [f"{table} {rows:+,}" for table, (rows, _) in growth.items() if rows][:6]
    return [
        row(
            "instance growth per scheduled hour: rows",
            rows_added,
            "rows",
            note=f"{rows_added / partitions:.1f} per asset partition; x 24 = {rows_added * 24:,} a day; "
            + ", ".join(top),
            digits=0,
        ),
        row(
            "instance growth per scheduled hour: bytes",
            bytes_added / 1e6,
            "MB",
            note=f"tables with their indexes; x 24 = {bytes_added * 24 / 1e9:.2f} GB a day before retention "
            "(runs and their event rows go after TRACE_SUMMARIES_RUN_RETENTION_DAYS; asset records stay)",
            digits=1,
        ),
    ]


if __name__ == "__main__":
    bench_main(run, __doc__)
