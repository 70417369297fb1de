"""15. Scale: how the Dagster side holds up as teams and days of history grow (100 / 1,000 / 10,000 teams
x 7 / 90 / 365 days of hourly partitions).

Each size gets a fresh production-shaped instance: PostgreSQL (``trace_summaries_harness/postgres.py``) with
``deploy/dagster.yaml`` (QueuedRunCoordinator, pools, retention) except ``max_concurrent_runs: 0``, so the
runs a tick or a backfill creates stay queued and what is timed is orchestration, not pipeline work; the
real ``dagster-webserver`` and ``dagster-daemon`` on the repository's ``workspace.yaml`` with
``TRACE_SUMMARIES_START_DATE`` that many days back, the teams as the allowlist, sharded scheduling (50 teams a
run, the default). Measured at each size:

- **team sensor tick**: the daemon's own tick of ``team_partitions_sensor`` (end - start, from its tick
  record), with every team already registered (the steady state); registering all teams at once (the first
  tick's write) is timed in process beside it.
- **schedule tick**: the daemon's real tick of ``hourly_trace_summaries_schedule`` in sharded mode (the daemon
  is started with the schedule minute set to the coming minute), evaluation plus creating its runs.
- **asset page and materialize dialog**: the GraphQL documents the UI itself sends, read from the
  webserver's bundled UI (``dagster_webserver/webapp``) with their fragments: the asset page
  (``AssetViewDefinitionQuery``, ``PartitionHealthQuery``, ``AssetPartitionDetailQuery``) and the materialize
  dialog (``LaunchAssetLoaderQuery``, ``LaunchAssetWarningsQuery``, ``PartitionHealthQuery`` of each asset).
  Each is sent cold once, then three times; the slowest warm median is reported.
- **backfill launch**: ``launchPartitionBackfill`` (the UI's mutation) of the last 24 hours x every team for
  the three pipeline assets: the mutation's answer, then until the backfill daemon has created the backfill's
  first run and all of its runs (``BackfillPolicy.single_run``: one run per team), given a bounded wait.
- **memory**: peak RSS (VmHWM) of the webserver and of the daemon, each with its code server.
- **status cache rebuild**: adding one team changes the partitions definition's id, so Dagster throws away
  every asset's partition-status cache and the next page load rebuilds it from the event log.

History is recorded in bulk, not run (running 8.76 million partitions is out of reach here): the last
``RECENT_HOURS`` hours x every team as real materialization events of ``trace_summaries`` (batched into the
event log), and every older hour as materialized in that asset's partition-status cache (the value Dagster
keeps per asset and reads on every status query), up to ``CACHE_MAX_KEYS`` keys; above that the cache holds
only the real events and the row says so. The instance's growth per scheduled hour is measured on real runs
by benchmark 16.

Run standalone: ``python bench/bench_scale.py [--quick] [--sizes 100x7,1000x365]``.
"""

from __future__ import annotations

import argparse
import codecs
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from _common import Row, deployed_dagster_env, environment, print_rows, row

from trace_summaries.partitions import hour_key, team_window_key
from trace_summaries_harness.dagster_stack import (
    LOCATION,
    REPOSITORY,
    Stack,
    _descendants,
    dagster_stack,
    start_daemon,
)
from trace_summaries_harness.ports import wait_until
from trace_summaries_harness.postgres import postgres_server

PROJECT = Path(__file__).resolve().parents[1]
# (teams, days, deployed); the 1,000 x 7 baseline runs with Dagster's defaults, for the ratios of the fixes.
SIZES_FULL = [(1_000, 7, False)] + [(t, d, True) for t in (100, 1_000, 10_000) for d in (7, 90, 365)]
SIZES_QUICK = [(20, 3, True)]
ASSETS = ("sampled_traces", "trace_summaries", "embedding_requests")
PAGE_ASSET = "trace_summaries"
RECENT_HOURS = 3
BACKFILL_HOURS = 24
# A fully materialized history is kept in the status cache up to this many keys (1,000 teams x 365 days is
# 8.76 M); 10,000 teams x 90 days (21.6 M) would need several GB in this process to build.
CACHE_MAX_KEYS = 9_000_000
BACKFILL_WAIT_S = 120.0
TICK_WAIT_S = 300.0
EVENT_BATCH = 2_000
SHARD_SIZE = 50
# A GraphQL query slower than this cold is timed once more, not three times.
REPEAT_UNDER_S = 20.0

