"""Semantic search: summaries go through Kafka and the worker into ClickHouse, a query finds the nearest.

The test server's embeddings are hashed bags of words, so "nearest" is checkable: the summary sharing the
most words with the query wins, and the distance is exactly 1 - cosine of the two hashed vectors.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import openai
import pytest

from trace_summaries.queue.producer import EmbeddingRequestProducer
from trace_summaries.queue.request import EmbeddingRequest, SummaryDocument, build_embedding_request
from trace_summaries.store import TraceStore
from trace_summaries.worker.command import add_search_arguments, run_search
from trace_summaries.worker.consumer import EmbeddingWorker
from trace_summaries.worker.document_embeddings import (
    EmbeddingRow,
    ensure_embeddings_table,
    insert_embeddings,
)
from trace_summaries.worker.embedder import OpenAIEmbedder
from trace_summaries.worker.embedding_model import EmbeddingModel
from trace_summaries.worker.search import (
    first_bullet_from_content,
    search_similar_traces,
    title_from_content,
    window_start_from_rendering,
)
from trace_summaries_harness.kafka_broker import running_kafka_broker
from trace_summaries_harness.openai_server import (
    OpenAICompatibleServer,
    hashed_embedding,
    openai_server,
)

TOPIC = "document_embeddings_input"
SUMMARY_TIME = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)
LARGE = "text-embedding-3-large-3072"
TRACES = {
    "trace-refund": (
        "Refund request for a failed card payment",
        ["user asked for a refund of a card payment"],
    ),
    "trace-weather": ("Weather forecast lookup for Paris", ["agent called the weather tool for Paris"]),
    "trace-sql": ("Database migration timed out", ["the SQL migration tool timed out after 30 seconds"]),
}


@pytest.fixture
def server() -> Iterator[OpenAICompatibleServer]:
    with openai_server() as openai_compatible:
        yield openai_compatible


@pytest.fixture
def embedder(server: OpenAICompatibleServer) -> OpenAIEmbedder:
    return OpenAIEmbedder(openai.OpenAI(base_url=server.base_url, api_key="test-key", max_retries=0))


def summary_requests(
    team_id: int = 3, *, mode: str = "detailed", batch_run_id: str = "3_2026-11-03T09:00:00+00:00"
) -> list[EmbeddingRequest]:
    return [
        build_embedding_request(
            SummaryDocument(
                team_id=team_id,
                trace_id=trace_id,
                mode=mode,
                batch_run_id=batch_run_id,
                timestamp=SUMMARY_TIME + timedelta(minutes=index),
                title=title,
                bullets=bullets,
            ),
            models=[LARGE],
        )
        for index, (trace_id, (title, bullets)) in enumerate(TRACES.items())
    ]


def store_directly(store: TraceStore, embedder: OpenAIEmbedder, requests: Sequence[EmbeddingRequest]) -> None:
    """Embeds and inserts without Kafka, for tests about the query rather than the pipeline."""
    ensure_embeddings_table(store)
    model = EmbeddingModel.parse(LARGE)
    vectors = embedder.embed(model, [r.content for r in requests])
    insert_embeddings(
        store,
        [
            EmbeddingRow(
                r.team_id,
                r.product,
                r.document_type,
                model.name,
                r.rendering,
                r.document_id,
                r.timestamp,
                r.content,
                vector,
            )
            for r, vector in zip(requests, vectors, strict=True)
        ],
    )


def cosine_distance(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return 1 - dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_search_finds_the_nearest_summary_after_the_kafka_round_trip(
    tmp_path: Path, store: TraceStore, server: OpenAICompatibleServer, embedder: OpenAIEmbedder
) -> None:
    requests = summary_requests()
    with running_kafka_broker(tmp_path / "kafka") as broker:
        broker.create_topic(TOPIC)
        with EmbeddingRequestProducer(broker.client_config(), TOPIC, flush_timeout_s=10) as producer:
            assert producer.send(requests).succeeded == 3
        worker = EmbeddingWorker(
            broker.client_config(),
            TOPIC,
            "search-test",
            store=store,
            embedder=embedder,
            batch_size=3,
            batch_timeout_s=1,
            consumer_config={"session.timeout.ms": 6000},
        )
        with worker:
            stored, deadline = 0, time.monotonic() + 45
            while stored < 3:
                assert time.monotonic() < deadline, f"the worker stored {stored} of 3 summaries"
                stored += worker.run_once().stored

    query = "why did the card payment refund fail"
    hits = search_similar_traces(store, embedder, model=LARGE, team_id=3, query=query)

    assert hits[0].trace_id == "trace-refund"
    assert hits[0].title == "Refund request for a failed card payment"
    assert {hit.trace_id for hit in hits} == set(TRACES)
    assert [hit.distance for hit in hits] == sorted(hit.distance for hit in hits)
    expected = cosine_distance(hashed_embedding(query, 3072), hashed_embedding(requests[0].content, 3072))
    assert hits[0].distance == pytest.approx(expected, abs=1e-9)
    assert hits[0].document_type == "llm-trace-summary-detailed"
    assert hits[0].window_end == SUMMARY_TIME
    assert hits[0].window_start == datetime(2026, 11, 3, 9, 0, tzinfo=UTC)  # named by the batch run id
    assert hits[0].first_bullet == "user asked for a refund of a card payment"


def test_search_stays_within_the_team_and_the_mode(store: TraceStore, embedder: OpenAIEmbedder) -> None:
    store_directly(store, embedder, summary_requests(team_id=3))
    store_directly(store, embedder, summary_requests(team_id=4))
    store_directly(store, embedder, summary_requests(team_id=3, mode="minimal")[:1])

    team_4 = search_similar_traces(store, embedder, model=LARGE, team_id=4, query="weather in Paris", limit=1)
    assert [(h.trace_id, h.document_type) for h in team_4] == [
        ("trace-weather", "llm-trace-summary-detailed")
    ]
    minimal = search_similar_traces(
        store, embedder, model=LARGE, team_id=3, query="weather in Paris", mode="minimal"
    )
    assert [h.trace_id for h in minimal] == ["trace-refund"]  # the only minimal summary of team 3
    assert search_similar_traces(store, embedder, model=LARGE, team_id=99, query="weather") == []


def test_a_trace_summarized_in_two_batch_runs_is_one_hit(store: TraceStore, embedder: OpenAIEmbedder) -> None:
    store_directly(store, embedder, summary_requests(batch_run_id="3_2026-11-03T11:00:00+00:00"))
    store_directly(store, embedder, summary_requests(batch_run_id="3_2026-11-03T12:00:00+00:00"))
    hits = search_similar_traces(store, embedder, model=LARGE, team_id=3, query="database migration")
    assert sorted(h.trace_id for h in hits) == sorted(TRACES)


def test_search_on_a_store_without_embeddings_returns_nothing(
    store: TraceStore, embedder: OpenAIEmbedder
) -> None:
    assert search_similar_traces(store, embedder, model=LARGE, team_id=3, query="anything") == []


def test_an_empty_query_is_refused(store: TraceStore, embedder: OpenAIEmbedder) -> None:
    with pytest.raises(ValueError, match="empty"):
        search_similar_traces(store, embedder, model=LARGE, team_id=3, query="  ")


def test_title_comes_from_the_title_line_of_the_content() -> None:
    assert title_from_content("Title: Checkout\n\nSummary:\n- a") == "Checkout"
    assert title_from_content("\nSummary:\n- Title: not a title line") == ""


def test_hours_keeps_only_windows_that_ended_within_them(store: TraceStore, embedder: OpenAIEmbedder) -> None:
    store_directly(store, embedder, summary_requests())  # windows ending 10:00, 10:01, 10:02
    now = SUMMARY_TIME + timedelta(hours=2)
    recent = search_similar_traces(
        store, embedder, model=LARGE, team_id=3, query="weather", hours=2 - 1.5 / 60, now=now
    )
    assert sorted(hit.trace_id for hit in recent) == ["trace-sql"]  # ended 10:02, within 1 h 58.5 min
    everything = search_similar_traces(
        store, embedder, model=LARGE, team_id=3, query="weather", hours=3, now=now
    )
    assert len(everything) == 3
    with pytest.raises(ValueError, match="hours"):
        search_similar_traces(store, embedder, model=LARGE, team_id=3, query="weather", hours=0)


def test_first_bullet_and_window_come_from_the_stored_row() -> None:
    content = "Title: T\n\nFlow:\nA -> B\n\nSummary:\n- first thing\n- second\n\nInteresting Notes:\n- n"
    assert first_bullet_from_content(content) == "first thing"
    assert first_bullet_from_content("Title: T\n\nInteresting Notes:\n- only a note") == ""
    assert window_start_from_rendering("3_2026-11-03T11:00:00+00:00") == datetime(2026, 11, 3, 11, tzinfo=UTC)
    assert window_start_from_rendering("3_2026-11-03T11:00:00+00:00_2026-11-03T11:30:00+00:00") == datetime(
        2026, 11, 3, 11, tzinfo=UTC
    )
    assert window_start_from_rendering("not-a-batch-run") is None


def test_search_command_prints_a_ranked_table_and_a_json_list(
    store: TraceStore,
    embedder: OpenAIEmbedder,
    server: OpenAICompatibleServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store_directly(store, embedder, summary_requests())
    monkeypatch.setenv("TRACE_SUMMARIES_CLICKHOUSE_DSN", store.dsn)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")  # with a key and no setting, search uses the API model
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    parser = argparse.ArgumentParser()
    add_search_arguments(parser)

    assert run_search(parser.parse_args(["--team", "3", "--limit", "2", "weather tool Paris"])) == 0
    header, rule, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["#", "distance", "window", "trace", "id", "title", "first", "bullet"]
    assert set(rule.replace(" ", "")) == {"-"}
    assert len(rows) == 2
    rank, distance, window, trace_id, title, bullet = re.split(r"\s{2,}", rows[0])
    assert (rank, window, trace_id) == ("1", "2026-11-03 09:00-10:01", "trace-weather")
    assert (title, bullet) == ("Weather forecast lookup for Paris", "agent called the weather tool for Paris")
    assert 0 <= float(distance) < 1

    assert run_search(parser.parse_args(["--team", "3", "--json", "database migration"])) == 0
    results = json.loads(capsys.readouterr().out)
    assert isinstance(results, list) and len(results) == 3
    assert results[0] | {"distance": 0} == {
        "rank": 1,
        "distance": 0,
        "window_start": "2026-11-03T09:00:00+00:00",
        "window_end": "2026-11-03T10:02:00+00:00",
        "trace_id": "trace-sql",
        "title": "Database migration timed out",
        "first_bullet": "the SQL migration tool timed out after 30 seconds",
        "document_type": "llm-trace-summary-detailed",
        "rendering": "3_2026-11-03T09:00:00+00:00",
    }
    assert [r["rank"] for r in results] == [1, 2, 3]

    assert (
        run_search(parser.parse_args(["--team", "3", "--json", "--hours", "0.5", "database migration"])) == 0
    )
    assert json.loads(capsys.readouterr().out) == []  # those windows ended weeks before now
