"""`hourly_report`: one materialization per hour summing up every team's run, visible on the asset page, and
the sensor that refreshes an hour's report whenever one of its team partitions is materialized or fails."""

from collections.abc import Iterable, Mapping
from typing import TypeVar

import dagster as dg
from pydantic import BaseModel

from trace_summaries.config import TeamsConfig, load
from trace_summaries.defs.embedding_requests import run_summary_mode
from trace_summaries.defs.io_managers import StoredSamples
from trace_summaries.defs.partition_failures import failed_partitions
from trace_summaries.defs.partition_sets import HOURS, TEAMS_NAME, WINDOW
from trace_summaries.defs.resources import ClickHouseResource
from trace_summaries.partitions import (
    InvalidTeamKey,
    TeamHour,
    hour_key,
    parse_hour_key,
    parse_team_key,
    split_key,
    team_window_key,
)
from trace_summaries.scheduling.report import TeamRun, build_hourly_report
from trace_summaries.scheduling.team_set import discover_teams, scheduled_teams
from trace_summaries.write.event import SummaryEvent

SUMMARIES_ASSET = dg.AssetKey("trace_summaries")
# A partition's latest runs read to find the latest of each mode (re-runs beyond that are older).
RUNS_PER_PARTITION = 50
REPORT_ASSET = dg.AssetKey("hourly_report")
_EVERY_TEAM_OF_THE_HOUR = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="hour")
_IN_PROGRESS = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
Value = TypeVar("Value")


def _by_team(values: Mapping[str, Value]) -> dict[int, Value]:
    by_team: dict[int, Value] = {}
    for key, value in values.items():
        try:
            by_team[TeamHour.parse(key).team_id] = value
        except ValueError:  # InvalidTeamKey too
            continue  # nothing is ever written for a key that is not a team
    return by_team


def _registered_teams(keys: Iterable[str]) -> list[int]:
    teams: set[int] = set()
    for key in keys:
        try:
            teams.add(parse_team_key(key))
        except InvalidTeamKey:
            continue  # a key that is not a team id has nothing written for it
    return sorted(teams)


def latest_team_runs(
    instance: dg.DagsterInstance, hour: str, teams: Iterable[int]
) -> dict[int, dict[str, TeamRun]]:
    """Each team's latest `trace_summaries` run for the hour in each mode (every run plans its partitions when
    it is created; its mode is its run config's). Such a run failed for the team when it ended without
    materializing the partition, or recorded the partition as failed inside a ranged run. Its duration runs
    from its start to the partition's materialization, or to its end when it failed."""
    records: dict[str, dg.RunRecord | None] = {}
    runs: dict[int, dict[str, TeamRun]] = {}
    for team in teams:
        key = team_window_key(hour, team)
        records_filter = dg.AssetRecordsFilter(asset_key=SUMMARIES_ASSET, asset_partitions=[key])
        planned = instance.fetch_planned_materializations(records_filter, limit=RUNS_PER_PARTITION).records
        done = instance.fetch_materializations(records_filter, limit=RUNS_PER_PARTITION).records
        written_at = {r.event_log_entry.run_id: r.event_log_entry.timestamp for r in reversed(done)}
        by_mode: dict[str, TeamRun] = {}
        for entry in sorted([*planned, *done], key=lambda r: r.storage_id, reverse=True):
            run_id = entry.event_log_entry.run_id
            if run_id not in records:
                records[run_id] = instance.get_run_record_by_id(run_id)
            record = records[run_id]
            if record is None:
                continue
            run = record.dagster_run
            mode = run_summary_mode(run.run_config)
            if mode in by_mode:
                continue  # a later run of this mode was seen first
            start = record.start_time or record.create_timestamp.timestamp()
            end = written_at.get(run_id, record.end_time)
            by_mode[mode] = TeamRun(
                failed=(run_id not in written_at and run.status not in _IN_PROGRESS)
                or key in failed_partitions(run.tags),
                duration_seconds=None if end is None else round(max(0.0, end - start), 3),
            )
        if by_mode:
            runs[team] = by_mode
    return runs


@dg.asset(
    partitions_def=HOURS,
    ins={
        "sampled_traces": dg.AssetIn(partition_mapping=_EVERY_TEAM_OF_THE_HOUR),
        "trace_summaries": dg.AssetIn(partition_mapping=_EVERY_TEAM_OF_THE_HOUR),
    },
    group_name="reports",
    kinds={"dagster"},
)
def hourly_report(
    context: dg.AssetExecutionContext,
    sampled_traces: StoredSamples,
    trace_summaries: dict[str, list[SummaryEvent]],
    clickhouse: ClickHouseResource,
) -> dg.MaterializeResult:
    """Teams expected, processed and failed (with ids), teams expected but never registered, traces, and
    summaries per mode of the hour, each team's latest run and duration: the original coordinator's result
    and metrics."""
    window = context.partition_time_window
    hour = hour_key(window.start)
    config = load(TeamsConfig)
    discovered: list[int] = []
    if config.discover_teams:
        # The teams the hour's schedule tick discovered: active in the 24 hours before the hour ended.
        with clickhouse.session() as client:
            discovered = discover_teams(client, window.end)
    expected = scheduled_teams(config, discovered)
    registered = _registered_teams(context.instance.get_dynamic_partitions(TEAMS_NAME))
    key_of = {key: key for key in sampled_traces}
    summaries: dict[int, dict[str, int]] = {}
    for team, events in _by_team(dict(trace_summaries)).items():
        for event in events:
            by_mode = summaries.setdefault(team, {})
            by_mode[event.properties.mode] = by_mode.get(event.properties.mode, 0) + 1
    report = build_hourly_report(
        window.start,
        expected,
        registered,
        # Each team's stats from its sample's header line: never the hour's samples themselves.
        {team: sampled_traces.stats(key).traces_selected for team, key in _by_team(key_of).items()},
        summaries,
        latest_team_runs(context.instance, hour, registered),
    )
    if report.failed_team_ids:
        context.log.warning(f"{hour}: teams failed {report.failed_team_ids}")
    if report.unregistered_team_ids:
        context.log.warning(f"{hour}: expected teams never registered {report.unregistered_team_ids}")
    return dg.MaterializeResult(
        metadata={
            "teams_expected": report.teams_expected,
            "teams_processed": report.teams_processed,
            "teams_failed": report.teams_failed,
            "failed_team_ids": dg.MetadataValue.json(report.failed_team_ids),
            "unregistered_team_ids": dg.MetadataValue.json(report.unregistered_team_ids),
            "total_traces": report.total_traces,
            "by_mode": dg.MetadataValue.json({m: t.model_dump() for m, t in report.by_mode.items()}),
            "duration_seconds": dg.MetadataValue.json(
                {str(t.team_id): t.duration_seconds for t in report.teams if t.duration_seconds}
            ),
            "teams": dg.MetadataValue.md(report.markdown()),
        }
    )