TARGETS_AT = (1_000, 365)
TARGETS = {
    "schedule tick": 10.0,
    "team sensor tick": 10.0,
    "backfill launch": 30.0,
    "asset page": 3.0,
    "materialize dialog": 3.0,
}

TICKS_QUERY = """
query Ticks($sensor: SensorSelector!, $schedule: ScheduleSelector!) {
  sensorOrError(sensorSelector: $sensor) {
    __typename ... on Sensor { sensorState { ticks(limit: 10) { status timestamp endTimestamp runIds } } }
  }
  scheduleOrError(scheduleSelector: $schedule) {
    __typename ... on Schedule { scheduleState { ticks(limit: 10) { status timestamp endTimestamp runIds } } }
  }
}
"""
STATS_QUERY = """
query Stats($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    __typename ... on AssetNode { partitionStats { numMaterialized numPartitions numFailed } }
  }
}
"""


# -- the UI's own GraphQL documents -------------------------------------------------------------------------


@cache
def ui_documents() -> dict[tuple[str, str], str]:
    """Every ``query``/``mutation``/``fragment`` definition in the webserver's bundled UI, by (kind, name)."""
    import dagster_webserver

    root = Path(dagster_webserver.__file__).parent / "webapp" / "build" / "_next" / "static" / "chunks"
    literal = re.compile(r"\"((?:[^\"\\]|\\.)*)\"|'((?:[^'\\]|\\.)*)'")
    header = re.compile(r"(query|fragment|mutation) ([A-Za-z0-9_]+)")
    found: dict[tuple[str, str], str] = {}
    for path in sorted(root.rglob("*.js")):
        text = path.read_text(errors="ignore")
        for match in re.finditer(r"[\"']\\n\s*(?:query|fragment|mutation) [A-Za-z0-9_]+", text):
            quoted = literal.match(text, match.start())
            if quoted is None:
                continue
            raw = quoted.group(1) if quoted.group(1) is not None else quoted.group(2)
            body = codecs.decode(raw, "unicode_escape")  # the UI's documents are ASCII
            for part in re.split(r"\n\s*(?=(?:query|fragment|mutation) [A-Za-z0-9_]+)", body):
                head = header.match(part)
                if head:
                    found.setdefault((head.group(1), head.group(2)), part)
    return found


def ui_query(name: str) -> str:
    """The UI's ``query <name>`` with every fragment it spreads, as one GraphQL document."""
    documents = ui_documents()
    parts = [documents[("query", name)]]
    seen: set[str] = set()
    pending = list(parts)
    while pending:
        for fragment in re.findall(r"\.\.\.([A-Za-z_][A-Za-z0-9_]*)", pending.pop()):
            if fragment == "on" or fragment in seen:
                continue
            seen.add(fragment)
            text = documents[("fragment", fragment)]
            parts.append(text)
            pending.append(text)
    return "\n".join(parts)


# -- one size -----------------------------------------------------------------------------------------------


@dataclass
class Size:
    teams: int
    days: int
    # False: Dagster's defaults instead of deploy/'s daemon settings and environment (the baseline).
    deployed: bool = True
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.teams:,} teams x {self.days} d" + ("" if self.deployed else " (Dagster defaults)")


DAEMON_SETTINGS = ("schedules", "sensors", "backfills")


