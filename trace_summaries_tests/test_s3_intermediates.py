"""`sampled_traces` objects in S3 (a real moto server), including ranged runs and failed partitions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource

from trace_summaries.defs.io_managers import S3SampleIOManager, SummaryEventsIOManager, partition_object_name
from trace_summaries.defs.partition_sets import TEAMS
from trace_summaries.defs.resources import ClickHouseResource, LLMResource
from trace_summaries.defs.sampled_traces import sampled_traces
from trace_summaries.defs.trace_summaries import trace_summaries
from trace_summaries.demo import seed_store
from trace_summaries.sample import SampledTrace, SamplingStats, TeamHourSample, TraceEvent
from trace_summaries.store import TraceStore
from trace_summaries_harness.s3 import S3Endpoint, moto_s3
from trace_summaries_tests.support import clock
from trace_summaries_tests.support.sample_files import sample_from_jsonl, sample_to_jsonl

HOUR = clock.HOUR
HOUR_KEY = clock.HOUR_KEY


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Endpoint]:
    with moto_s3() as endpoint:
        for name, value in endpoint.env().items():
            monkeypatch.setenv(name, value)
        yield endpoint


def test_samples_are_json_lines_objects_in_s3_and_feed_the_next_asset(
    store: TraceStore, instance: dg.DagsterInstance, s3: S3Endpoint, tmp_path: Path
) -> None:
    seed_store(store, [3, 4], [HOUR], 3, progress=False, oversized_fraction=0.0)
    instance.add_dynamic_partitions(TEAMS.name, ["3", "bad", "4"])
    io_manager = S3SampleIOManager(
        s3=S3Resource(endpoint_url=s3.endpoint_url, region_name="us-east-1"), bucket=s3.bucket, prefix="ts"
    )
    clickhouse = ClickHouseResource(dsn=store.dsn)
    # A stale object for the partition that will fail: it must not survive the run.
    s3.client.put_object(
        Bucket=s3.bucket, Key=f"ts/sampled_traces/{HOUR_KEY.replace(':', '')}/bad.jsonl", Body=b"x"
    )

    result = dg.materialize(
        [sampled_traces, trace_summaries],
        instance=instance,
        resources={
            "clickhouse": clickhouse,
            "llm": LLMResource(),
            "sample_io_manager": io_manager,
            "summary_events_io_manager": SummaryEventsIOManager(clickhouse=clickhouse),
        },
        tags={
            "dagster/asset_partition_range_start": f"{HOUR_KEY}|3",
            "dagster/asset_partition_range_end": f"{HOUR_KEY}|4",
        },
    )

    assert result.success
    keys = sorted(o["Key"] for o in s3.client.list_objects_v2(Bucket=s3.bucket)["Contents"])
    assert keys == [f"ts/sampled_traces/2026-11-20-0900/{team}.jsonl" for team in ("3", "4")]
    body = s3.client.get_object(Bucket=s3.bucket, Key=keys[0])["Body"].read()
    header = json.loads(body.splitlines()[0])
    assert header["team_id"] == 3 and header["stats"]["traces_selected"] == 3
    assert len(sample_from_jsonl(body).traces) == 3
    events = result.output_for_node("trace_summaries")
    assert {key: len(summaries.events) for key, summaries in events.items()} == {
        f"{HOUR_KEY}|3": 3,
        f"{HOUR_KEY}|4": 3,
    }


def large_sample(traces: int, chars: int) -> TeamHourSample:
    """A sample of ``traces`` traces of ~``chars`` characters each, with the characters JSON leaves unescaped
    that ``splitlines`` would split at (U+2028, U+2029, U+0085) and multi-byte ones cut by any chunking."""
    pattern = "line\u2028sep\u2029next\u0085é漢🙂 "
    text = (pattern * (chars // len(pattern) + 1))[:chars]
    return TeamHourSample(
        team_id=3,
        window_start=HOUR,
        window_end=HOUR + timedelta(hours=1),
        traces=[
            SampledTrace(
                trace_id=f"trace-{index}",
                first_timestamp=HOUR,
                event_count=1,
                properties_chars=chars,
                events=[
                    TraceEvent(
                        uuid=f"event-{index}", event="$ai_span", timestamp=HOUR, properties={"text": text}
                    )
                ],
            )
            for index in range(traces)
        ],
        stats=SamplingStats(traces_selected=traces, malformed_event_uuids=["m-1"]),
    )


def partition_contexts(key: str) -> tuple[dg.OutputContext, dg.InputContext]:
    partitions = dg.StaticPartitionsDefinition([key])
    where = {
        "asset_key": dg.AssetKey("sampled_traces"),
        "partition_key": key,
        "asset_partitions_def": partitions,
    }
    return dg.build_output_context(**where), dg.build_input_context(**where)


def test_a_sample_larger_than_a_part_is_streamed_to_s3_and_back(s3: S3Endpoint) -> None:
    # ~20 MB of JSON lines: past the multipart threshold, three parts, lines cut across parts.
    sample = large_sample(traces=12, chars=1_000_000)
    key = f"{HOUR_KEY}|3"
    output, input_ = partition_contexts(key)
    io_manager = S3SampleIOManager(
        s3=S3Resource(endpoint_url=s3.endpoint_url, region_name="us-east-1"), bucket=s3.bucket, prefix="ts"
    )

    io_manager.handle_output(output, {key: sample})

    stored = s3.client.get_object(Bucket=s3.bucket, Key="ts/" + partition_object_name("sampled_traces", key))
    assert stored["ContentLength"] > 16 * 1024 * 1024
    assert stored["ETag"].endswith('-3"')  # a multipart object's ETag ends in its number of parts
    assert stored["Body"].read() == sample_to_jsonl(sample)
    assert io_manager.load_input(input_) == {key: sample}
