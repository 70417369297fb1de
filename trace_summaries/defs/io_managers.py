"""IO managers: where each asset's partitions are stored, one object per (hour, team) partition.

Both handle ranged runs (a backfill or a sharded schedule tick covers many partitions in one step): outputs
and inputs are mappings keyed by partition key, named below for what they hold.

* ``sampled_traces`` writes each partition's sample as a JSON-lines object (``sample.model``), on local
  disk or S3, through the store as soon as it is sampled (the asset holds the IO manager as a resource), and
  returns ``StoredSamples``: the partitions written, each read back only when it is looked up. Loading gives
  the same lazy mapping, so neither step of a ranged run holds the range's samples: sampling holds one at a
  time, summarizing the few it is working on (``summarize.partition.summarize_partitions_sync``).
* ``trace_summaries`` stores ``SummariesByPartition`` (each partition's outcome, its events among them) by
  replacing the partition's rows in the events table (``write.rows``), and loads ``EventsByPartition``:
  exactly the events that are in the table.
"""

import io
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
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
from trace_summaries.sample import SamplingStats, TeamHourSample, jsonl_lines
from trace_summaries.summarize.partition import PartitionSummaries
from trace_summaries.write.event import SummaryEvent
from trace_summaries.write.rows import SummaryWindow, read_partitions, replace_partitions

SamplesByPartition = Mapping[str, TeamHourSample]
SummariesByPartition = dict[str, PartitionSummaries]
EventsByPartition = dict[str, list[SummaryEvent]]


class SampleStoreIOManager(dg.ConfigurableIOManager):
    """Stores ``sampled_traces`` as JSON lines, one object per partition: not pickle, so objects are safe
    to load and readable by other tools. Subclasses say where objects live.

    The asset writes each sample as soon as it is sampled (``write_sample``) and returns ``StoredSamples``,
    so a ranged run never holds every partition's sample at once; ``handle_output`` then only deletes the
    objects of the range's failed partitions. A plain mapping of samples is still written here whole."""

    # Objects are written and read line by line (``TeamHourSample.iter_jsonl``/``read_jsonl``): a partition
    # at the size limits is ~200 MB of JSON lines, which must not sit in memory whole next to the sample.
    def _write(self, name: str, sample: TeamHourSample) -> None:
        raise NotImplementedError

    def _read(self, name: str, *, traces: bool = True) -> TeamHourSample | None:
        """The object's sample; ``traces=False``: its header line only (stats, no traces)."""
        raise NotImplementedError

    def _exists(self, name: str) -> bool:
        raise NotImplementedError

    def _delete(self, name: str) -> None:
        raise NotImplementedError

    def location(self) -> str:
        raise NotImplementedError

    def write_sample(self, asset: str, key: str, sample: TeamHourSample) -> None:
        """Writes one partition's object (atomically: readers see the old object or the new one)."""
        self._write(partition_object_name(asset, key), sample)

    def delete_sample(self, asset: str, key: str) -> None:
        self._delete(partition_object_name(asset, key))

    def read_sample(self, asset: str, key: str, *, traces: bool = True) -> TeamHourSample | None:
        """One partition's sample, read now; None when the partition has no object (it failed).
        ``traces=False``: its header only (the sampling stats), without reading the traces."""
        return self._read(partition_object_name(asset, key), traces=traces)

    def stored(self, asset: str, keys: Iterable[str]) -> "StoredSamples":
        """The partitions among ``keys`` that have an object, each read only when looked up."""
        return StoredSamples(
            self, asset, [key for key in keys if self._exists(partition_object_name(asset, key))]
        )

    def handle_output(self, context: dg.OutputContext, obj: SamplesByPartition) -> None:
        asset = context.asset_key.path[-1]
        for key in set(map(str, context.asset_partition_keys)) - set(obj):
            # A partition of the range that failed: drop its old object so no later step reads stale data.
            self.delete_sample(asset, key)
        if not (isinstance(obj, StoredSamples) and obj.is_in(self, asset)):
            for key, sample in obj.items():
                self.write_sample(asset, key, sample)
        context.add_output_metadata({"objects_written": len(obj), "location": self.location()})

    def load_input(self, context: dg.InputContext) -> "StoredSamples":
        """The requested partitions that have a sample (a missing one is a partition that failed), each read
        when it is looked up: the consumer decides how many samples are in memory at once."""
        return self.stored(context.asset_key.path[-1], map(str, context.asset_partition_keys))


class StoredSamples(Mapping[str, TeamHourSample]):
    """Samples in a sample store, keyed by partition, in the order of the range: each lookup reads its
    object anew and keeps nothing, so whoever drops a sample frees it (and a consumer should look each
    partition up once: every lookup reads a whole object)."""

    def __init__(self, store: SampleStoreIOManager, asset: str, keys: Iterable[str]) -> None:
        self._store = store
        self._asset = asset
        self._keys = dict.fromkeys(keys)

    def is_in(self, store: SampleStoreIOManager, asset: str) -> bool:
        """Whether these samples are already objects of ``store`` (same kind and location) for ``asset``."""
        same = type(store) is type(self._store) and store.location() == self._store.location()
        return same and asset == self._asset

    def __getitem__(self, key: str) -> TeamHourSample:
        if key not in self._keys:
            raise KeyError(key)
        sample = self._store.read_sample(self._asset, key)
        if sample is None:
            raise KeyError(f"{key}: its sample is no longer in {self._store.location()}")
        return sample

    def stats(self, key: str) -> SamplingStats:
        """A partition's sampling stats from its object's header line, without reading its traces (what
        ``hourly_report`` needs of every team of the hour)."""
        if key not in self._keys:
            raise KeyError(key)
        sample = self._store.read_sample(self._asset, key, traces=False)
        if sample is None:
            raise KeyError(f"{key}: its sample is no longer in {self._store.location()}")
        return sample.stats

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"StoredSamples({self._store.location()}, {self._asset}, {list(self._keys)})"


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

    def _read(self, name: str, *, traces: bool = True) -> TeamHourSample | None:
        try:
            handle = (Path(self.base_dir) / name).open("rb")
        except FileNotFoundError:
            return None
        with handle:
            return TeamHourSample.read_jsonl(handle, traces=traces)

    def _exists(self, name: str) -> bool:
        return (Path(self.base_dir) / name).is_file()

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

    def _read(self, name: str, *, traces: bool = True) -> TeamHourSample | None:
        client = self.s3.get_client()
        try:
            body = client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"]
        except client.exceptions.NoSuchKey:
            return None
        with closing(body):  # closed early when only the header is wanted: the rest is never downloaded
            return TeamHourSample.read_jsonl(jsonl_lines(body.iter_chunks(_READ_CHUNK)), traces=traces)

    def _exists(self, name: str) -> bool:
        client = self.s3.get_client()
        try:
            client.head_object(Bucket=self.bucket, Key=self._key(name))
        except client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

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