def write_instance_yaml(home: Path, *, deployed: bool) -> None:
    """deploy/dagster.yaml holding every run in the queue; without its daemon settings (``DAEMON_SETTINGS``:
    submitting threads) for the Dagster-defaults baseline."""
    config = yaml.safe_load((PROJECT / "deploy" / "dagster.yaml").read_text())
    config["concurrency"]["runs"]["max_concurrent_runs"] = 0
    if not deployed:
        for key in DAEMON_SETTINGS:
            config.pop(key, None)
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def team_hour_def(start: datetime) -> dg.MultiPartitionsDefinition:
    """The pipeline's partitions (``defs/partition_sets.py``) for a start date, built here as the stack's code
    server builds them from ``TRACE_SUMMARIES_START_DATE``; the cache id check below proves they agree."""
    return dg.MultiPartitionsDefinition(
        {
            "hour": dg.HourlyPartitionsDefinition(start_date=hour_key(start), timezone="UTC"),
            "team": dg.DynamicPartitionsDefinition(name="teams"),
        }
    )


def record_recent(instance: dg.DagsterInstance, hours: list[str], teams: list[str], run_id: str) -> int:
    """Materializations of ``trace_summaries`` for ``hours`` x ``teams``, stored in batches (as a run's step
    would store them, with the multi-partition dimension tags)."""
    from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
    from dagster._core.events.log import EventLogEntry

    batch: list[EventLogEntry] = []
    stored = 0
    now = time.time()
    for hour in hours:
        for team in teams:
            materialization = dg.AssetMaterialization(
                asset_key=PAGE_ASSET,
                partition=team_window_key(hour, team),
                tags={"dagster/partition/hour": hour, "dagster/partition/team": team},
                metadata={"events_written": 5, "traces_sampled": 5},
            )
            event = DagsterEvent(
                event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
                job_name="trace_summaries_job",
                step_key=PAGE_ASSET,
                event_specific_data=StepMaterializationData(materialization),
            )
            batch.append(
                EventLogEntry(
                    user_message="",
                    level=20,
                    job_name="trace_summaries_job",
                    run_id=run_id,
                    error_info=None,
                    timestamp=now,
                    step_key=PAGE_ASSET,
                    dagster_event=event,
                )
            )
            if len(batch) >= EVENT_BATCH:
                instance.event_log_storage.store_event_batch(batch)
                stored += len(batch)
                batch = []
    if batch:
        instance.event_log_storage.store_event_batch(batch)
        stored += len(batch)
    return stored


def write_history_cache(
    instance: dg.DagsterInstance, partitions: dg.MultiPartitionsDefinition, hours: list[str], teams: list[str]
) -> int:
    """Writes ``trace_summaries``' partition-status cache as if every (hour, team) had been materialized,
    on top of the real events already stored (its storage id is theirs, so only later events are added)."""
    from dagster._core.definitions.partitions.context import partition_loading_context
    from dagster._core.storage.partition_status_cache import AssetStatusCacheValue

    key = dg.AssetKey(PAGE_ASSET)
    [record] = instance.get_asset_records([key])
    latest = record.asset_entry.last_materialization_storage_id
    with partition_loading_context(dynamic_partitions_store=instance):
        materialized = partitions.empty_subset().with_partition_keys(
            team_window_key(hour, team) for hour in hours for team in teams
        )
        empty = partitions.empty_subset().serialize()
        value = AssetStatusCacheValue(
            latest_storage_id=latest,
            partitions_def_id=partitions.get_serializable_unique_identifier(),
            serialized_materialized_partition_subset=materialized.serialize(),
            serialized_failed_partition_subset=empty,
            serialized_in_progress_partition_subset=empty,
        )
    instance.update_asset_cached_status_data(key, value)
    return len(value.serialized_materialized_partition_subset or "")