hourly_report_job = dg.define_asset_job("hourly_report_job", selection=[hourly_report])

# Events read per evaluation and kind (materializations, failures); reports requested per evaluation. What
# is left is read, or requested, at the next evaluation.
SCAN_LIMIT = 1000
MAX_REQUESTS = 50


class ReportCursor(BaseModel):
    """The last event-log entry read, and the hours with changes not reported yet (hour -> latest entry)."""

    after: int = 0
    pending: dict[str, int] = {}


def _busy_hours(instance: dg.DagsterInstance) -> set[str]:
    """Hours a queued or running run covers: one partition, or a ranged run's hour span (any job)."""
    busy: set[str] = set()
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=_IN_PROGRESS), limit=SCAN_LIMIT):
        single = run.tags.get("dagster/partition", "")
        first = run.tags.get("dagster/asset_partition_range_start", single)
        last = run.tags.get("dagster/asset_partition_range_end", single)
        if "|" not in first or "|" not in last:
            continue  # not a run of team partitions (a report run, another job)
        first_hour, last_hour = split_key(first)[0], split_key(last)[0]
        busy.update(_hours_between(first_hour, last_hour))
    return busy


def _hours_of(record: dg.EventLogRecord) -> set[str]:
    """The hours of the team partitions a planned or done materialization names (one, or a ranged run's)."""
    event = record.event_log_entry.dagster_event
    if event is None:
        return set()
    keys: list[str] = []
    if event.is_asset_materialization_planned:
        data = event.asset_materialization_planned_data
        if data.partition is not None:
            keys = [str(data.partition)]
        elif data.partitions_subset is not None:
            keys = [str(key) for key in data.partitions_subset.get_partition_keys()]
    elif event.partition is not None:
        keys = [str(event.partition)]
    return {split_key(key)[0] for key in keys if "|" in key}


def _hours_between(first: str, last: str) -> list[str]:
    try:
        start, end = parse_hour_key(first), parse_hour_key(last)
    except ValueError:
        return []  # not an hour key: not a run of ours
    return [hour_key(start + n * WINDOW) for n in range(int((end - start) / WINDOW) + 1)]


@dg.sensor(job=hourly_report_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def hourly_report_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Refreshes the report of every hour whose team partitions changed: each run planning a
    `trace_summaries` partition (a scheduled run, a retry, a backfill of any age, a manual re-run, whether it
    then succeeds or fails) and each materialization marks its hour, and the hour is reported once none of
    its runs is queued or running, unless a report newer than the change exists already."""
    with dg.partition_loading_context(dynamic_partitions_store=context.instance):
        return _evaluate(context.instance, context.cursor)


def _evaluate(instance: dg.DagsterInstance, raw_cursor: str | None) -> dg.SensorResult:
    cursor = ReportCursor.model_validate_json(raw_cursor) if raw_cursor else ReportCursor()
    pending = dict(cursor.pending)
    read_to: list[int] = []
    for fetch in (instance.fetch_planned_materializations, instance.fetch_materializations):
        records = fetch(
            dg.AssetRecordsFilter(asset_key=SUMMARIES_ASSET, after_storage_id=cursor.after),
            limit=SCAN_LIMIT,
            ascending=True,
        ).records
        for record in records:
            for hour in _hours_of(record):
                pending[hour] = max(pending.get(hour, 0), record.storage_id)
        # A kind read to its end lets the cursor pass it; a truncated one holds the cursor at its last entry.
        read_to.append(records[-1].storage_id if len(records) == SCAN_LIMIT else -1)
    newest = max(pending.values(), default=cursor.after)
    truncated = [storage_id for storage_id in read_to if storage_id >= 0]
    after = min(truncated) if truncated else max(cursor.after, newest)
    busy = _busy_hours(instance) if pending else set()
    requests: list[dg.RunRequest] = []
    for hour, changed in sorted(pending.items()):
        if hour in busy or len(requests) >= MAX_REQUESTS:
            continue
        reported = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=REPORT_ASSET, asset_partitions=[hour]), limit=1
        ).records
        if not reported or reported[0].storage_id < changed:
            requests.append(dg.RunRequest(run_key=f"report:{hour}:{changed}", partition_key=hour))
        del pending[hour]
    return dg.SensorResult(
        run_requests=requests, cursor=ReportCursor(after=after, pending=pending).model_dump_json()
    )
