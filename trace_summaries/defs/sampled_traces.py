"""The first asset: the sampled traces of each (hour, team) partition."""

from typing import Any

import dagster as dg

from trace_summaries.defs.partition_failures import settle_partition_failures
from trace_summaries.defs.partitions import TEAM_HOUR, team_hour
from trace_summaries.defs.resources import ClickHouseResource
from trace_summaries.sampling import SamplingConfig, TeamHourSample, sample_team_hour
from trace_summaries.store import StoreError
from trace_summaries.teams import InvalidTeamKey

_DEFAULTS = SamplingConfig()


class SampledTracesConfig(dg.Config):
    max_traces: int = _DEFAULTS.max_traces
    max_trace_events: int = _DEFAULTS.max_trace_events
    max_trace_properties_chars: int = _DEFAULTS.max_trace_properties_chars
    trace_margin_minutes: int = _DEFAULTS.trace_margin_minutes


@dg.asset(
    partitions_def=TEAM_HOUR,
    backfill_policy=dg.BackfillPolicy.single_run(),
    io_manager_key="sample_io_manager",
    kinds={"clickhouse"},
    group_name="trace_summaries",
)
def sampled_traces(
    context: dg.AssetExecutionContext, config: SampledTracesConfig, clickhouse: ClickHouseResource
) -> dict[str, TeamHourSample]:
    """The traces whose first event falls in the hour, size-guarded and capped, with all their events."""
    sampling = SamplingConfig(**config.model_dump())
    samples: dict[str, TeamHourSample] = {}
    failures: dict[str, str] = {}
    for key in context.partition_keys:
        try:
            partition = team_hour(key)
            with clickhouse.session() as client:
                samples[key] = sample_team_hour(
                    client, partition.team_id, partition.window_start, partition.window_end, sampling
                )
        except InvalidTeamKey as exc:
            failures[key] = str(exc)
        except StoreError as exc:
            failures[key] = f"cannot read traces: {exc}"
    for key, sample in samples.items():
        stats = sample.stats
        context.log.info(
            f"{key}: {stats.traces_selected} of {stats.traces_in_window} traces selected, "
            f"{stats.events_fetched} events, {stats.malformed_rows} malformed rows"
        )
    failure_metadata = settle_partition_failures(context, failures)
    context.add_output_metadata({**sampling_metadata(list(samples.values())), **failure_metadata})
    return samples


def sampling_metadata(samples: list[TeamHourSample]) -> dict[str, Any]:
    def total(field: str) -> int:
        return sum(getattr(sample.stats, field) for sample in samples)

    excluded: dict[str, int] = {}
    for sample in samples:
        for reason, count in sample.stats.traces_excluded.items():
            excluded[reason] = excluded.get(reason, 0) + count
    malformed = [uuid for sample in samples for uuid in sample.stats.malformed_event_uuids]
    return {
        "partitions": len(samples),
        "traces_in_window": total("traces_in_window"),
        "traces_selected": total("traces_selected"),
        **{f"traces_excluded_{reason}": count for reason, count in excluded.items()},
        "events_without_trace_id": total("events_without_trace_id"),
        "events_fetched": total("events_fetched"),
        "malformed_rows": total("malformed_rows"),
        "malformed_event_uuids": dg.MetadataValue.json(malformed[:50]),
        "duplicate_events_dropped": total("duplicate_events_dropped"),
        "query_seconds": round(
            sum(s.stats.select_query_seconds + s.stats.fetch_query_seconds for s in samples), 4
        ),
        "dagster/row_count": total("traces_selected"),
    }
