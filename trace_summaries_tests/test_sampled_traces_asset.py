"""The `sampled_traces` asset materialized on a real Dagster instance and embedded store."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
from pydantic_core import PydanticSerializationError

from trace_summaries.defs.io_managers import SampleIOManager, partition_object_name
from trace_summaries.defs.partition_sets import TEAMS
from trace_summaries.defs.resources import ClickHouseResource
from trace_summaries.defs.sampled_traces import SampledTracesConfig, sampled_traces
from trace_summaries.sample import SampledTrace, SamplingConfig, SamplingStats, TeamHourSample, TraceEvent
from trace_summaries.store import TraceStore
from trace_summaries_tests.support import clock
from trace_summaries_tests.support.events import ai_event
from trace_summaries_tests.support.sample_files import sample_from_jsonl, sample_to_jsonl

HOUR = clock.HOUR
HOUR_KEY = clock.HOUR_KEY


def resources(store: TraceStore, tmp_path: Path) -> dict[str, object]:
    return {
        "clickhouse": ClickHouseResource(dsn=store.dsn),
        "sample_io_manager": SampleIOManager(base_dir=str(tmp_path / "intermediate")),
    }


def seed_two_teams(store: TraceStore) -> None:
    rows = [ai_event(3, f"t3-{i}", HOUR + timedelta(minutes=i), index=0) for i in range(4)]
    rows += [ai_event(4, f"t4-{i}", HOUR + timedelta(minutes=i)) for i in range(2)]
    rows += [ai_event(3, "t3-long", HOUR, index=i) for i in range(60)]
    store.insert_events(rows)


def test_materializing_a_partition_writes_its_sample_and_metadata(
    store: TraceStore, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    seed_two_teams(store)
    instance.add_dynamic_partitions(TEAMS.name, ["3", "4"])

    result = dg.materialize(
        [sampled_traces],
        instance=instance,
        partition_key=f"{HOUR_KEY}|3",
        resources=resources(store, tmp_path),
        run_config={"ops": {"sampled_traces": {"config": {"max_traces": 3}}}},
    )

    assert result.success
    metadata = result.asset_materializations_for_node("sampled_traces")[0].metadata
    assert metadata["traces_in_window"].value == 5
    assert metadata["traces_selected"].value == 3
    assert metadata["traces_excluded_too_many_events"].value == 1
    assert metadata["events_fetched"].value == 3
    assert metadata["query_seconds"].value >= 0
    stored = tmp_path / "intermediate" / partition_object_name("sampled_traces", f"{HOUR_KEY}|3")
    sample = sample_from_jsonl(stored.read_bytes())
    assert sample.team_id == 3 and len(sample.traces) == 3
    assert all(trace.trace_id.startswith("t3-") for trace in sample.traces)


def test_a_ranged_run_samples_each_team_on_its_own(
    store: TraceStore, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    seed_two_teams(store)
    instance.add_dynamic_partitions(TEAMS.name, ["3", "4"])

    result = dg.materialize(
        [sampled_traces],
        instance=instance,
        resources=resources(store, tmp_path),
        tags={
            "dagster/asset_partition_range_start": f"{HOUR_KEY}|3",
            "dagster/asset_partition_range_end": f"{HOUR_KEY}|4",
        },
    )

    assert result.success
    materialized = instance.get_materialized_partitions(dg.AssetKey("sampled_traces"))
    assert materialized == {f"{HOUR_KEY}|3", f"{HOUR_KEY}|4"}
    for team, expected in (("3", 4), ("4", 2)):
        path = tmp_path / "intermediate" / partition_object_name("sampled_traces", f"{HOUR_KEY}|{team}")
        assert len(sample_from_jsonl(path.read_bytes()).traces) == expected


def test_a_team_key_that_is_not_a_positive_integer_fails_with_a_clear_message(
    store: TraceStore, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    instance.add_dynamic_partitions(TEAMS.name, ["team_a"])

    result = dg.materialize(
        [sampled_traces],
        instance=instance,
        partition_key=f"{HOUR_KEY}|team_a",
        resources=resources(store, tmp_path),
        raise_on_error=False,
    )

    assert not result.success
    failure = next(event for event in result.all_events if event.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.error.message
    assert "invalid team partition key 'team_a'" in message
    assert "positive integer" in message


def test_the_sample_io_manager_streams_objects_and_never_leaves_a_partial_one(tmp_path: Path) -> None:
    key = f"{HOUR_KEY}|3"
    partitions = dg.StaticPartitionsDefinition([key])
    where = {
        "asset_key": dg.AssetKey("sampled_traces"),
        "partition_key": key,
        "asset_partitions_def": partitions,
    }
    # Characters JSON leaves unescaped and ``splitlines`` would split at, in lines longer than any buffer.
    text = "a\u2028b\u2029c\u0085d\r漢🙂 " * 200_000
    traces = [
        SampledTrace(
            trace_id=f"t-{index}",
            first_timestamp=HOUR,
            event_count=1,
            properties_chars=len(text),
            events=[
                TraceEvent(uuid=f"e-{index}", event="$ai_span", timestamp=HOUR, properties={"text": text})
            ],
        )
        for index in range(3)
    ]
    sample = TeamHourSample(
        team_id=3,
        window_start=HOUR,
        window_end=HOUR + timedelta(hours=1),
        traces=traces,
        stats=SamplingStats(),
    )
    io_manager = SampleIOManager(base_dir=str(tmp_path / "intermediate"))
    stored = tmp_path / "intermediate" / partition_object_name("sampled_traces", key)

    io_manager.handle_output(dg.build_output_context(**where), {key: sample})
    assert stored.read_bytes() == sample_to_jsonl(sample)
    assert io_manager.load_input(dg.build_input_context(**where)) == {key: sample}

    # A write that fails half way (a value that cannot be serialized, after a first trace was written).
    broken = sample.model_copy(deep=True)
    broken.traces[-1].events[0].properties["text"] = object()
    with pytest.raises(PydanticSerializationError):
        io_manager.handle_output(dg.build_output_context(**where), {key: broken})
    assert io_manager.load_input(dg.build_input_context(**where)) == {key: sample}
    assert [path.name for path in stored.parent.iterdir()] == [stored.name]


def test_every_sampling_setting_is_run_configuration_with_the_same_default() -> None:
    # A setting added to SamplingConfig must also be settable from the launchpad, defaulting the same.
    assert SampledTracesConfig().model_dump() == SamplingConfig().model_dump()