def tree_memory_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) in MB of a process and its descendants (its code server, run workers)."""
    rss = peak = 0.0
    for each in [pid, *_descendants(pid)]:
        try:
            status = Path(f"/proc/{each}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak += int(line.split()[1]) / 1024
    return rss, peak


def timed_graphql(stack: Stack, query: str, variables: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    data = stack.graphql(query, variables, timeout_s=600)
    elapsed = time.perf_counter() - started
    text = json.dumps(data)
    if '"PythonError"' in text:
        raise RuntimeError(f"GraphQL error: {text[:2000]}")
    return elapsed, data


def page_queries(stack: Stack, latest_key: str) -> dict[str, list[tuple[str, str, dict[str, Any]]]]:
    asset_key = {"path": [PAGE_ASSET]}
    return {
        "asset page": [
            ("AssetViewDefinitionQuery", ui_query("AssetViewDefinitionQuery"), {"assetKey": asset_key}),
            ("PartitionHealthQuery", ui_query("PartitionHealthQuery"), {"assetKey": asset_key}),
            (
                "AssetPartitionDetailQuery",
                ui_query("AssetPartitionDetailQuery"),
                {"assetKey": asset_key, "partitionKey": latest_key},
            ),
        ],
        "materialize dialog": [
            (
                "LaunchAssetLoaderQuery",
                ui_query("LaunchAssetLoaderQuery"),
                {"assetKeys": [{"path": [a]} for a in ASSETS]},
            ),
            ("LaunchAssetWarningsQuery", ui_query("LaunchAssetWarningsQuery"), {"upstreamAssetKeys": []}),
            *[
                (f"PartitionHealthQuery {a}", ui_query("PartitionHealthQuery"), {"assetKey": {"path": [a]}})
                for a in ASSETS
            ],
        ],
    }


def measure_pages(stack: Stack, size: Size, latest_key: str) -> None:
    # The same document with the same variables on both pages is timed once (its figures are reused).
    seen: dict[str, tuple[float, float]] = {}
    for page, queries in page_queries(stack, latest_key).items():
        cold: dict[str, float] = {}
        warm: dict[str, float] = {}
        for name, query, variables in queries:
            key = query + json.dumps(variables, sort_keys=True)
            if key in seen:
                cold[name], warm[name] = seen[key]
                continue
            cold[name], _ = timed_graphql(stack, query, variables)
            if cold[name] > REPEAT_UNDER_S:  # minutes a call: once is the figure (and the machine's hour)
                warm[name] = cold[name]
                size.notes.append(f"{name} sent once ({cold[name]:.0f} s)")
            else:
                warm[name] = statistics.median(timed_graphql(stack, query, variables)[0] for _ in range(3))
            seen[key] = (cold[name], warm[name])
        slowest = max(warm, key=lambda name: warm[name])
        size.figures[f"{page} cold"] = max(cold.values())
        size.figures[f"{page} warm"] = warm[slowest]
        size.figures[f"{page} slowest"] = slowest
        size.figures[f"{page} sum"] = sum(warm.values())


def ticks(stack: Stack) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}
    data = stack.graphql(
        TICKS_QUERY,
        {
            "sensor": selector | {"sensorName": "team_partitions_sensor"},
            "schedule": selector | {"scheduleName": "hourly_trace_summaries_schedule"},
        },
    )

    def of(result: dict[str, Any], state: str) -> list[dict[str, Any]]:
        return list(((result or {}).get(state) or {}).get("ticks") or [])

    return of(data["sensorOrError"], "sensorState"), of(data["scheduleOrError"], "scheduleState")


def finished(tick_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [t for t in tick_list if t["status"] in ("SUCCESS", "SKIPPED", "FAILURE") and t["endTimestamp"]]


def materialized_count(stack: Stack, asset: str = PAGE_ASSET) -> tuple[int, int]:
    data = stack.graphql(STATS_QUERY, {"assetKey": {"path": [asset]}}, timeout_s=600)
    stats = data["assetNodeOrError"]["partitionStats"]
    return int(stats["numMaterialized"]), int(stats["numPartitions"])


def measure_size(size: Size, work: Path) -> None:
    now = datetime.now(UTC)
    last_hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    start = (now - timedelta(days=size.days)).replace(hour=0, minute=0, second=0, microsecond=0)
    hours = []
    moment = start
    while moment <= last_hour:
        hours.append(hour_key(moment))
        moment += timedelta(hours=1)
    teams = [str(team) for team in range(1, size.teams + 1)]
    size.figures["partitions"] = len(hours) * len(teams)
    recent = hours[-RECENT_HOURS:]
    with postgres_server() as pg:
        home = work / "dagster_home"
        write_instance_yaml(home, deployed=size.deployed)
        env = pg.instance_env(home)
        with environment(env), dg.DagsterInstance.get() as instance:
            started = time.perf_counter()
            instance.add_dynamic_partitions("teams", teams)
            size.figures["register teams"] = time.perf_counter() - started

            started = time.perf_counter()
            stored = record_recent(instance, recent, teams, run_id="bench-scale-history")
            size.figures["recent events"] = stored
            size.figures["recent events s"] = time.perf_counter() - started

            partitions = team_hour_def(start)
            history_keys = len(hours) * len(teams)
            if history_keys <= CACHE_MAX_KEYS:
                started = time.perf_counter()
                size.figures["cache bytes"] = write_history_cache(instance, partitions, hours, teams)
                size.figures["cache write s"] = time.perf_counter() - started
                expected_materialized = history_keys
            else:
                size.notes.append(
                    f"history not cached ({history_keys:,} keys > {CACHE_MAX_KEYS:,}): the status cache "
                    f"holds the {stored:,} real events only"
                )
                expected_materialized = stored

            stack_env = (
                env
                | {
                    "TRACE_SUMMARIES_START_DATE": start.strftime("%Y-%m-%d"),
                    "TRACE_SUMMARIES_ALLOWED_TEAM_IDS": ",".join(teams),
                    "TRACE_SUMMARIES_SCHEDULE_MODE": "sharded",
                    "TRACE_SUMMARIES_SHARD_SIZE": str(SHARD_SIZE),
                    # Kept from ticking until the daemon is restarted with the real minute below.
                    "TRACE_SUMMARIES_SCHEDULE_MINUTE": str((now.minute + 30) % 60),
                }
                | (deployed_dagster_env() if size.deployed else {})
            )
            with dagster_stack(work / "stack", stack_env, daemon=False, start_timeout_s=600) as stack:
                measure_stack(stack, size, instance, expected_materialized, teams, hours)


def measure_stack(
    stack: Stack,
    size: Size,
    instance: dg.DagsterInstance,
    expected_materialized: int,
    teams: list[str],
    hours: list[str],
) -> None:
    materialized, num_partitions = materialized_count(stack)
    size.figures["num partitions (UI)"] = num_partitions
    if materialized != expected_materialized:
        raise RuntimeError(
            f"{size.label}: the UI counts {materialized:,} materialized partitions, expected "
            f"{expected_materialized:,} (did the status cache's partitions id not match?)"
        )

    # The daemon, with the schedule's minute the coming one (at least 45 s away for it to start up).
    tick_at = (datetime.now(UTC) + timedelta(seconds=105)).replace(second=0, microsecond=0)
    stack.env["TRACE_SUMMARIES_SCHEDULE_MINUTE"] = str(tick_at.minute)
    stack.processes.append(start_daemon(stack, stack.home.parent / "daemon.log"))
    wait_until(
        lambda: stack.check_alive() or stack.daemons_healthy(), timeout_s=300, what="daemon heartbeats"
    )

    def ticked() -> bool:
        stack.check_alive()
        sensor, schedule = ticks(stack)
        return bool(finished(sensor)) and bool(finished(schedule))

    wait_until(
        ticked,
        timeout_s=(tick_at - datetime.now(UTC)).total_seconds() + TICK_WAIT_S,
        what="the team sensor's and the schedule's ticks",
        interval_s=1.0,
    )
    sensor, schedule = ticks(stack)
    sensor_tick = finished(sensor)[-1]
    schedule_tick = finished(schedule)[-1]
    size.figures["sensor tick"] = sensor_tick["endTimestamp"] - sensor_tick["timestamp"]
    size.figures["sensor status"] = sensor_tick["status"]
    size.figures["schedule tick"] = schedule_tick["endTimestamp"] - schedule_tick["timestamp"]
    size.figures["schedule status"] = schedule_tick["status"]
    size.figures["schedule runs"] = len(schedule_tick["runIds"])
    expected_runs = -(-len(teams) // SHARD_SIZE)
    if schedule_tick["status"] != "SUCCESS" or len(schedule_tick["runIds"]) != expected_runs:
        size.notes.append(
            f"schedule tick {schedule_tick['status']} with {len(schedule_tick['runIds'])} runs "
            f"(expected {expected_runs})"
        )

    measure_pages(stack, size, team_window_key(hours[-1], teams[-1]))

    # A backfill of the last 24 hours x every team, as the materialize dialog launches it.
    names = [team_window_key(hour, team) for hour in hours[-BACKFILL_HOURS:] for team in teams]
    params = {
        "partitionNames": names,
        "assetSelection": [{"path": [asset]} for asset in ASSETS],
        "fromFailure": False,
        "tags": [],
    }
    started = time.perf_counter()
    backfill_id = stack.launch_backfill(params)
    size.figures["backfill mutation"] = time.perf_counter() - started
    expected = len(teams)

    def backfill_runs() -> int:
        return instance.get_runs_count(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))

    first = None
    deadline = time.perf_counter() + BACKFILL_WAIT_S
    created = 0
    while time.perf_counter() < deadline:
        stack.check_alive()
        created = backfill_runs()
        if created and first is None:
            first = time.perf_counter() - started
        if created >= expected:
            break
        time.sleep(0.5)  # polling a count, not synchronizing on it
    waited = time.perf_counter() - started
    size.figures["backfill runs per min"] = created / waited * 60 if waited else None
    size.figures["backfill first run"] = first
    size.figures["backfill runs"] = created
    size.figures["backfill runs expected"] = expected
    size.figures["backfill all runs"] = time.perf_counter() - started if created >= expected else None

    for process in stack.processes:
        rss, peak = tree_memory_mb(process.popen.pid)
        size.figures[f"{process.name} rss"] = rss
        size.figures[f"{process.name} peak"] = peak

    # Adding a team changes the partitions definition's id: every status cache is rebuilt from the event log.
    instance.add_dynamic_partitions("teams", [str(len(teams) + 1)])
    rebuild, _ = timed_graphql(stack, ui_query("PartitionHealthQuery"), {"assetKey": {"path": [PAGE_ASSET]}})
    size.figures["rebuild after team added"] = rebuild
    size.figures["rebuild materialized"] = materialized_count(stack)[0]


# -- rows ---------------------------------------------------------------------------------------------------


def rows_for(size: Size, baseline: Size | None = None) -> list[Row]:
    f = size.figures
    base = baseline.figures if baseline else {}
    at_target = (size.teams, size.days) == TARGETS_AT

    def target(kind: str, value: float | None) -> dict[str, Any]:
        if not at_target:
            return {}
        limit = TARGETS[kind]
        return {"target": f"< {limit:g} s", "met": value is not None and value < limit}

    label = size.label
    out = [
        row(f"{label}: partitions per asset", f.get("partitions"), "partitions", digits=0),
        row(
            f"{label}: team sensor tick (daemon)",
            f.get("sensor tick"),
            "s",
            note=f"{f.get('sensor status')}; registering all {size.teams:,} teams at once: "
            f"{f.get('register teams', 0):.2f} s",
            **target("team sensor tick", f.get("sensor tick")),
        ),
        row(
            f"{label}: schedule tick, sharded (daemon)",
            f.get("schedule tick"),
            "s",
            baseline=base.get("schedule tick"),
            note=f"{f.get('schedule status')}, {f.get('schedule runs')} runs of {SHARD_SIZE} teams",
            **target("schedule tick", f.get("schedule tick")),
        ),
    ]
    for page in ("asset page", "materialize dialog"):
        out.append(
            row(
                f"{label}: {page} GraphQL, slowest query (warm median)",
                f.get(f"{page} warm"),
                "s",
                note=f"{f.get(f'{page} slowest')}; cold {f.get(f'{page} cold', 0):.2f} s; all queries "
                f"{f.get(f'{page} sum', 0):.2f} s",
                **target(page, f.get(f"{page} warm")),
            )
        )
    backfill_all = f.get("backfill all runs")
    out += [
        row(
            f"{label}: backfill 24 h x all teams: launch (until its first run exists)",
            f.get("backfill first run"),
            "s",
            baseline=base.get("backfill first run"),
            note=f"{BACKFILL_HOURS * size.teams:,} partitions x 3 assets; the launch mutation answered in "
            f"{f.get('backfill mutation', 0):.1f} s",
            **target("backfill launch", f.get("backfill first run")),
        ),
        row(
            f"{label}: backfill 24 h x all teams: runs created per minute",
            f.get("backfill runs per min"),
            "runs/min",
            baseline=base.get("backfill runs per min"),
            note=f"{f.get('backfill runs')} of {f.get('backfill runs expected')} runs (one per team) "
            + (
                f"all created in {backfill_all:.0f} s"
                if backfill_all is not None
                else f"created within the {BACKFILL_WAIT_S:.0f} s waited"
            ),
        ),
        row(
            f"{label}: webserver peak RSS (with its code server)",
            f.get("webserver peak"),
            "MB",
            note=f"now {f.get('webserver rss', 0):.0f} MB",
        ),
        row(
            f"{label}: daemon peak RSS (with its code server)",
            f.get("daemon peak"),
            "MB",
            note=f"now {f.get('daemon rss', 0):.0f} MB",
        ),
        row(
            f"{label}: status query after a team is added (cache rebuilt)",
            f.get("rebuild after team added"),
            "s",
            note=f"rebuilt from {f.get('recent events', 0):,} events; before: a cache of "
            f"{f.get('cache bytes', 0) / 1e6:.1f} MB (history as materialized, written in "
            f"{f.get('cache write s', 0):.1f} s)" + ("; " + "; ".join(size.notes) if size.notes else ""),
        ),
    ]
    return out


def run(quick: bool = False, sizes: list[tuple[int, int, bool]] | None = None) -> list[Row]:
    chosen = sizes or (SIZES_QUICK if quick else SIZES_FULL)
    rows: list[Row] = []
    baselines: dict[tuple[int, int], Size] = {}
    for teams, days, deployed in chosen:
        size = Size(teams, days, deployed)
        work = Path(tempfile.mkdtemp(prefix=f"bench-scale-{teams}x{days}-"))
        started = time.perf_counter()
        try:
            measure_size(size, work)
        except Exception as exc:  # one size failing still reports the others
            size.notes.append(f"failed: {type(exc).__name__}: {str(exc)[:300]}")
            print(f"{size.label}: {exc}", file=sys.stderr)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(f"{size.label}: {time.perf_counter() - started:.0f} s {size.figures}", file=sys.stderr)
        if not deployed:
            baselines[(teams, days)] = size
        rows += rows_for(size, baselines.get((teams, days)) if deployed else None)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--sizes", help="comma list of <teams>x<days>, e.g. 100x7,1000x365")
    args = parser.parse_args()
    sizes = None
    if args.sizes:  # 1000x7, or 1000x7:defaults for the Dagster-defaults baseline
        sizes = []
        for part in args.sizes.split(","):
            shape, _, flavour = part.partition(":")
            teams, days = (int(n) for n in shape.split("x"))
            sizes.append((teams, days, flavour != "defaults"))
    rows = run(quick=args.quick, sizes=sizes)
    print(json.dumps(rows, indent=1) if args.json else "", end="")
    if not args.json:
        print_rows(rows)


if __name__ == "__main__":
    main()
