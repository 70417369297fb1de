"""IO managers: where each asset's partitions are stored, one object per (hour, team) partition.

Both handle ranged runs (a backfill or a sharded schedule tick covers many partitions in one step): outputs
and inputs are dicts keyed by partition key.
"""


import os
import tempfile
from pathlib import Path

import dagster as dg

from trace_summaries import settings
from trace_summaries.sampling import TeamHourSample


def partition_object_name(asset: str, partition_key: str) -> str:
    """``<asset>/<hour>/<team>.jsonl``: readable paths, and one team's hours sit side by side."""
    hour, team = str(partition_key).split("|")
    return f"{asset}/{hour.replace(':', '')}/{team}.jsonl"


class SampleIOManager(dg.ConfigurableIOManager):
    """Stores ``sampled_traces`` as JSON lines, not pickle: safe to load and readable by other tools."""

    base_dir: str

    def handle_output(self, context: dg.OutputContext, obj: dict[str, TeamHourSample]) -> None:
        asset = context.asset_key.path[-1]
        for key, sample in obj.items():
            path = Path(self.base_dir) / partition_object_name(asset, key)
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename: a run killed mid-write never leaves a truncated object behind.
            with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as handle:
                handle.write(sample.to_jsonl())
            os.replace(handle.name, path)
        context.add_output_metadata({"objects_written": len(obj), "base_dir": self.base_dir})

    def load_input(self, context: dg.InputContext) -> dict[str, TeamHourSample]:
        asset = context.asset_key.path[-1]
        return {
            str(key): TeamHourSample.from_jsonl(
                (Path(self.base_dir) / partition_object_name(asset, key)).read_bytes()
            )
            for key in context.asset_partition_keys
        }


def sample_io_manager() -> SampleIOManager:
    return SampleIOManager(base_dir=str(settings.intermediate_dir()))
