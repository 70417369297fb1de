"""Harness tests: the OpenAI-compatible test server itself (embeddings, latency, in-flight counting,
faults, the answer repertoire, CLI)."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import re
import struct
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import requests

from trace_summaries.summarize.schema import BOUNDS
from trace_summaries_harness.openai_server import (
    ANSWER_SHAPES,
    FIRST_CALL_ONLY,
    REPERTOIRE,
    Fault,
    OpenAICompatibleServer,
    answer_for_prompt,
    answer_shape,
    embedding_dimensions,
    hashed_embedding,
    openai_server,
    shaped_summary,
    summary_for_prompt,
)

PROJECT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.harness


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


TRACE_PROMPT = (
    "Summarize:\nL01: MY TRACE\nL02: " + "=" * 80 + "\nL03: └─ [+] [GEN] chat (gpt-4)\nL04: [1] USER"
    "\nL05: Where is my order?\nL06: └─ [SPAN] lookup ERROR\nL07: ERROR: boom"
)


def chat(server: OpenAICompatibleServer, prompt: str) -> dict:
    response = requests.post(
        f"{server.base_url}/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": prompt}], "max_tokens": 700},
        timeout=5,
    )
    assert response.status_code == 200
    return response.json()


def test_the_repertoire_is_deterministic_per_prompt_and_unusable_shapes_come_on_a_first_call_only() -> None:
    prompts = [f"{TRACE_PROMPT}\nL08: trace {number}" for number in range(240)]
    first = [answer_shape(prompt) for prompt in prompts]
    assert first == [answer_shape(prompt, 1) for prompt in prompts]  # the same prompt, the same shape
    shares = Counter(first)
    assert set(shares) == set(ANSWER_SHAPES)  # every shape comes up
    total = sum(weight for _, weight in REPERTOIRE)
    for shape, weight in REPERTOIRE:
        assert abs(shares[shape] / len(prompts) - weight / total) < 0.06, (shape, shares)
    later = {answer_shape(prompt, call) for prompt in prompts for call in (2, 3, 9)}
    assert later == set(ANSWER_SHAPES) - FIRST_CALL_ONLY
    # Every call after the first gets the same answer.
    assert all(answer_shape(prompt, 2) == answer_shape(prompt, 7) for prompt in prompts)

    refused = next(prompt for prompt, shape in zip(prompts, first, strict=True) if shape == "refusal")
    with openai_server() as one, openai_server() as other:
        answers = [chat(one, refused)["choices"][0]["message"] for _ in range(3)]
        assert chat(other, refused)["choices"][0]["message"] == answers[0]
        assert [request.shape for request in one.chat_requests()] == [
            "refusal",
            *[answer_shape(refused, 2)] * 2,
        ]
        assert [request.prompt_call for request in one.chat_requests()] == [1, 2, 3]
    assert answers[0]["content"] is None and answers[1] == answers[2]


def test_each_shape_answers_as_real_models_do() -> None:
    lines = set(range(1, 8))
    with openai_server() as server:
        for shape in ANSWER_SHAPES:
            server.enqueue_faults([Fault.shaped(shape)])
            completion = chat(server, TRACE_PROMPT)
            [choice] = completion["choices"]
            message = choice["message"]
            assert server.chat_requests()[-1].shape == shape
            if shape == "refusal":
                assert (message["content"], message["refusal"], choice["finish_reason"]) == (
                    None,
                    "I'm sorry, but I can't help with that request.",
                    "stop",
                )
                continue
            if shape == "cut_off":
                assert choice["finish_reason"] == "length" and message["refusal"] is None
                assert completion["usage"]["completion_tokens"] == 700  # the whole cap
                with pytest.raises(json.JSONDecodeError):
                    json.loads(message["content"])
                continue
            assert choice["finish_reason"] == "stop"
            summary = json.loads(message["content"])
            assert summary == shaped_summary(TRACE_PROMPT, shape)
            items = summary["summary_bullets"] + summary["interesting_notes"]
            refs = [item.get("line_refs") for item in items]
            # Whatever the style, every line named is a line of the prompt.
            assert {int(n) for ref in refs if ref for n in re.findall(r"\d+", ref)} <= lines, (shape, refs)
            if shape in ("range", "list"):
                # Every item cites two lines, in each of the styles models write.
                styles = [r"^L\d+-L\d+$", r"^L\d+-\d+$", r"^L\d+ to L\d+$"]
                if shape == "list":
                    styles = [r"^L\d+, L\d+$", r"^L\d+; L\d+$", r"^L\d+ and L\d+$"]
                assert all(any(re.match(style, ref) for ref in refs) for style in styles), refs
                assert all(len(re.findall(r"\d+", ref)) == 2 for ref in refs), refs
            elif shape in ("empty_ref", "missing_ref_key"):
                assert refs.count("" if shape == "empty_ref" else None) == 1 and any(refs)
            elif shape == "oversized":
                assert len(summary["title"]) > BOUNDS["title"]["maxLength"] * 2
                assert len(summary["flow_diagram"]) > BOUNDS["flow_diagram"]["maxLength"] * 2
                assert len(summary["summary_bullets"]) > BOUNDS["summary_bullets"]["maxItems"]
                assert len(summary["interesting_notes"]) > BOUNDS["interesting_notes"]["maxItems"]
                assert min(len(item["text"]) for item in items) > BOUNDS["text"]["maxLength"] * 2
            else:  # one line per item, as the prompt asks
                assert summary == summary_for_prompt(TRACE_PROMPT)
    assert Counter(server.served_shapes()) == Counter(ANSWER_SHAPES)
    assert [request.shape for request in server.unusable_answers()] == ["refusal", "cut_off"]


def test_the_clean_repertoire_always_cites_one_real_line_per_item() -> None:
    prompts = [f"{TRACE_PROMPT}\nL08: trace {number}" for number in range(30)]
    assert {"refusal", "cut_off", "oversized"} <= {answer_shape(prompt) for prompt in prompts}
    with openai_server(repertoire="clean") as server:
        for prompt in prompts:
            message = chat(server, prompt)["choices"][0]["message"]
            assert json.loads(message["content"]) == summary_for_prompt(prompt)
        assert server.served_shapes() == Counter({"single": len(prompts)})
    with pytest.raises(ValueError, match="repertoire"):
        OpenAICompatibleServer(repertoire="kind")  # type: ignore[arg-type]


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
        # The repertoire's answer, the same in every process.
        expected = answer_for_prompt("L1: hello", answer_shape("L1: hello"))
        assert chat["choices"][0]["message"]["content"] == expected.content
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()  # never left behind, even when SIGTERM did not stop it
            process.wait()
            raise
