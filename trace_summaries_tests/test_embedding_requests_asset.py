"""The `embedding_requests` asset against a real Kafka-protocol broker."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from trace_summaries.defs.embedding_requests import embedding_requests
from trace_summaries.defs.io_managers import SampleIOManager, SummaryEventsIOManager
from trace_summaries.defs.partition_sets import TEAMS
from trace_summaries.defs.resources import ClickHouseResource, KafkaResource, LLMResource
from trace_summaries.defs.sampled_traces import sampled_traces
from trace_summaries.defs.trace_summaries import trace_summaries
from trace_summaries.demo import seed_store
from trace_summaries.store import TraceStore
from trace_summaries.write.rows import SummaryWindow, read_partitions
from trace_summaries_harness.kafka_broker import KafkaBroker, running_kafka_broker
from trace_summaries_harness.ports import free_port
from trace_summaries_tests.support import clock
from trace_summaries_tests.support.kafka_topics import key_difference, message_keys, read_topic

HOUR = clock.HOUR
TEAM = 6
KEY = f"{clock.HOUR_KEY}|{TEAM}"
TRACES = 5
TOPIC = "document_embeddings_input"


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    with running_kafka_broker(tmp_path / "kafka") as kafka_broker:
        kafka_broker.create_topic(TOPIC)
        yield kafka_broker


def materialize(
    store: TraceStore,
    instance: dg.DagsterInstance,
    tmp_path: Path,
    kafka: KafkaResource,
    run_config: dict[str, Any] | None = None,
    selection: list[dg.AssetsDefinition] | None = None,
) -> dg.ExecuteInProcessResult:
    clickhouse = ClickHouseResource(dsn=store.dsn)
    return dg.materialize(
        [sampled_traces, trace_summaries, embedding_requests],
        instance=instance,
        partition_key=KEY,
        run_config=run_config,
        selection=selection,
        resources={
            "clickhouse": clickhouse,
            "llm": LLMResource(),
            "kafka": kafka,
            "sample_io_manager": SampleIOManager(base_dir=str(tmp_path / "intermediate")),
            "summary_events_io_manager": SummaryEventsIOManager(clickhouse=clickhouse),
        },
    )


def embedding_metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    [materialization] = result.asset_materializations_for_node("embedding_requests")
    return {key: value.value for key, value in materialization.metadata.items()}


@pytest.fixture
def seeded(store: TraceStore, instance: dg.DagsterInstance) -> TraceStore:
    seed_store(store, [TEAM], [HOUR], TRACES, progress=False, oversized_fraction=0.0)
    instance.add_dynamic_partitions(str(TEAMS.name), [str(TEAM)])
    return store


def test_each_summary_becomes_one_contract_message_and_a_rerun_resends_the_same_keys(
    seeded: TraceStore, instance: dg.DagsterInstance, tmp_path: Path, broker: KafkaBroker
) -> None:
    kafka = KafkaResource(bootstrap_servers=broker.bootstrap_servers, flush_timeout_s=10)
    first = materialize(seeded, instance, tmp_path, kafka)
    assert first.success
    assert embedding_metadata(first)["embedding_requests_succeeded"] == TRACES

    messages = read_topic(broker.client_config(), TOPIC)
    events = {
        event.properties.trace_id: event for event in first.output_for_node("trace_summaries")[KEY].events
    }
    # One message per summary, complete: an extra message (any key) fails here, named.
    once = Counter(f"{TEAM}:llm-trace-summary-detailed:{trace}" for trace in events)
    assert len(events) == TRACES
    assert message_keys(messages) == once, key_difference(message_keys(messages), once)
    for message in messages:
        body = json.loads(message.value() or b"")
        event = events[body["document_id"]]
        assert (message.key() or b"").decode() == f"{TEAM}:llm-trace-summary-detailed:{body['document_id']}"
        assert body == {
            "team_id": TEAM,
            "product": "llm-analytics",
            "document_type": "llm-trace-summary-detailed",
            "rendering": f"{TEAM}_2026-11-20T09:00:00+00:00",
            "document_id": event.properties.trace_id,
            "timestamp": "2026-11-20T10:00:00+00:00",
            "content": body["content"],
            "models": ["multilingual-e5-small-384"],
            "metadata": {},
        }
        assert body["content"].startswith(f"Title: {event.properties.title}\n")
        assert "\nSummary:\n- " in body["content"] and " L0" not in body["content"]

    second = materialize(seeded, instance, tmp_path, kafka)
    assert second.success
    resent = read_topic(broker.client_config(), TOPIC)
    twice = once + once
    assert message_keys(resent) == twice, key_difference(message_keys(resent), twice)
    keys = [m.key() or b"" for m in resent]
    assert sorted(keys[:TRACES]) == sorted(keys[TRACES:])
    values = [m.value() or b"" for m in resent]
    assert sorted(values[:TRACES]) == sorted(values[TRACES:])


def test_with_the_broker_down_summaries_stay_written_and_failures_are_counted(
    seeded: TraceStore, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    dead = KafkaResource(bootstrap_servers=f"127.0.0.1:{free_port()}", flush_timeout_s=2)
    started = time.monotonic()

    result = materialize(seeded, instance, tmp_path, dead)

    assert result.success
    assert time.monotonic() - started < 60  # bounded by the flush timeout, not hanging
    meta = embedding_metadata(result)
    assert meta["embedding_requests_succeeded"] == 0 and meta["embedding_requests_failed"] == TRACES
    with seeded.session() as client:
        assert client.command("SELECT count() FROM events WHERE event = '$ai_trace_summary'") == TRACES


def test_without_kafka_configured_requests_are_skipped_not_failed(
    seeded: TraceStore, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    result = materialize(seeded, instance, tmp_path, KafkaResource())
    assert result.success
    meta = embedding_metadata(result)
    assert meta["embedding_requests_skipped"] == TRACES and meta["embedding_requests_failed"] == 0


def test_a_run_queues_the_summaries_of_its_own_mode_only(
    seeded: TraceStore, instance: dg.DagsterInstance, tmp_path: Path, broker: KafkaBroker
) -> None:
    kafka = KafkaResource(bootstrap_servers=broker.bootstrap_servers, flush_timeout_s=10)

    def keys(mode: str) -> Counter[str]:
        window = SummaryWindow(TEAM, HOUR, HOUR + timedelta(hours=1))
        with seeded.session() as client:
            stored = [e for e in read_partitions(client, [window])[window] if e.properties.mode == mode]
        return Counter(f"{TEAM}:llm-trace-summary-{mode}:{e.properties.trace_id}" for e in stored)

    minimal = materialize(
        seeded, instance, tmp_path, kafka, {"ops": {"trace_summaries": {"config": {"mode": "minimal"}}}}
    )
    assert minimal.success
    after_minimal = message_keys(read_topic(broker.client_config(), TOPIC))
    assert after_minimal == keys("minimal") and sum(after_minimal.values()) == TRACES

    detailed = materialize(
        seeded, instance, tmp_path, kafka, {"ops": {"trace_summaries": {"config": {"mode": "detailed"}}}}
    )
    assert detailed.success
    # Both modes are stored for the window now; the detailed run sent its own summaries, none of the others.
    assert len(keys("minimal")) == len(keys("detailed")) == TRACES
    sent = message_keys(read_topic(broker.client_config(), TOPIC)) - after_minimal
    assert sent == keys("detailed"), key_difference(sent, keys("detailed"))
    assert embedding_metadata(detailed)["embedding_requests_succeeded"] == TRACES
    assert embedding_metadata(detailed)["mode"] == "detailed"

    # A run of `embedding_requests` alone re-sends what is stored: the mode it is given, else every mode.
    before = message_keys(read_topic(broker.client_config(), TOPIC))
    resend = materialize(
        seeded,
        instance,
        tmp_path,
        kafka,
        {"ops": {"embedding_requests": {"config": {"mode": "minimal"}}}},
        selection=[embedding_requests],
    )
    assert resend.success
    resent = message_keys(read_topic(broker.client_config(), TOPIC)) - before
    assert resent == keys("minimal"), key_difference(resent, keys("minimal"))
    everything = materialize(seeded, instance, tmp_path, kafka, selection=[embedding_requests])
    assert everything.success
    assert embedding_metadata(everything)["embedding_requests_succeeded"] == 2 * TRACES
