"""Which runs an hourly tick requests: one per team, or one per shard of teams.

A run costs seconds of process start-up and code loading before any work (bench/README.md, orchestration),
and one run per (hour, team) is 1,000 runs an hour at 1,000 teams. Per-team runs isolate teams completely
and are the default for a few teams; above a threshold, teams are grouped into shards of K that each run as
one ranged run (assets process and write each team on its own, so a failing team still costs only itself).

A ranged run covers every team *between* its first and last key in the order the teams were added to the
dynamic partition set, so a shard is a contiguous stretch of that order containing only scheduled teams.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from trace_summaries.config import ScheduleMode
from trace_summaries.partitions import hour_key, team_window_key


@dataclass(frozen=True)
class PlannedRun:
    hour_key: str
    teams: tuple[str, ...]

    @property
    def first_key(self) -> str:
        return team_window_key(self.hour_key, self.teams[0])

    @property
    def last_key(self) -> str:
        return team_window_key(self.hour_key, self.teams[-1])

    @property
    def is_range(self) -> bool:
        return len(self.teams) > 1

    @property
    def run_key(self) -> str:
        """Stable per hour and team set, so a re-evaluated tick never launches a run twice."""
        return self.first_key if not self.is_range else f"{self.first_key}...{self.teams[-1]}"


def last_complete_hour(scheduled_time: datetime, lateness: timedelta) -> datetime:
    """The newest hour that ended at least ``lateness`` before the tick (events arrive late)."""
    cutoff = scheduled_time - lateness
    return cutoff.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


def plan_hourly_runs(
    hour_start: datetime,
    partition_order: Sequence[str],
    scheduled: set[str],
    *,
    mode: ScheduleMode,
    shard_threshold: int,
    shard_size: int,
) -> list[PlannedRun]:
    key = hour_key(hour_start)
    teams = [team for team in partition_order if team in scheduled]
    if mode == "per_team" or (mode == "auto" and len(teams) <= shard_threshold):
        return [PlannedRun(key, (team,)) for team in teams]
    runs: list[PlannedRun] = []
    shard: list[str] = []
    for team in partition_order:
        if team not in scheduled or len(shard) == shard_size:
            if shard:
                runs.append(PlannedRun(key, tuple(shard)))
            shard = []
        if team in scheduled:
            shard.append(team)
    if shard:
        runs.append(PlannedRun(key, tuple(shard)))
    return runs
