"""Shared helpers of the benchmarks: result rows, timing, and the cached seeded trace store.

Not a benchmark itself (``bench/run`` only runs ``bench_*.py``). Every benchmark module imports it as
``from _common import ...``: ``bench/`` is on ``sys.path`` both when ``bench/run`` imports a module and when
a module is run directly as ``python bench/bench_x.py``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout: the package and the test support modules
    sys.path.insert(0, str(REPO))

# Where expensive fixtures (the seeded 1M-event store, the tiktoken encoding) are kept between runs.
BENCH_DATA = Path(os.environ.get("TRACE_SUMMARIES_BENCH_DATA") or REPO / ".data" / "bench").resolve()

# A fixed past day, so seeded hours (and the cache key) never depend on when the benchmark runs.
START = datetime(2026, 11, 1, tzinfo=UTC)
SEED = 42

Row = dict[str, Any]


def row(
    name: str,
    value: float | int | None,
    unit: str,
    *,
    baseline: float | int | None = None,
    ratio: float | None = None,
    target: str = "",
    met: bool | None = None,
    note: str = "",
    digits: int = 3,
) -> Row:
    """One figure; ``ratio`` defaults to value / baseline; ``target``/``met`` where the issue sets one."""
    if ratio is None and baseline not in (None, 0) and value is not None:
        ratio = value / baseline  # type: ignore[operator]
    return {
        "name": name,
        "value": _round(value, digits),
        "unit": unit,
        "baseline": _round(baseline, digits),
        "ratio": _round(ratio, 3),
        "target": target,
        "met": met,
        "note": note,
    }


def _round(value: Any, digits: int) -> Any:
    if isinstance(value, float):
        return round(value, digits)
    return value


def timed(work: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def bench_main(run: Callable[..., list[Row]], doc: str | None) -> None:
    """A benchmark run alone: ``--quick`` for small sizes, ``--json`` for the rows as JSON, else the table."""
    import argparse

    parser = argparse.ArgumentParser(description=(doc or "").split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true", help="rows as JSON")
    args = parser.parse_args()
    rows = run(quick=args.quick)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print_rows(rows)


def print_rows(rows: list[Row]) -> None:
    """A standalone run's table (``bench/run`` prints its own, across benchmarks)."""
    headers = ("name", "value", "unit", "baseline", "ratio", "target", "met", "note")
    cells = [[_cell(r.get(h)) for h in headers] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    for line in cells:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if value is True:
        return "yes"
    if value is False:
        return "MISSED"
    return f"{value:,}" if isinstance(value, int) else str(value)


# -- the seeded store ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreSpec:
    """What a seeded benchmark store holds; the cache directory is keyed by all of it."""

    teams: int
    hours: int
    traces_per_hour: int
    oversized_fraction: float
    seed: int = SEED

    @property
    def team_ids(self) -> list[int]:
        return list(range(1, self.teams + 1))

    def hours_list(self) -> list[datetime]:
        return [START + timedelta(hours=i) for i in range(self.hours)]

    def key(self) -> str:
        return (
            f"store-t{self.teams}-h{self.hours}-p{self.traces_per_hour}"
            f"-o{self.oversized_fraction:g}-s{self.seed}-g{generator_fingerprint()}"
        )


# 1. Sampling: >= 1M events over 10 teams x 24 hours. 450 traces per team-hour give ~8 events per trace,
# plus neighbour teams (a quarter of the traffic) and one non-AI event per trace: ~1.08M rows. One trace
# of each oversized kind per team-hour (>50 events, >2M chars), as production sees now and then.
FULL_STORE = StoreSpec(teams=10, hours=24, traces_per_hour=450, oversized_fraction=0.0025)
QUICK_STORE = StoreSpec(teams=2, hours=4, traces_per_hour=150, oversized_fraction=0.007)


def generator_fingerprint() -> str:
    """A short hash of one generated chunk: a change in the seeder invalidates cached stores."""
    from trace_summaries.demo import generate_hour

    events = generate_hour(1, START, 20, SEED)
    digest = hashlib.sha256()
    for event in events:
        digest.update(event["uuid"].encode())
        digest.update(json.dumps(event["properties"], sort_keys=True, default=str).encode())
    return digest.hexdigest()[:10]


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def seeded_store(spec: StoreSpec, *, log: Callable[[str], None] | None = None) -> tuple[Path, dict[str, Any]]:
    """The chDB data directory of a store seeded per ``spec`` (seeded on first use, then reused).

    Returns the directory and its manifest (row counts, seeding time). Seeding is resumable: ``seed_store``
    skips chunks already present, so an interrupted seeding continues where it stopped. The manifest is
    written last; a directory without one is completed, not trusted.
    """
    from trace_summaries.demo import seed_store
    from trace_summaries.store import TraceStore

    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    root = BENCH_DATA / spec.key()
    data_dir = root / "clickhouse"
    manifest_path = root / "manifest.json"
    with _file_lock(BENCH_DATA / f".{spec.key()}.lock"):
        if manifest_path.exists():
            return data_dir, json.loads(manifest_path.read_text())
        _drop_stale_stores(spec)
        log(f"seeding benchmark store {root} (once; later runs reuse it) ...")
        store = TraceStore(f"chdb://{data_dir}")
        store.ensure_schema()
        report = seed_store(
            store,
            spec.team_ids,
            spec.hours_list(),
            spec.traces_per_hour,
            seed=spec.seed,
            progress=False,
            oversized_fraction=spec.oversized_fraction,
        )
        with store.session() as client:
            # Merge parts now, so every later query sees the same layout whatever the insert batches were.
            client.command("OPTIMIZE TABLE events FINAL")
            (rows, chars, ai_rows), *_ = client.query(
                "SELECT count(), sum(length(properties)), countIf(startsWith(event, '$ai_')) FROM events"
            ).result_rows
        manifest = {
            "spec": asdict(spec),
            "events": int(rows),
            "ai_events": int(ai_rows),
            "properties_mb": round(int(chars) / 1e6, 1),
            "seed_seconds": report.seconds,
            "seeded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        manifest_path.write_text(json.dumps(manifest, indent=2))
        log(f"seeded {manifest['events']:,} events in {report.seconds:.0f} s")
        return data_dir, manifest


def _drop_stale_stores(spec: StoreSpec) -> None:
    """Stores of the same shape from an older seeder are dead weight (hundreds of MB): remove them."""
    prefix = spec.key().rsplit("-g", 1)[0] + "-g"
    for old in BENCH_DATA.glob(f"{prefix}*"):
        if old.is_dir() and old.name != spec.key():
            shutil.rmtree(old, ignore_errors=True)


def rss_mb() -> float:
    """Peak RSS of this process so far (Linux reports ru_maxrss in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def seeded_traces(count: int, *, team_id: int = 1, traces_per_hour: int = 200) -> list[list[dict[str, Any]]]:
    """``count`` seeded traces (events as the seeder makes them), hour after hour, without oversized ones:
    those never reach the LLM (the sampling guards exclude them)."""
    from trace_summaries.demo import generate_hour

    traces: list[list[dict[str, Any]]] = []
    hour = START
    while len(traces) < count:
        by_trace: dict[str, list[dict[str, Any]]] = {}
        for event in generate_hour(
            team_id, hour, traces_per_hour, SEED, oversized_fraction=0.0, include_non_ai=False
        ):
            trace_id = event["properties"].get("$ai_trace_id")
            if trace_id:
                by_trace.setdefault(trace_id, []).append(event)
        traces += list(by_trace.values())
        hour += timedelta(hours=1)
    return traces[:count]


def seeded_samples(partitions: int, traces: int) -> dict[str, Any]:
    """``partitions`` team-hours of ``traces`` seeded traces each (``team-<n>`` -> ``TeamHourSample``), as
    ``sampled_traces`` hands them to the summarize step."""
    from trace_summaries.sample import SampledTrace, SamplingStats, TeamHourSample, TraceEvent

    fields = ("uuid", "event", "timestamp", "properties")
    samples: dict[str, Any] = {}
    seeded = seeded_traces(partitions * traces)
    for team in range(partitions):
        chosen = seeded[team * traces : (team + 1) * traces]
        sampled = [
            SampledTrace(
                trace_id=f"trace-{team}-{index}",
                first_timestamp=min(event["timestamp"] for event in events),
                event_count=len(events),
                properties_chars=0,
                events=[TraceEvent(**{key: event[key] for key in fields}) for event in events],
            )
            for index, events in enumerate(chosen)
        ]
        start = min(trace.first_timestamp for trace in sampled)
        samples[f"team-{team}"] = TeamHourSample(
            team_id=team,
            window_start=start,
            window_end=start + timedelta(hours=1),
            traces=sampled,
            stats=SamplingStats(),
        )
    return samples


# -- the production Dagster instance (benchmarks 15 and 16) --------------------------------------------------


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` set in this process's environment for the block, the previous values restored after (a
    Dagster instance opened here reads its dagster.yaml's ``env:`` settings from it)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def deployed_dagster_env() -> dict[str, str]:
    """Dagster's own switches as deployed: the environment deploy/values.yaml gives the daemon (the planned
    events), and the ``DAGSTER_*`` lines of deploy/secrets.example.env, the code server's and run pods'
    environment (the event batch size)."""
    import yaml

    values = yaml.safe_load((REPO / "deploy" / "values.yaml").read_text())
    env = {str(k): str(v) for k, v in (values["dagsterDaemon"].get("env") or {}).items()}
    for line in (REPO / "deploy" / "secrets.example.env").read_text().splitlines():
        if line.startswith("DAGSTER_") and "=" in line:
            name, value = line.split("=", 1)
            env[name] = value
    return env


def instance_size(pg: Any) -> dict[str, tuple[int, int]]:
    """``table -> (rows, bytes)`` of every table of a Dagster instance's PostgreSQL database (``pg``: the
    harness's ``PostgresInfo``): exact row counts, and sizes with indexes and TOAST."""
    import psycopg2

    connection = psycopg2.connect(**pg.connect_kwargs())
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
            tables = [name for (name,) in cursor.fetchall()]
            sizes: dict[str, tuple[int, int]] = {}
            for table in tables:
                cursor.execute(f'SELECT count(*), pg_total_relation_size(%s) FROM "{table}"', (table,))
                rows, size = cursor.fetchone()
                sizes[table] = (int(rows), int(size))
            return sizes
    finally:
        connection.close()


def instance_growth(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
) -> dict[str, tuple[int, int]]:
    """``table -> (rows added, bytes added)`` between two ``instance_size`` snapshots, largest first."""
    growth = {
        table: (rows - before.get(table, (0, 0))[0], size - before.get(table, (0, 0))[1])
        for table, (rows, size) in after.items()
    }
    return dict(sorted(growth.items(), key=lambda item: -item[1][0]))


# Which process a command line belongs to, first match wins (benchmark 16's CPU accounting).
CPU_CATEGORIES: tuple[tuple[str, str], ...] = (
    ("spawn_main", "run workers"),
    ("execute_run", "run workers"),
    ("dagster api grpc", "code servers"),
    ("dagster-daemon", "daemon"),
    ("dagster-webserver", "webserver"),
    ("clickhouse_http", "ClickHouse (HTTP front + chDB)"),
    ("_servers.py", "LLM server (simulated)"),
    ("postgres", "PostgreSQL"),
)


class CpuMeter:
    """CPU seconds by kind of process between ``start()`` and the last ``sample()``, from ``/proc``.

    Each ``sample()`` reads every process's user+system time; a process that exits between two samples
    loses what it used since the last one (sample every few seconds: run workers live for minutes). The
    machine's busy share of its cores over the same time comes from ``/proc/stat``."""

    def __init__(self) -> None:
        self._tick = os.sysconf("SC_CLK_TCK")
        self._first: dict[int, float] = {}
        self._last: dict[int, tuple[str, float]] = {}
        self._machine_start: tuple[float, float] = (0.0, 0.0)
        self._machine_end: tuple[float, float] = (0.0, 0.0)

    @staticmethod
    def _machine() -> tuple[float, float]:
        """(busy, total) jiffies of all cores."""
        fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields) - idle, sum(fields)

    def _processes(self) -> Iterator[tuple[int, str, float]]:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            cpu = (float(fields[11]) + float(fields[12])) / self._tick  # utime + stime
            category = next((name for key, name in CPU_CATEGORIES if key in cmdline), None)
            if int(entry.name) == os.getpid():
                category = "benchmark process"
            if category is not None:
                yield int(entry.name), category, cpu

    def start(self) -> None:
        self._first = {pid: cpu for pid, _, cpu in self._processes()}
        self._machine_start = self._machine()

    def sample(self) -> None:
        for pid, category, cpu in self._processes():
            self._last[pid] = (category, cpu)
        self._machine_end = self._machine()

    def by_category(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for pid, (category, cpu) in self._last.items():
            totals[category] = totals.get(category, 0.0) + cpu - self._first.get(pid, 0.0)
        return dict(sorted(totals.items(), key=lambda item: -item[1]))

    def machine_busy(self) -> float:
        """The share of all cores' time that was busy, from ``start()`` to the last ``sample()``."""
        busy = self._machine_end[0] - self._machine_start[0]
        total = self._machine_end[1] - self._machine_start[1]
        return busy / total if total else 0.0
