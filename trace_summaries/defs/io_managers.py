"""IO managers: where each asset's partitions are stored, one object per (hour, team) partition.

Both handle ranged runs (a backfill or a sharded schedule tick covers many partitions in one step): outputs
and inputs are dicts keyed by partition key, named below for what they hold.

* ``sampled_traces`` stores ``SamplesByPartition`` as JSON-lines objects (``sample.model``), on local disk
  or S3, and loads the same type.
* ``trace_summaries`` stores ``SummariesByPartition`` (each partition's outcome, its events among them) by
  replacing the partition's rows in the events table (``write.rows``), and loads ``EventsByPartition``:
  exactly the events that are in the table.
"""

import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import dagster as dg
from boto3.s3.transfer import TransferConfig
from dagster_aws.s3 import S3Resource
from pydantic import PrivateAttr

from trace_summaries.config import Config
from trace_summaries.defs.partition_sets import WINDOW
from trace_summaries.defs.resources import ClickHouseResource
from trace_summaries.partitions import InvalidTeamKey, TeamHour, partition_object_name
from trace_summaries.sample import TeamHourSample, jsonl_lines
from trace_summaries.summarize.partition import PartitionSummaries
from trace_summaries.write.event import SummaryEvent
from trace_summaries.write.rows import SummaryWindow, read_partitions, replace_partitions

SamplesByPartition = dict[str, TeamHourSample]
SummariesByPartition = dict[str, PartitionSummaries]
EventsByPartition = dict[str, list[SummaryEvent]]


class SampleStoreIOManager(dg.ConfigurableIOManager):
    """Stores ``sampled_traces`` as JSON lines, one object per partition: not pickle, so objects are safe
    to load and readable by other tools. Subclasses say where objects live."""

    # Objects are written and read line by line (``TeamHourSample.iter_jsonl``/``read_jsonl``): a partition
    # at the size limits is ~200 MB of JSON lines, which must not sit in memory whole next to the sample.
    def _write(self, name: str, sample: TeamHourSample) -> None:
        raise NotImplementedError

    def _read(self, name: str) -> TeamHourSample | None:
        raise NotImplementedError

    def _delete(self, name: str) -> None:
        raise NotImplementedError

    def location(self) -> str:
        raise NotImplementedError

    def handle_output(self, context: dg.OutputContext, obj: SamplesByPartition) -> None:
        asset = context.asset_key.path[-1]
        for key in set(map(str, context.asset_partition_keys)) - set(obj):
            # A partition of the range that failed: drop its old object so no later step reads stale data.
            self._delete(partition_object_name(asset, key))
        for key, sample in obj.items():
            self._write(partition_object_name(asset, key), sample)
        context.add_output_metadata({"objects_written": len(obj), "location": self.location()})

    def load_input(self, context: dg.InputContext) -> SamplesByPartition:
        """The samples of the requested partitions that exist; a missing one is a partition that failed."""
        asset = context.asset_key.path[-1]
        samples: SamplesByPartition = {}
        for key in context.asset_partition_keys:
            sample = self._read(partition_object_name(asset, key))
            if sample is not None:
                samples[str(key)] = sample
        return samples


class SampleIOManager(SampleStoreIOManager):
    """Objects on the local filesystem (the default: laptops and single-node deployments)."""

    base_dir: str

    def _write(self, name: str, sample: TeamHourSample) -> None:
        path = Path(self.base_dir) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename: a run killed mid-write never leaves a truncated object behind.
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as handle:
            try:
                sample.write_jsonl(handle)
            except BaseException:
                Path(handle.name).unlink(missing_ok=True)
                raise
        os.replace(handle.name, path)

    def _read(self, name: str) -> TeamHourSample | None:
        try:
            handle = (Path(self.base_dir) / name).open("rb")
        except FileNotFoundError:
            return None
        with handle:
            return TeamHourSample.read_jsonl(handle)

    def _delete(self, name: str) -> None:
        (Path(self.base_dir) / name).unlink(missing_ok=True)

    def location(self) -> str:
        return self.base_dir


# At most 4 parts of 8 MB in memory at once (s3transfer's default is 10): a flat ~32 MB whatever the sample.
_UPLOAD = TransferConfig(multipart_chunksize=8 * 1024 * 1024, max_concurrency=4)
_UPLOAD.max_in_memory_upload_chunks = 4
_READ_CHUNK = 1024 * 1024


