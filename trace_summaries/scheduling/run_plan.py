"""Which runs an hourly tick requests: one per team, or one per shard of teams.

A run costs seconds of process start-up and code loading before any work (bench/README.md, orchestration),
and one run per (hour, team) is 1,000 runs an hour at 1,000 teams. Per-team runs isolate teams completely
and are the default for a few teams; above a threshold, teams are grouped into shards of K that each run as
one ranged run (assets process and write each team on its own, so a failing team still costs only itself).

A ranged run covers every team *between* its first and last key in the order the teams were added to the
dynamic partition set, so a shard is a contiguous stretch of that order containing only scheduled teams.

Every run carries its parameters as run config (``RunParams``): the sample cap, the summary mode (a run per
mode when both are configured), the model and the LLM concurrency. A ranged run has one run config for all
its teams, so a team whose overrides (``team_overrides.py``) differ from the deployment-wide parameters of
a mode gets its own run for that mode, and the shards are cut around it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from trace_summaries.config import ScheduleMode, SummaryMode
from trace_summaries.partitions import hour_key, team_window_key, window_containing
from trace_summaries.scheduling.team_overrides import TeamOverride


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


def last_complete_hour(
    scheduled_time: datetime, lateness: timedelta, window: timedelta = timedelta(hours=1)
) -> datetime:
    """The newest window (an hour by default) that ended at least ``lateness`` before the tick (events
    arrive late)."""
    return window_containing(scheduled_time - lateness, window) - window


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


@dataclass(frozen=True)
class RunParams:
    """The parameters of one scheduled run: the run config of ``sampled_traces`` and ``trace_summaries``."""

    mode: SummaryMode
    max_traces: int
    model: str
    batch_size: int

    def run_config(self) -> dict[str, Any]:
        return {
            "ops": {
                "sampled_traces": {"config": {"max_traces": self.max_traces}},
                "trace_summaries": {
                    "config": {"mode": self.mode, "model": self.model, "batch_size": self.batch_size}
                },
            }
        }


@dataclass(frozen=True)
class RunDefaults:
    """The deployment-wide parameters: TRACE_SUMMARIES_MAX_TRACES, _SUMMARY_MODES, _LLM_MODEL and
    _LLM_CONCURRENCY."""

    modes: tuple[SummaryMode, ...]
    max_traces: int
    model: str
    batch_size: int

    def modes_for(self, override: TeamOverride | None) -> tuple[SummaryMode, ...]:
        return override.modes if override is not None and override.modes is not None else self.modes

    def params_for(self, mode: SummaryMode, override: TeamOverride | None) -> RunParams:
        params = RunParams(
            mode=mode, max_traces=self.max_traces, model=self.model, batch_size=self.batch_size
        )
        if override is None:
            return params
        return replace(
            params,
            max_traces=override.max_traces if override.max_traces is not None else params.max_traces,
            model=override.model if override.model is not None else params.model,
        )


@dataclass(frozen=True)
class ScheduledRun:
    """A planned run and its parameters; the run key includes the mode, so both modes of a tick coexist."""

    run: PlannedRun
    params: RunParams

    @property
    def run_key(self) -> str:
        return f"{self.run.run_key}:{self.params.mode}"


def plan_scheduled_runs(
    hour_start: datetime,
    partition_order: Sequence[str],
    scheduled: set[str],
    *,
    mode: ScheduleMode,
    shard_threshold: int,
    shard_size: int,
    defaults: RunDefaults,
    overrides: Mapping[str, TeamOverride],
) -> list[ScheduledRun]:
    """The runs of one tick: for each summary mode (the deployment's, then any only overrides add), the
    teams on the deployment-wide parameters per team or in shards, and each team whose overrides differ in
    a run of its own. Whether to shard is decided once, on the number of scheduled teams."""
    teams = [team for team in partition_order if team in scheduled]
    sharded = mode == "sharded" or (mode == "auto" and len(teams) > shard_threshold)
    position = {team: index for index, team in enumerate(teams)}
    summary_modes = list(defaults.modes)
    for team in teams:
        summary_modes += [m for m in defaults.modes_for(overrides.get(team)) if m not in summary_modes]
    runs: list[ScheduledRun] = []
    for summary_mode in summary_modes:
        base = defaults.params_for(summary_mode, None)
        common: set[str] = set()
        own: list[ScheduledRun] = []
        for team in teams:
            override = overrides.get(team)
            if summary_mode not in defaults.modes_for(override):
                continue
            params = defaults.params_for(summary_mode, override)
            if params == base:
                common.add(team)
            else:
                own.append(ScheduledRun(PlannedRun(hour_key(hour_start), (team,)), params))
        shared = plan_hourly_runs(
            hour_start,
            partition_order,
            common,
            mode="sharded" if sharded else "per_team",
            shard_threshold=shard_threshold,
            shard_size=shard_size,
        )
        mode_runs = [ScheduledRun(run, base) for run in shared] + own
        runs += sorted(mode_runs, key=lambda planned: position[planned.run.teams[0]])
    return runs
