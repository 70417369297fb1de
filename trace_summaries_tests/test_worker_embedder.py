"""The OpenAI embedder through the official SDK against the OpenAI-compatible test server."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from trace_summaries.config import SettingError
from trace_summaries.worker.embedder import EmbeddingRejected, EmbeddingUnavailable, OpenAIEmbedder
from trace_summaries.worker.embedding_model import EmbeddingModel
from trace_summaries_harness.openai_server import (
    Fault,
    OpenAICompatibleServer,
    hashed_embedding,
    openai_server,
)
from trace_summaries_harness.ports import free_port

LARGE = EmbeddingModel.parse("text-embedding-3-large-3072")


@pytest.fixture
def server() -> Iterator[OpenAICompatibleServer]:
    with openai_server() as openai_compatible:
        yield openai_compatible


def embedder_for(base_url: str, *, timeout_s: float = 5.0, **options: int) -> OpenAIEmbedder:
    client = openai.OpenAI(base_url=base_url, api_key="test-key", max_retries=0, timeout=timeout_s)
    return OpenAIEmbedder(client, **options)


def test_vectors_come_back_in_input_order_with_the_size_from_the_model_name(
    server: OpenAICompatibleServer,
) -> None:
    texts = ["checkout failed at payment", "weather lookup for Paris"]
    vectors = embedder_for(server.base_url).embed(LARGE, texts)
    assert [len(v) for v in vectors] == [3072, 3072]
    assert vectors[0] == pytest.approx(hashed_embedding(texts[0], 3072))
    assert vectors[1] == pytest.approx(hashed_embedding(texts[1], 3072))
    [request] = server.embedding_requests()
    assert request.body == {
        "model": "text-embedding-3-large",
        "input": texts,
        "dimensions": 3072,
        "encoding_format": "float",
    }


def test_a_model_without_a_size_is_sent_without_dimensions(server: OpenAICompatibleServer) -> None:
    embedder_for(server.base_url).embed(EmbeddingModel.parse("text-embedding-ada-002"), ["hello"])
    assert "dimensions" not in server.embedding_requests()[0].body


def test_an_over_long_input_is_cut_before_it_is_sent(server: OpenAICompatibleServer) -> None:
    embedder_for(server.base_url).embed(LARGE, ["word " * 50_000])
    sent = server.embedding_requests()[0].body["input"][0]
    assert 20_000 < len(sent) < 26_000


def test_big_batches_are_split_into_several_requests_keeping_order(server: OpenAICompatibleServer) -> None:
    texts = [f"document number {i}" for i in range(5)]
    vectors = embedder_for(server.base_url, max_inputs_per_request=2).embed(LARGE, texts)
    assert [len(r.body["input"]) for r in server.embedding_requests()] == [2, 2, 1]
    assert vectors == [pytest.approx(hashed_embedding(text, 3072)) for text in texts]


@pytest.mark.parametrize("status", [400, 413, 422])
def test_input_errors_are_rejections(server: OpenAICompatibleServer, status: int) -> None:
    server.enqueue_faults([Fault.http_status(status, "bad input")], endpoint="embeddings")
    with pytest.raises(EmbeddingRejected, match=str(status)):
        embedder_for(server.base_url).embed(LARGE, ["x"])


@pytest.mark.parametrize(
    "fault",
    [Fault.server_error(503), Fault.rate_limit(retry_after=None), Fault.unauthorized(), Fault.slow(5)],
    ids=["server-error", "rate-limit", "unauthorized", "timeout"],
)
def test_endpoint_trouble_is_unavailability_not_a_rejection(
    server: OpenAICompatibleServer, fault: Fault
) -> None:
    server.enqueue_faults([fault], endpoint="embeddings")
    with pytest.raises(EmbeddingUnavailable):
        embedder_for(server.base_url, timeout_s=0.5).embed(LARGE, ["x"])


def test_an_unreachable_endpoint_is_unavailability() -> None:
    with pytest.raises(EmbeddingUnavailable, match="APIConnectionError"):
        embedder_for(f"http://127.0.0.1:{free_port()}/v1").embed(LARGE, ["x"])


def test_from_env_needs_an_api_key_and_honours_the_base_url(server: OpenAICompatibleServer) -> None:
    with pytest.raises(SettingError, match="OPENAI_API_KEY"):
        OpenAIEmbedder.from_env({})
    embedder = OpenAIEmbedder.from_env({"OPENAI_API_KEY": "k", "OPENAI_BASE_URL": server.base_url})
    assert len(embedder.embed(LARGE, ["hi"])[0]) == 3072
    assert server.embedding_requests()[0].headers["authorization"] == "Bearer k"
