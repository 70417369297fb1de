"""Seeding throughput: events/s written by ``seed_store`` into a fresh embedded (chDB) store.

The shape per team-hour is the benchmark store's (``_common.FULL_STORE``: 450 traces per team-hour, one
oversized trace of each kind, neighbour teams and non-AI events); by default 10 teams x 4 hours, ~170k
events. ``--full`` seeds the whole 10 x 24 shape (~1M events), the size the issue sets a target for:
a million events in a few minutes. Also measured: re-seeding the same range (every chunk is already
there, nothing is written) and generation alone, to tell Python generation cost from insert cost.

Run standalone: ``python bench/bench_seed.py [--full]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import FULL_STORE, START, Row, StoreSpec, print_rows, row, rss_mb

from trace_summaries.demo import generate_hour, hour_range, seed_store
from trace_summaries.store import TraceStore

DEFAULT = StoreSpec(
    teams=10,
    hours=4,
    traces_per_hour=FULL_STORE.traces_per_hour,
    oversized_fraction=FULL_STORE.oversized_fraction,
)
# "Millions of events must seed in minutes": a million events within five minutes.
TARGET_SECONDS_PER_MILLION = 300.0


def run(spec: StoreSpec = DEFAULT) -> list[Row]:
    team_ids = spec.team_ids
    hours = hour_range(START, spec.hours)

    started = time.perf_counter()
    generated = sum(
        len(
            generate_hour(
                team, hour, spec.traces_per_hour, spec.seed, oversized_fraction=spec.oversized_fraction
            )
        )
        for team in team_ids
        for hour in hours[:1]
    )
    generation_rate = generated / (time.perf_counter() - started)

    with tempfile.TemporaryDirectory(prefix="bench-seed-") as tmp:
        store = TraceStore(f"chdb://{Path(tmp) / 'clickhouse'}")
        store.ensure_schema()
        report = seed_store(
            store,
            team_ids,
            hours,
            spec.traces_per_hour,
            seed=spec.seed,
            progress=False,
            oversized_fraction=spec.oversized_fraction,
        )
        again = seed_store(
            store,
            team_ids,
            hours,
            spec.traces_per_hour,
            seed=spec.seed,
            progress=False,
            oversized_fraction=spec.oversized_fraction,
        )
        with store.session() as client:
            (rows, chars), *_ = client.query(
                "SELECT count(), sum(length(properties)) FROM events"
            ).result_rows
    assert rows == report.events_written and again.events_written == 0

    per_million = 1e6 / report.events_per_second
    shape = f"{spec.teams} teams x {spec.hours} h x {spec.traces_per_hour} traces (+ neighbours, non-AI)"
    return [
        row("seed_events_written", report.events_written, "events", note=shape),
        row("seed_properties_written", int(chars) / 1e6, "MB", digits=1),
        row("seed_seconds", report.seconds, "s", digits=2),
        row("seed_throughput", round(report.events_per_second), "events/s"),
        row(
            "seed_seconds_per_million_events",
            per_million,
            "s",
            target=f"<= {TARGET_SECONDS_PER_MILLION:.0f} s",
            met=per_million <= TARGET_SECONDS_PER_MILLION,
            digits=1,
        ),
        row("reseed_all_present_seconds", again.seconds, "s", note="nothing written", digits=2),
        row("generation_only_throughput", round(generation_rate), "events/s"),
        row("peak_rss", round(rss_mb()), "MB"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="seed the full benchmark shape (~1.08M events)")
    args = parser.parse_args()
    print_rows(run(FULL_STORE if args.full else DEFAULT))


if __name__ == "__main__":
    main()
