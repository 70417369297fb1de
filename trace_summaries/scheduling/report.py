"""The hour's report, as the original coordinator returned it, made exact: teams processed and failed, traces,
summaries per mode, and each team's duration.

Counts follow the original's definitions where it had them: ``teams_processed`` counts every team the hour
was run for, failed ones included; ``total_traces`` is the sampled traces (one sample per team and hour,
whatever the mode: sampling is deterministic). Summaries are counted per mode (``by_mode``): a window holds
the summaries of every mode that ran for it, and adding them up would count a trace twice.

* Expected teams are the scheduled set (allowlist, plus discovered teams when discovery is on). An expected
  team that was never registered as a partition cannot have run: it is listed in ``unregistered_team_ids``,
  not counted as processed or failed.
* A team failed when its latest run of the hour in some mode failed for it, when it has no sample (sampling
  failed or never ran), or when it had traces but a mode it ran in has no summary written.
* ``duration_seconds``, per team and mode: from the start of the team's latest run in that mode to the moment
  its summaries were written (or the run ended, when it failed); in a ranged run that is the run's time up
  to then, shared by its teams.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict


@dataclass(frozen=True)
class TeamRun:
    """The latest run that summarized (or failed to summarize) one team's hour in one mode."""

    failed: bool
    duration_seconds: float | None


class TeamHourOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    team_id: int
    traces: int
    summaries_by_mode: dict[str, int]
    # The modes its runs of the hour summarized in, with the duration of the latest run of each.
    duration_seconds: dict[str, float | None]
    failure: str | None = None


class ModeTotals(BaseModel):
    model_config = ConfigDict(extra="forbid")

    teams: int
    traces: int
    summaries: int


class HourlyReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hour_start: datetime
    teams_expected: int
    teams_processed: int
    teams_failed: int
    failed_team_ids: list[int]
    unregistered_team_ids: list[int]
    total_traces: int
    by_mode: dict[str, ModeTotals]
    teams: list[TeamHourOutcome]

    def markdown(self) -> str:
        rows = [
            f"| {t.team_id} | {t.traces} | {_by_mode(t.summaries_by_mode)} | "
            f"{_by_mode(t.duration_seconds)} | {t.failure or 'ok'} |"
            for t in self.teams
        ]
        rows += [
            f"| {team} | - | - | - | not registered as a partition |" for team in self.unregistered_team_ids
        ]
        header = "| team | traces | summaries | duration (s) | status |"
        return "\n".join([header, "|---|---|---|---|---|", *rows])


def _by_mode(values: Mapping[str, float | int | None]) -> str:
    shown = {mode: "-" if value is None else f"{value:g}" for mode, value in values.items()}
    return ", ".join(f"{mode}: {value}" for mode, value in sorted(shown.items())) or "-"


def _failure(traces: int | None, summaries: Mapping[str, int], runs: Mapping[str, TeamRun]) -> str | None:
    failed = sorted(mode for mode, run in runs.items() if run.failed)
    if failed:
        return f"the latest {' and '.join(failed)} run failed for this team"
    if traces is None:
        return "no sample (sampling failed or did not run)"
    unwritten = [mode for mode in sorted(runs) if not summaries.get(mode)]
    if traces and (unwritten or not (runs or summaries)):
        modes = " and ".join(unwritten) + " " if unwritten else ""
        return f"no {modes}summary written for {traces} sampled traces"
    return None


def build_hourly_report(
    hour_start: datetime,
    expected_teams: Collection[int],
    registered_teams: Collection[int],
    traces: Mapping[int, int],
    summaries: Mapping[int, Mapping[str, int]],
    runs: Mapping[int, Mapping[str, TeamRun]],
) -> HourlyReport:
    """``traces``: each sampled team's traces; ``summaries``: each team's summaries by mode; ``runs``: each
    team's latest run of the hour in each mode."""
    registered = set(registered_teams)
    ran = {team for team, by_mode in runs.items() if by_mode}
    written = {team for team, by_mode in summaries.items() if any(by_mode.values())}
    outcomes: list[TeamHourOutcome] = []
    for team in sorted((set(expected_teams) & registered) | set(traces) | ran | written):
        team_runs = runs.get(team, {})
        team_summaries = {mode: count for mode, count in summaries.get(team, {}).items() if count}
        outcomes.append(
            TeamHourOutcome(
                team_id=team,
                traces=traces.get(team, 0),
                summaries_by_mode=team_summaries,
                duration_seconds={mode: run.duration_seconds for mode, run in team_runs.items()},
                failure=_failure(traces.get(team), team_summaries, team_runs),
            )
        )
    by_mode: dict[str, ModeTotals] = {}
    for mode in sorted({m for o in outcomes for m in [*o.summaries_by_mode, *o.duration_seconds]}):
        in_mode = [o for o in outcomes if mode in o.duration_seconds or mode in o.summaries_by_mode]
        by_mode[mode] = ModeTotals(
            teams=len(in_mode),
            traces=sum(o.traces for o in in_mode),
            summaries=sum(o.summaries_by_mode.get(mode, 0) for o in in_mode),
        )
    failed = [outcome.team_id for outcome in outcomes if outcome.failure]
    return HourlyReport(
        hour_start=hour_start,
        teams_expected=len(set(expected_teams)),
        teams_processed=len(outcomes),
        teams_failed=len(failed),
        failed_team_ids=failed,
        unregistered_team_ids=sorted(set(expected_teams) - registered),
        total_traces=sum(outcome.traces for outcome in outcomes),
        by_mode=by_mode,
        teams=outcomes,
    )
