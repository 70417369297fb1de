"""The first asset: the sampled traces of each (hour, team) partition."""

from collections.abc import Sequence
from typing import Any

import dagster as dg

from trace_summaries.defs.io_managers import SampleStoreIOManager, StoredSamples
from trace_summaries.defs.partition_failures import settle_partition_failures
from trace_summaries.defs.partition_sets import TEAM_HOUR, WINDOW
from trace_summaries.defs.resources import ClickHouseResource
from trace_summaries.partitions import InvalidTeamKey, TeamHour
from trace_summaries.sample import SamplingConfig, SamplingStats, TeamHourSample, sample_team_hour
from trace_summaries.store import StoreError

_DEFAULTS = SamplingConfig()
# Partitions sampled in one held store session: a ranged run saves a connection (and, embedded, ~50 ms of
# engine start) per partition, and still releases the embedded store's lock now and then for other runs.
SESSION_PARTITIONS = 25


class SampledTracesConfig(dg.Config):
    max_traces: int = _DEFAULTS.max_traces
    max_trace_events: int = _DEFAULTS.max_trace_events
    max_trace_properties_chars: int = _DEFAULTS.max_trace_properties_chars
    trace_margin_minutes: int = _DEFAULTS.trace_margin_minutes
    fetch_chunk_properties_chars: int = _DEFAULTS.fetch_chunk_properties_chars


@dg.asset(
    partitions_def=TEAM_HOUR,
    backfill_policy=dg.BackfillPolicy.single_run(),
    io_manager_key="sample_io_manager",
    kinds={"clickhouse"},
    group_name="trace_summaries",
)
def sampled_traces(
    context: dg.AssetExecutionContext,
    config: SampledTracesConfig,
    clickhouse: ClickHouseResource,
    sample_io_manager: dg.ResourceParam[SampleStoreIOManager],
) -> StoredSamples:
    """The traces whose first event falls in the hour, size-guarded and capped, with all their events.

    Each partition's sample is written to the sample store (the asset's own IO manager) as soon as it is
    sampled and dropped before the next one is sampled, so a ranged run holds one sample at a time (a
    partition at the size limits is a few hundred MB in memory); what the step returns reads them back on
    demand. A partition that fails has its old object deleted right away, so no later step reads stale data.
    """
    sampling = SamplingConfig(**config.model_dump())
    asset = context.asset_key.path[-1]
    stats: dict[str, SamplingStats] = {}
    failures: dict[str, str] = {}
    keys = list(context.partition_keys)

    def sample_one(key: str, client: Any) -> None:
        partition = TeamHour.parse(key, WINDOW)
        sample = sample_team_hour(
            client, partition.team_id, partition.window_start, partition.window_end, sampling
        )
        sample_io_manager.write_sample(asset, key, sample)
        stats[key] = sample.stats

    for start in range(0, len(keys), SESSION_PARTITIONS):
        chunk = keys[start : start + SESSION_PARTITIONS]
        try:
            with clickhouse.session():  # held across the chunk; each partition nests its own session
                for key in chunk:
                    try:
                        with clickhouse.session() as client:
                            sample_one(key, client)
                    except InvalidTeamKey as exc:
                        failures[key] = str(exc)
                    except StoreError as exc:
                        failures[key] = f"cannot read traces: {exc}"
        except StoreError as exc:  # the store could not be opened at all
            unread = [key for key in chunk if key not in stats and key not in failures]
            failures.update({key: f"cannot read traces: {exc}" for key in unread})
    for key in failures:
        sample_io_manager.delete_sample(asset, key)
    # One log entry for the step, a line per partition: each entry is an event-log write, ~20 ms apiece.
    if stats:
        context.log.info(
            "\n".join(
                f"{key}: {s.traces_selected} of {s.traces_in_window} traces selected, "
                f"{s.events_fetched} events, {s.malformed_rows} malformed rows"
                for key, s in stats.items()
            )
        )
    failure_metadata = settle_partition_failures(context, failures)
    context.add_output_metadata({**stats_metadata(list(stats.values())), **failure_metadata})
    return StoredSamples(sample_io_manager, asset, [key for key in keys if key in stats])


def sampling_metadata(samples: Sequence[TeamHourSample]) -> dict[str, Any]:
    """The step's sampling figures, totalled over its partitions' samples."""
    return stats_metadata([sample.stats for sample in samples])


def stats_metadata(stats: Sequence[SamplingStats]) -> dict[str, Any]:
    """The step's sampling figures, totalled over its partitions' stats (all a ranged run keeps of them)."""

    def total(field: str) -> int:
        return sum(getattr(partition, field) for partition in stats)

    excluded: dict[str, int] = {}
    for partition in stats:
        for reason, count in partition.traces_excluded.items():
            excluded[reason] = excluded.get(reason, 0) + count
    malformed = [uuid for partition in stats for uuid in partition.malformed_event_uuids]
    return {
        "partitions": len(stats),
        "traces_in_window": total("traces_in_window"),
        "traces_selected": total("traces_selected"),
        **{f"traces_excluded_{reason}": count for reason, count in excluded.items()},
        "events_without_trace_id": total("events_without_trace_id"),
        "events_fetched": total("events_fetched"),
        "malformed_rows": total("malformed_rows"),
        "malformed_event_uuids": dg.MetadataValue.json(malformed[:50]),
        "duplicate_events_dropped": total("duplicate_events_dropped"),
        "query_seconds": round(sum(s.select_query_seconds + s.fetch_query_seconds for s in stats), 4),
        "dagster/row_count": total("traces_selected"),
    }
