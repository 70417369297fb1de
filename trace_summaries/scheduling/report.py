"""The hour's report, as the original coordinator returned it: teams processed and failed, traces, summaries.

Counts follow the original's definitions: ``teams_processed`` counts every team the hour was run for,
failed ones included; ``total_traces`` is the sampled traces, ``total_summaries`` the events written.
A team failed when it was expected but has no sample (sampling failed or never ran), or when it had
traces but no summary was written (the summarize step failed for the whole partition).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from trace_summaries.sample import TeamHourSample


class TeamHourOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    team_id: int
    traces: int
    summaries: int
    failure: str | None = None


class HourlyReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hour_start: datetime
    teams_processed: int
    teams_failed: int
    failed_team_ids: list[int]
    total_traces: int
    total_summaries: int
    teams: list[TeamHourOutcome]

    def markdown(self) -> str:
        rows = [f"| {t.team_id} | {t.traces} | {t.summaries} | {t.failure or 'ok'} |" for t in self.teams]
        return "\n".join(["| team | traces | summaries | status |", "|---|---|---|---|", *rows])


def build_hourly_report(
    hour_start: datetime,
    expected_teams: Collection[int],
    samples: Mapping[int, TeamHourSample],
    summaries: Mapping[int, int],
) -> HourlyReport:
    outcomes: list[TeamHourOutcome] = []
    for team in sorted(set(expected_teams) | set(samples)):
        sample = samples.get(team)
        traces = sample.stats.traces_selected if sample else 0
        written = summaries.get(team, 0)
        failure = None
        if sample is None:
            failure = "no sample (sampling failed or did not run)"
        elif traces and not written:
            failure = f"no summary written for {traces} sampled traces"
        outcomes.append(TeamHourOutcome(team_id=team, traces=traces, summaries=written, failure=failure))
    failed = [outcome.team_id for outcome in outcomes if outcome.failure]
    return HourlyReport(
        hour_start=hour_start,
        teams_processed=len(outcomes),
        teams_failed=len(failed),
        failed_team_ids=failed,
        total_traces=sum(outcome.traces for outcome in outcomes),
        total_summaries=sum(outcome.summaries for outcome in outcomes),
        teams=outcomes,
    )
