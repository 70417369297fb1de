"""`trace-summaries`: the project's command line (seeding, schema, teams, embedding worker, search)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from trace_summaries.config import SettingError, StoreConfig, load
from trace_summaries.demo.command import add_seed_arguments, run_seed
from trace_summaries.partitions import InvalidTeamKey, parse_team_list
from trace_summaries.store import TraceStore
from trace_summaries.worker.command import add_search_arguments, add_worker_arguments, run_search, run_worker


def _init_db(args: argparse.Namespace) -> int:
    store = TraceStore(load(StoreConfig).dsn)
    store.ensure_schema()
    print(f"schema ready in {store.describe()}")
    return 0


def _register_teams(args: argparse.Namespace) -> int:
    """Adds team partitions to the Dagster instance ($DAGSTER_HOME), so a fresh UI can materialize them."""
    # Deferred on purpose: Dagster and the code location's definitions take seconds to import, which every
    # other command (seed, worker, search) would pay for nothing.
    import dagster as dg

    from trace_summaries.defs.partition_sets import TEAMS

    teams = [str(team) for team in parse_team_list(args.team_ids, source="team ids")]
    with dg.DagsterInstance.get() as instance:
        existing = set(instance.get_dynamic_partitions(TEAMS.name or "teams"))
        new = [team for team in teams if team not in existing]
        if new:
            instance.add_dynamic_partitions(TEAMS.name or "teams", new)
    print(f"team partitions: {len(new)} added, {len(teams) - len(new)} already present")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trace-summaries", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    seed = commands.add_parser("seed", help="write deterministic demo LLM traces into the trace store")
    add_seed_arguments(seed)
    seed.set_defaults(handler=run_seed)

    init_db = commands.add_parser("init-db", help="create the tables (idempotent)")
    init_db.set_defaults(handler=_init_db)

    register = commands.add_parser("register-teams", help="add team partitions to the Dagster instance")
    register.add_argument("team_ids", help="comma-separated team ids, e.g. 1,2,3")
    register.set_defaults(handler=_register_teams)

    worker = commands.add_parser("embedding-worker", help="consume embedding requests and store vectors")
    add_worker_arguments(worker)
    worker.set_defaults(handler=run_worker)
    search = commands.add_parser("search", help="semantic search over a team's trace summaries")
    add_search_arguments(search)
    search.set_defaults(handler=run_search)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except (InvalidTeamKey, SettingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
