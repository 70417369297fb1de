"""`sampled_traces` objects in S3 (a real moto server), including ranged runs and failed partitions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource

from trace_summaries.defs.io_managers import S3SampleIOManager, SummaryEventsIOManager
from trace_summaries.defs.partitions import TEAMS
from trace_summaries.defs.resources import ClickHouseResource, LLMResource
from trace_summaries.defs.sampled_traces import sampled_traces
from trace_summaries.defs.trace_summaries import trace_summaries
from trace_summaries.sampling import TeamHourSample
from trace_summaries.seed import seed_store
from trace_summaries.store import TraceStore
from trace_summaries_tests.support.s3 import S3Endpoint, moto_s3

HOUR = datetime(2026, 11, 20, 9, tzinfo=UTC)
HOUR_KEY = "2026-11-20-09:00"


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
    assert len(TeamHourSample.from_jsonl(body).traces) == 3
    events = result.output_for_node("trace_summaries")
    assert {key: len(summaries.events) for key, summaries in events.items()} == {
        f"{HOUR_KEY}|3": 3,
        f"{HOUR_KEY}|4": 3,
    }
