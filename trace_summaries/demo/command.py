"""`trace-summaries seed`: write deterministic demo and benchmark traces into the configured store.

The CLI module (``trace_summaries/cli.py``) only hooks these two functions into its sub-command; the store
comes from ``TRACE_SUMMARIES_CLICKHOUSE_DSN`` (``config.StoreConfig``) like every other command, so
``make dev`` seeds the embedded store the Dagster UI then reads.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from trace_summaries.config import StoreConfig, load
from trace_summaries.demo.hours import default_demo_hours, hour_range, parse_hour
from trace_summaries.demo.traces import DEFAULT_OVERSIZED_FRACTION
from trace_summaries.demo.writer import DEFAULT_SEED, NEIGHBOUR_TEAM_OFFSET, seed_store
from trace_summaries.partitions import parse_team_list
from trace_summaries.store import TraceStore


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 0.5:
        raise argparse.ArgumentTypeError(f"must be within [0, 0.5], got {value}")
    return value


def _hour(text: str) -> datetime:
    try:
        return parse_hour(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_seed_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--teams", type=_positive_int, default=3, help="seed teams 1..N (default: 3)")
    parser.add_argument("--hours", type=_positive_int, default=6, help="number of hours to seed (default: 6)")
    parser.add_argument(
        "--traces-per-hour",
        type=_non_negative_int,
        default=20,
        help="AI traces per team and hour (default: 20)",
    )
    parser.add_argument(
        "--start",
        type=_hour,
        default=None,
        metavar="ISO_HOUR",
        help="first hour, UTC, e.g. 2026-11-01T13:00 (default: the last --hours complete hours)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"random seed; same seed, same events (default: {DEFAULT_SEED})",
    )
    parser.add_argument(
        "--team-ids", default=None, metavar="1,2,3", help="explicit team ids instead of --teams"
    )
    parser.add_argument(
        "--no-neighbours",
        action="store_true",
        help=f"do not seed the neighbour team (team id + {NEIGHBOUR_TEAM_OFFSET}) of each seeded team",
    )
    parser.add_argument(
        "--no-non-ai-events", action="store_true", help="do not seed $pageview/$autocapture/... events"
    )
    parser.add_argument(
        "--oversized-fraction",
        type=_fraction,
        default=DEFAULT_OVERSIZED_FRACTION,
        help="share of traces of each oversized kind (>50 events, >2M chars) per hour "
        f"(default: {DEFAULT_OVERSIZED_FRACTION}; at least one of each from 20 traces per hour unless 0)",
    )


def run_seed(args: argparse.Namespace) -> int:
    if args.team_ids is not None:
        team_ids = parse_team_list(args.team_ids, source="--team-ids")
        if not team_ids:
            print("error: --team-ids lists no team", file=sys.stderr)
            return 2
    else:
        team_ids = list(range(1, args.teams + 1))
    if args.start is not None:
        hours = hour_range(args.start, args.hours)
    else:
        hours = default_demo_hours(datetime.now(UTC), args.hours)
    store = TraceStore(load(StoreConfig).dsn)
    report = seed_store(
        store,
        team_ids,
        hours,
        args.traces_per_hour,
        seed=args.seed,
        progress=True,
        neighbours=not args.no_neighbours,
        include_non_ai=not args.no_non_ai_events,
        oversized_fraction=args.oversized_fraction,
    )
    teams = ",".join(str(team) for team in team_ids)
    print(
        f"seed {args.seed}, teams {teams}, hours {hours[0]:%Y-%m-%dT%H:00}..{hours[-1]:%Y-%m-%dT%H:00} UTC "
        f"into {store.describe()}: {report.summary()}"
    )
    return 0
