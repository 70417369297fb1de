"""IO managers: where each asset's partitions are stored, one object per (hour, team) partition.

Both handle ranged runs (a backfill or a sharded schedule tick covers many partitions in one step): outputs
and inputs are dicts keyed by partition key.
"""

import os
import tempfile
from pathlib import Path

import dagster as dg
from dagster_aws.s3 import S3Resource

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
    hour, _, team = str(partition_key).partition("|")
    return f"{asset}/{hour.replace(':', '')}/{team}.jsonl"


class SampleStoreIOManager(dg.ConfigurableIOManager):
    """Stores ``sampled_traces`` as JSON lines, one object per partition: not pickle, so objects are safe
    to load and readable by other tools. Subclasses say where objects live."""

    def _write(self, name: str, data: bytes) -> None:
        raise NotImplementedError

    def _read(self, name: str) -> bytes | None:
        raise NotImplementedError

    def _delete(self, name: str) -> None:
        raise NotImplementedError

    def location(self) -> str:
        raise NotImplementedError

    def handle_output(self, context: dg.OutputContext, obj: dict[str, TeamHourSample]) -> None:
        asset = context.asset_key.path[-1]
        for key in set(map(str, context.asset_partition_keys)) - set(obj):
            # A partition of the range that failed: drop its old object so no later step reads stale data.
            self._delete(partition_object_name(asset, key))
        for key, sample in obj.items():
            self._write(partition_object_name(asset, key), sample.to_jsonl())
        context.add_output_metadata({"objects_written": len(obj), "location": self.location()})

    def load_input(self, context: dg.InputContext) -> dict[str, TeamHourSample]:
        """The samples of the requested partitions that exist; a missing one is a partition that failed."""
        asset = context.asset_key.path[-1]
        samples: dict[str, TeamHourSample] = {}
        for key in context.asset_partition_keys:
            data = self._read(partition_object_name(asset, key))
            if data is not None:
                samples[str(key)] = TeamHourSample.from_jsonl(data)
        return samples


class SampleIOManager(SampleStoreIOManager):
    """Objects on the local filesystem (the default: laptops and single-node deployments)."""

    base_dir: str

    def _write(self, name: str, data: bytes) -> None:
        path = Path(self.base_dir) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename: a run killed mid-write never leaves a truncated object behind.
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as handle:
            handle.write(data)
        os.replace(handle.name, path)

    def _read(self, name: str) -> bytes | None:
        path = Path(self.base_dir) / name
        return path.read_bytes() if path.exists() else None

    def _delete(self, name: str) -> None:
        (Path(self.base_dir) / name).unlink(missing_ok=True)

    def location(self) -> str:
        return self.base_dir


class S3SampleIOManager(SampleStoreIOManager):
    """Objects in S3 or any S3-compatible store (``AWS_ENDPOINT_URL``): what runs on Kubernetes share."""

    s3: dg.ResourceDependency[S3Resource]
    bucket: str
    prefix: str = "trace-summaries"

    def _key(self, name: str) -> str:
        return f"{self.prefix.strip('/')}/{name}" if self.prefix.strip("/") else name

    def _write(self, name: str, data: bytes) -> None:
        # A PUT is atomic: readers see the old object or the new one, never a part.
        self.s3.get_client().put_object(Bucket=self.bucket, Key=self._key(name), Body=data)

    def _read(self, name: str) -> bytes | None:
        client = self.s3.get_client()
        try:
            return client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"].read()
        except client.exceptions.NoSuchKey:
            return None

    def _delete(self, name: str) -> None:
        self.s3.get_client().delete_object(Bucket=self.bucket, Key=self._key(name))

    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix.strip('/')}"


def sample_io_manager() -> SampleStoreIOManager:
    bucket = os.environ.get(settings.S3_BUCKET)
    if not bucket:
        return SampleIOManager(base_dir=str(settings.intermediate_dir()))
    return S3SampleIOManager(
        s3=S3Resource(
            endpoint_url=os.environ.get(settings.AWS_ENDPOINT_URL) or None,
            region_name=os.environ.get(settings.AWS_REGION) or None,
        ),
        bucket=bucket,
        prefix=os.environ.get(settings.S3_PREFIX) or "trace-summaries",
    )


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
