"""IO managers: where each asset's partitions are stored, one object per (hour, team) partition.

Both handle ranged runs (a backfill or a sharded schedule tick covers many partitions in one step): outputs
and inputs are dicts keyed by partition key.
"""

import os
import tempfile
from pathlib import Path

import dagster as dg

from trace_summaries import settings
from trace_summaries.defs.partitions import team_hour
from trace_summaries.defs.resources import ClickHouseResource
from trace_summaries.partition_summaries import PartitionSummaries
from trace_summaries.sampling import TeamHourSample
from trace_summaries.store.summary_event_rows import read_summary_events, replace_summary_events
from trace_summaries.summary_events import SummaryEvent
from trace_summaries.teams import InvalidTeamKey


def partition_object_name(asset: str, partition_key: str) -> str:
    """``<asset>/<hour>/<team>.jsonl``: readable paths, and one team's hours sit side by side."""
    hour, team = str(partition_key).split("|")
    return f"{asset}/{hour.replace(':', '')}/{team}.jsonl"


class SampleIOManager(dg.ConfigurableIOManager):
    """Stores ``sampled_traces`` as JSON lines, not pickle: safe to load and readable by other tools."""

    base_dir: str

    def handle_output(self, context: dg.OutputContext, obj: dict[str, TeamHourSample]) -> None:
        asset = context.asset_key.path[-1]
        for key in set(map(str, context.asset_partition_keys)) - set(obj):
            # A partition of the range that failed: drop its old object so no later step reads stale data.
            (Path(self.base_dir) / partition_object_name(asset, key)).unlink(missing_ok=True)
        for key, sample in obj.items():
            path = Path(self.base_dir) / partition_object_name(asset, key)
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename: a run killed mid-write never leaves a truncated object behind.
            with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as handle:
                handle.write(sample.to_jsonl())
            os.replace(handle.name, path)
        context.add_output_metadata({"objects_written": len(obj), "base_dir": self.base_dir})

    def load_input(self, context: dg.InputContext) -> dict[str, TeamHourSample]:
        """The samples of the requested partitions that exist; a missing one is a partition that failed."""
        asset = context.asset_key.path[-1]
        samples: dict[str, TeamHourSample] = {}
        for key in context.asset_partition_keys:
            path = Path(self.base_dir) / partition_object_name(asset, key)
            if path.exists():
                samples[str(key)] = TeamHourSample.from_jsonl(path.read_bytes())
        if not samples:
            raise FileNotFoundError(f"no stored {asset} object for {list(context.asset_partition_keys)[:3]}")
        return samples


def sample_io_manager() -> SampleIOManager:
    return SampleIOManager(base_dir=str(settings.intermediate_dir()))


class SummaryEventsIOManager(dg.ConfigurableIOManager):
    """Writes each partition's `$ai_trace_summary` events into the events table, replacing earlier ones.

    ``load_input`` reads them back from the table, so downstream assets consume exactly what was written.
    """

    clickhouse: dg.ResourceDependency[ClickHouseResource]

    def handle_output(self, context: dg.OutputContext, obj: dict[str, PartitionSummaries]) -> None:
        written = 0
        with self.clickhouse.session() as client:
            for summaries in obj.values():
                written += replace_summary_events(
                    client,
                    team_id=summaries.team_id,
                    window_start=summaries.window_start,
                    window_end=summaries.window_end,
                    mode=summaries.mode,
                    events=summaries.events,
                )
        context.add_output_metadata({"events_written": written, "sink": self.clickhouse.store.describe()})

    def load_input(self, context: dg.InputContext) -> dict[str, list[SummaryEvent]]:
        loaded: dict[str, list[SummaryEvent]] = {}
        with self.clickhouse.session() as client:
            for key in context.asset_partition_keys:
                try:
                    partition = team_hour(key)
                except InvalidTeamKey:
                    continue  # nothing is ever written for a key that is not a team

                loaded[partition.key] = read_summary_events(
                    client,
                    team_id=partition.team_id,
                    window_start=partition.window_start,
                    window_end=partition.window_end,
                )
        return loaded


def summary_events_io_manager(clickhouse: ClickHouseResource) -> SummaryEventsIOManager:
    return SummaryEventsIOManager(clickhouse=clickhouse)
