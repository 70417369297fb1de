"""The first asset: the sampled traces of each (hour, team) partition."""

from typing import Any

import dagster as dg

from trace_summaries.defs.partition_failures import settle_partition_failures
from trace_summaries.defs.partition_sets import TEAM_HOUR, WINDOW
from trace_summaries.defs.resources import ClickHouseResource
from trace_summaries.partitions import InvalidTeamKey, TeamHour
from trace_summaries.sample import SamplingConfig, TeamHourSample, sample_team_hour
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
    context: dg.AssetExecutionContext, config: SampledTracesConfig, clickhouse: ClickHouseResource
) -> dict[str, TeamHourSample]:
    """The traces whose first event falls in the hour, size-guarded and capped, with all their events."""
    sampling = SamplingConfig(**config.model_dump())
    samples: dict[str, TeamHourSample] = {}
    failures: dict[str, str] = {}
    keys = list(context.partition_keys)
    for start in range(0, len(keys), SESSION_PARTITIONS):
        chunk = keys[start : start + SESSION_PARTITIONS]
        try:
            with clickhouse.session():  # held across the chunk; each partition nests its own session
                for key in chunk:
                    try:
                        partition = TeamHour.parse(key, WINDOW)
                        with clickhouse.session() as client:
                            window = (partition.window_start, partition.window_end)
                            samples[key] = sample_team_hour(client, partition.team_id, *window, sampling)
                    except InvalidTeamKey as exc:
                        failures[key] = str(exc)
                    except StoreError as exc:
                        failures[key] = f"cannot read traces: {exc}"
        except StoreError as exc:  # the store could not be opened at all
            unread = [key for key in chunk if key not in samples and key not in failures]
            failures.update({key: f"cannot read traces: {exc}" for key in unread})
    # One log entry for the step, a line per partition: each entry is an event-log write, ~20 ms apiece.
    if samples:
        context.log.info(
            "\n".join(
                f"{key}: {s.stats.traces_selected} of {s.stats.traces_in_window} traces selected, "
                f"{s.stats.events_fetched} events, {s.stats.malformed_rows} malformed rows"
                for key, s in samples.items()
            )
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