class _LinesStream(io.RawIOBase):
    """A raw stream over an iterator of byte strings, so ``upload_fileobj`` uploads the object as it is
    serialized, never built whole. Read it through ``io.BufferedReader``: its ``read(n)`` returns ``n`` bytes
    unless the stream ends, as s3transfer expects (it takes a short read for the last part, and S3 rejects a
    part under 5 MB that is not the last)."""

    def __init__(self, lines: Iterator[bytes]) -> None:
        super().__init__()
        self._lines = lines
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            line = next(self._lines, None)
            if line is None:
                return 0
            self._pending = memoryview(line)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


class S3SampleIOManager(SampleStoreIOManager):
    """Objects in S3 or any S3-compatible store (``AWS_ENDPOINT_URL``): what runs on Kubernetes share."""

    s3: dg.ResourceDependency[S3Resource]
    bucket: str
    prefix: str = "trace-summaries"

    def _key(self, name: str) -> str:
        return f"{self.prefix.strip('/')}/{name}" if self.prefix.strip("/") else name

    def _write(self, name: str, sample: TeamHourSample) -> None:
        # Streamed as the lines are serialized (a multipart upload past the threshold, parts held in memory
        # bounded by ``_UPLOAD``). Still atomic, as a PUT is: a multipart object appears only once completed,
        # so readers see the old object or the new one, never a part; a failed upload is aborted.
        self.s3.get_client().upload_fileobj(
            io.BufferedReader(_LinesStream(sample.iter_jsonl())), self.bucket, self._key(name), Config=_UPLOAD
        )

    def _read(self, name: str) -> TeamHourSample | None:
        client = self.s3.get_client()
        try:
            body = client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"]
        except client.exceptions.NoSuchKey:
            return None
        with closing(body):
            return TeamHourSample.read_jsonl(jsonl_lines(body.iter_chunks(_READ_CHUNK)))

    def _delete(self, name: str) -> None:
        self.s3.get_client().delete_object(Bucket=self.bucket, Key=self._key(name))

    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix.strip('/')}"


def sample_io_manager(config: Config) -> SampleStoreIOManager:
    if not config.s3.s3_bucket:
        return SampleIOManager(base_dir=str(config.store.intermediate_path))
    return S3SampleIOManager(
        s3=S3Resource(endpoint_url=config.s3.aws_endpoint_url, region_name=config.s3.aws_region),
        bucket=config.s3.s3_bucket,
        prefix=config.s3.prefix,
    )


class SummaryEventsIOManager(dg.ConfigurableIOManager):
    """Writes each partition's `$ai_trace_summary` events into the events table, replacing earlier ones.

    Downstream assets consume exactly what is in the table: ``handle_output`` reads the partitions back in
    its own session right after writing them, and that read serves the same run's downstream steps (with
    the in-process executor, the asset check and `embedding_requests` run in this process), which then open
    no store session of their own (~0.2 s each on the embedded store). Any other reader, such as a step in
    another process or a later run, reads the table.
    """

    clickhouse: dg.ResourceDependency[ClickHouseResource]
    _read_back: tuple[str, EventsByPartition] | None = PrivateAttr(default=None)

    def handle_output(self, context: dg.OutputContext, obj: SummariesByPartition) -> None:
        windows = {key: SummaryWindow(s.team_id, s.window_start, s.window_end) for key, s in obj.items()}
        with self.clickhouse.session() as client:
            written = replace_partitions(client, list(obj.values()))
            stored = read_partitions(client, list(windows.values()))
        run_id = _run_id(context)
        if run_id is not None:
            self._read_back = (run_id, {key: stored[window] for key, window in windows.items()})
        context.add_output_metadata({"events_written": written, "sink": self.clickhouse.store.describe()})

    def load_input(self, context: dg.InputContext) -> EventsByPartition:
        windows: dict[str, SummaryWindow] = {}
        for key in context.asset_partition_keys:
            try:
                partition = TeamHour.parse(key, WINDOW)
            except InvalidTeamKey:
                continue  # nothing is ever written for a key that is not a team
            windows[partition.key] = SummaryWindow(
                partition.team_id, partition.window_start, partition.window_end
            )
        if self._read_back is not None and self._read_back[0] == _run_id(context):
            written = self._read_back[1]
            if windows.keys() <= written.keys():
                return {key: written[key] for key in windows}
        if not windows:
            return {}
        with self.clickhouse.session() as client:
            loaded = read_partitions(client, list(windows.values()))
        return {key: loaded[window] for key, window in windows.items()}


def _run_id(context: dg.InputContext | dg.OutputContext) -> str | None:
    """The run being executed, or None for a context built outside a run (tests, tools)."""
    try:
        return context.step_context.run_id
    except dg.DagsterInvariantViolationError:
        return None


def summary_events_io_manager(clickhouse: ClickHouseResource) -> SummaryEventsIOManager:
    return SummaryEventsIOManager(clickhouse=clickhouse)
