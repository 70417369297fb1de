"""`summarize_window_job`: an explicit window of one team, from the launchpad or the CLI, through Dagster.

What a window's run must hold is computed with SQL of its own (``expected_traces``: every trace whose first
event falls in the window), not with the pipeline's code; messages are read to the topic's high watermark.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from trace_summaries.defs.partition_sets import TEAMS
from trace_summaries.defs.resources import ClickHouseResource, KafkaResource, LLMResource
from trace_summaries.defs.summarize_window import summarize_window_job
from trace_summaries.demo import seed_store
from trace_summaries.queue.request import document_type_for_mode
from trace_summaries.store import TraceStore
from trace_summaries.write.event import batch_run_id
from trace_summaries_harness.kafka_broker import KafkaBroker, running_kafka_broker
from trace_summaries_tests.support import clock
from trace_summaries_tests.support.expected_traces import expected_traces, summary_rows
from trace_summaries_tests.support.kafka_topics import message_keys, read_topic
from trace_summaries_tests.support.pipeline_defs import pipeline_definitions

TEAM = 7
TOPIC = "document_embeddings_input"
START = clock.HOUR
HALF = START + timedelta(minutes=30)


@pytest.fixture
def seeded(tmp_path: Path) -> TraceStore:
    store = TraceStore(f"chdb://{tmp_path / 'clickhouse'}")
    seed_store(store, [TEAM], [START], 12, progress=False, oversized_fraction=0.0)
    return store


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    with running_kafka_broker(tmp_path / "kafka") as kafka_broker:
        kafka_broker.create_topic(TOPIC)
        yield kafka_broker


def run_window(
    store: TraceStore,
    instance: dg.DagsterInstance,
    kafka: KafkaResource,
    start: str,
    end: str,
    **config: Any,
) -> dg.ExecuteInProcessResult:
    """The job as the launchpad or `dagster job execute -c` launches it: config for its one op."""
    defs = dg.Definitions(
        jobs=[summarize_window_job],
        resources={"clickhouse": ClickHouseResource(dsn=store.dsn), "llm": LLMResource(), "kafka": kafka},
    )
    op_config = {"team_id": TEAM, "window_start": start, "window_end": end, **config}
    return defs.resolve_job_def("summarize_window_job").execute_in_process(
        run_config={"ops": {"summarize_window": {"config": op_config}}},
        instance=instance,
        raise_on_error=False,
    )


def stored(store: TraceStore) -> Counter[str]:
    """Summary events of the team, by uuid."""
    return Counter(uuid for uuid, _, _, _ in summary_rows(store, [TEAM]))


def test_a_half_hour_window_summarizes_its_traces_once_however_often_it_is_launched(
    seeded: TraceStore, instance: dg.DagsterInstance, broker: KafkaBroker
) -> None:
    kafka = KafkaResource(bootstrap_servers=broker.bootstrap_servers, flush_timeout_s=10)
    wanted = {trace for _, _, trace in expected_traces(seeded, [TEAM], START, HALF)}
    assert 0 < len(wanted) < len(expected_traces(seeded, [TEAM], START, START + timedelta(hours=1)))

    first = run_window(seeded, instance, kafka, "2026-11-20T09:00:00Z", "2026-11-20T09:30:00+00:00")
    assert first.success
    after_first = stored(seeded)
    with seeded.session() as client:
        rows = client.query(
            "SELECT JSONExtractString(properties, '$ai_trace_id'), JSONExtractString(properties,"
            " '$ai_batch_run_id') FROM events WHERE event = '$ai_trace_summary' AND team_id = {team:Int64}",
            parameters={"team": TEAM},
        ).result_rows
    assert {trace for trace, _ in rows} == wanted
    # The run's identity names the window: start and end.
    assert (
        {run for _, run in rows}
        == {batch_run_id(TEAM, START, HALF)}
        == {f"{TEAM}_2026-11-20T09:00:00+00:00_2026-11-20T09:30:00+00:00"}
    )
    keys = Counter(f"{TEAM}:{document_type_for_mode('detailed')}:{trace}" for trace in wanted)
    assert message_keys(read_topic(broker.client_config(), TOPIC)) == keys

    again = run_window(seeded, instance, kafka, "2026-11-20T09:00:00Z", "2026-11-20T09:30:00Z")
    assert again.success
    assert stored(seeded) == after_first  # same event ids, each once
    assert message_keys(read_topic(broker.client_config(), TOPIC)) == keys + keys  # same keys, re-sent


def test_an_hour_window_replaces_the_hour_partition_s_summaries_instead_of_adding_to_them(
    seeded: TraceStore, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    instance.add_dynamic_partitions(TEAMS.name, [str(TEAM)])
    partition_run = (
        pipeline_definitions(seeded, tmp_path)
        .resolve_job_def("trace_summaries_job")
        .execute_in_process(instance=instance, partition_key=f"{clock.HOUR_KEY}|{TEAM}")
    )
    assert partition_run.success
    by_partition = stored(seeded)
    assert by_partition and set(by_partition.values()) == {1}

    window = run_window(seeded, instance, KafkaResource(), "2026-11-20T09:00:00Z", "2026-11-20T10:00:00Z")
    assert window.success
    assert stored(seeded) == by_partition


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2026-11-20T10:00:00Z", "2026-11-20T09:00:00Z", "after window_start"),
        ("2026-11-20T09:00:00Z", "2026-11-21T09:00:01Z", "at most 24 hours"),
        ("2026-11-20T09:00:00", "2026-11-20T10:00:00Z", "no UTC offset"),
        ("yesterday", "2026-11-20T10:00:00Z", "not an RFC3339 time"),
    ],
)
def test_a_bad_window_fails_with_what_is_wrong_and_writes_nothing(
    seeded: TraceStore, instance: dg.DagsterInstance, start: str, end: str, message: str
) -> None:
    result = run_window(seeded, instance, KafkaResource(), start, end)
    assert not result.success
    assert message in failure_text(result)
    assert stored(seeded) == Counter()


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    """What a user reads of a failed run: each failure event's message and error (with its causes)."""
    parts: list[str] = []
    for event in result.all_events:
        if not event.is_failure:
            continue
        parts.append(event.message or "")
        error = getattr(event.event_specific_data, "error", None)
        while error is not None:
            parts.append(error.message)
            error = error.cause
    return "\n".join(parts)
