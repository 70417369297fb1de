"""The OpenAI-compatible test server itself: embeddings, latency, in-flight counting, faults, CLI."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import requests

from trace_summaries_harness.openai_server import (
    Fault,
    OpenAICompatibleServer,
    embedding_dimensions,
    hashed_embedding,
    openai_server,
    summary_for_prompt,
)

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture
def server() -> Iterator[OpenAICompatibleServer]:
    with openai_server() as running:
        yield running


def client(server: OpenAICompatibleServer) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-test", base_url=server.base_url, max_retries=0)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(
    ("model", "dimensions", "expected"),
    [
        ("text-embedding-3-large-3072", None, 3072),
        ("text-embedding-3-small-1536", None, 1536),
        ("text-embedding-3-small", None, 1536),
        ("text-embedding-ada-002", None, 1536),
        ("text-embedding-3-large-3072", 256, 256),
    ],
)
def test_the_embedding_size_comes_from_the_model_suffix_or_the_dimensions_parameter(
    server: OpenAICompatibleServer, model: str, dimensions: int | None, expected: int
) -> None:
    assert embedding_dimensions(model, dimensions) == expected
    extra = {"dimensions": dimensions} if dimensions else {}
    response = client(server).embeddings.create(model=model, input=["checkout failed"], **extra)
    assert len(response.data[0].embedding) == expected


def test_embeddings_are_unit_vectors_where_similar_texts_are_close(server: OpenAICompatibleServer) -> None:
    texts = [
        "Checkout failed: the payment service timed out",
        "checkout FAILED because the payment service timed out!",
        "User asks for a poem about autumn leaves",
    ]
    response = client(server).embeddings.create(model="text-embedding-3-small", input=texts)
    vectors = [item.embedding for item in sorted(response.data, key=lambda item: item.index)]
    # The SDK asks for base64 by default, which carries float32: equal to about 1e-6.
    assert server.embedding_requests()[0].body["encoding_format"] == "base64"
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-6) for v in vectors)
    assert cosine(vectors[0], vectors[1]) > 0.8
    assert cosine(vectors[0], vectors[2]) < 0.3
    assert vectors[0] == pytest.approx(hashed_embedding(texts[0], 1536), abs=1e-6)
    # Usage counts words: 7 + 8 + 8.
    assert response.usage.prompt_tokens == 23


def test_embeddings_can_be_base64_encoded_float32(server: OpenAICompatibleServer) -> None:
    raw = requests.post(
        f"{server.base_url}/embeddings",
        json={"model": "m-64", "input": "hello world", "encoding_format": "base64"},
        timeout=5,
    ).json()
    decoded = struct.unpack("<64f", base64.b64decode(raw["data"][0]["embedding"]))
    assert decoded == pytest.approx(hashed_embedding("hello world", 64), abs=1e-6)


def test_latency_and_the_in_flight_maximum_are_observable(server: OpenAICompatibleServer) -> None:
    server.latency_s = 0.1

    async def burst() -> None:
        async with openai.AsyncOpenAI(api_key="k", base_url=server.base_url, max_retries=0) as api:
            await asyncio.gather(*(api.embeddings.create(model="m", input=f"text {i}") for i in range(5)))

    asyncio.run(burst())
    assert server.max_in_flight == 5 and server.max_in_flight_for("embeddings") == 5
    assert server.in_flight == 0
    assert all(r.answered_at is not None and r.answered_at - r.arrived_at >= 0.1 for r in server.requests)
    server.reset_stats()
    assert server.max_in_flight == 0 and server.requests == []


def test_faults_can_target_embeddings(server: OpenAICompatibleServer) -> None:
    server.enqueue_faults([Fault.rate_limit("2")], endpoint="embeddings")
    with pytest.raises(openai.RateLimitError) as error:
        client(server).embeddings.create(model="m", input="x")
    assert error.value.response.headers["retry-after"] == "2"
    assert client(server).embeddings.create(model="m", input="x").data
    with pytest.raises(ValueError, match="only apply to chat"):
        server.enqueue_faults([Fault.invalid_json()], endpoint="embeddings")


def test_errors_have_the_openai_body_shape(server: OpenAICompatibleServer) -> None:
    server.enqueue_faults([Fault.unauthorized()])
    with pytest.raises(openai.AuthenticationError) as error:
        client(server).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert error.value.code == "invalid_api_key"
    missing = requests.post(f"{server.url}/v2/nothing", json={}, timeout=5)
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "invalid_request_error"


def test_fault_rules_match_by_prompt_and_can_repeat(server: OpenAICompatibleServer) -> None:
    server.add_fault_rule("poison", [Fault.server_error()], repeat=True)
    api = client(server)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            api.chat.completions.create(model="m", messages=[{"role": "user", "content": "poison pill"}])
    assert api.chat.completions.create(model="m", messages=[{"role": "user", "content": "fine"}]).choices
    server.clear_faults()
    assert api.chat.completions.create(model="m", messages=[{"role": "user", "content": "poison"}]).choices


def test_the_default_answer_cites_only_lines_of_the_prompt() -> None:
    prompt = (
        "Summarize:\nL01: MY TRACE\nL02: " + "=" * 80 + "\nL03: └─ [+] [GEN] chat (gpt-4)\nL05: ERROR: boom"
    )
    summary = summary_for_prompt(prompt)
    refs = [item["line_refs"] for item in summary["summary_bullets"] + summary["interesting_notes"]]
    assert set(refs) <= {"L01", "L03", "L05"}
    assert summary["interesting_notes"] == [{"text": "Error reported: ERROR: boom", "line_refs": "L05"}]
    assert summary["flow_diagram"] == "[+] [GEN] chat (gpt-4)"


def test_the_server_runs_standalone_and_vectors_are_stable_across_processes() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trace_summaries_harness.openai_server",
            "--port",
            "0",
            "--latency-ms",
            "1",
        ],
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        base_url = banner.split(" on ")[1].split(" ")[0]
        response = requests.post(
            f"{base_url}/embeddings",
            json={"model": "text-embedding-3-small-1536", "input": "stable words"},
            timeout=5,
        )
        assert response.json()["data"][0]["embedding"] == hashed_embedding("stable words", 1536)
        chat = requests.post(
            f"{base_url}/chat/completions",
            json={"model": "gpt-4.1-nano", "messages": [{"role": "user", "content": "L1: hello"}]},
            timeout=5,
        ).json()
        assert json.loads(chat["choices"][0]["message"]["content"])["summary_bullets"][0]["line_refs"] == "L1"
    finally:
        process.terminate()
        process.wait(timeout=10)
