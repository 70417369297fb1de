"""Text -> vectors through the OpenAI embeddings API (or any endpoint that speaks it).

The worker only sees the ``Embedder`` protocol and two outcomes besides success, because they call for
opposite reactions: ``EmbeddingRejected`` (the endpoint refuses these inputs; sending them again cannot
help, so the worker isolates and drops the offending document) and ``EmbeddingUnavailable`` (network,
rate limit, server error, bad credentials: nothing is wrong with the documents, so the worker keeps them
uncommitted and retries later).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

import openai

from trace_summaries.config import LLMConfig, SettingError, load
from trace_summaries.worker.embedding_model import EmbeddingModel
from trace_summaries.worker.token_limit import cut_to_token_limit, estimate_tokens

logger = logging.getLogger(__name__)

DEFAULT_REQUEST_TIMEOUT_S = 30.0
# OpenAI accepts up to 2048 inputs and 300k tokens per request; stay well inside both so one slow or
# rejected request costs little.
DEFAULT_MAX_INPUTS_PER_REQUEST = 256
DEFAULT_MAX_TOKENS_PER_REQUEST = 250_000
_REJECTED_STATUS = frozenset({400, 413, 422})


class EmbeddingRejected(Exception):
    """The endpoint refused the inputs themselves (HTTP 400/413/422); retrying them unchanged won't help."""


class EmbeddingUnavailable(Exception):
    """The endpoint could not embed right now (connection, timeout, 429, 5xx, auth, malformed answer)."""


class Embedder(Protocol):
    def embed(self, model: EmbeddingModel, texts: Sequence[str], *, query: bool = False) -> list[list[float]]:
        """One vector per text, in order; raises ``EmbeddingRejected`` or ``EmbeddingUnavailable``.

        ``query``: the texts are search queries, not documents (models trained with prefixes, like e5,
        embed the two differently; API models ignore it)."""
        ...


class OpenAIEmbedder:
    """An ``Embedder`` over ``openai.OpenAI``; cuts each text to the model's limit and splits big batches."""

    def __init__(
        self,
        client: openai.OpenAI,
        *,
        max_inputs_per_request: int = DEFAULT_MAX_INPUTS_PER_REQUEST,
        max_tokens_per_request: int = DEFAULT_MAX_TOKENS_PER_REQUEST,
    ) -> None:
        self._client = client
        self._max_inputs = max_inputs_per_request
        self._max_tokens = max_tokens_per_request

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    ) -> OpenAIEmbedder:
        """``OPENAI_API_KEY`` (required) and ``OPENAI_BASE_URL`` (optional, for compatible endpoints)."""
        config = load(LLMConfig, environ)
        if config.api_key is None:
            raise SettingError("OPENAI_API_KEY is not set (any value for endpoints that ignore it)")
        client = openai.OpenAI(
            api_key=config.api_key.get_secret_value(), base_url=config.base_url, timeout=timeout_s
        )
        return cls(client)

    def embed(self, model: EmbeddingModel, texts: Sequence[str], *, query: bool = False) -> list[list[float]]:
        inputs = [cut_to_token_limit(text, model.max_input_tokens) for text in texts]
        vectors: list[list[float]] = []
        for chunk in self._chunks(inputs):
            vectors.extend(self._embed_chunk(model, chunk))
        return vectors

    def _chunks(self, inputs: list[str]) -> Iterator[list[str]]:
        chunk: list[str] = []
        chunk_tokens = 0.0
        for text in inputs:
            tokens = estimate_tokens(text)
            if chunk and (len(chunk) >= self._max_inputs or chunk_tokens + tokens > self._max_tokens):
                yield chunk
                chunk, chunk_tokens = [], 0.0
            chunk.append(text)
            chunk_tokens += tokens
        if chunk:
            yield chunk

    def _embed_chunk(self, model: EmbeddingModel, inputs: list[str]) -> list[list[float]]:
        try:
            # "float" explicitly: the SDK otherwise asks for base64, which not every compatible server speaks.
            if model.dimensions is None:
                response = self._client.embeddings.create(
                    model=model.api_model, input=inputs, encoding_format="float"
                )
            else:
                response = self._client.embeddings.create(
                    model=model.api_model, input=inputs, dimensions=model.dimensions, encoding_format="float"
                )
        except openai.APIStatusError as exc:
            if exc.status_code in _REJECTED_STATUS:
                raise EmbeddingRejected(f"{model.api_model}: HTTP {exc.status_code}: {exc.message}") from exc
            raise EmbeddingUnavailable(f"{model.api_model}: HTTP {exc.status_code}: {exc.message}") from exc
        except openai.OpenAIError as exc:  # connection errors, timeouts, undecodable answers
            raise EmbeddingUnavailable(f"{model.api_model}: {type(exc).__name__}: {exc}") from exc

        data = sorted(response.data, key=lambda item: item.index)
        if len(data) != len(inputs):
            raise EmbeddingUnavailable(f"{model.api_model}: {len(data)} vectors for {len(inputs)} inputs")
        vectors = [list(item.embedding) for item in data]
        if model.dimensions is not None and any(len(v) != model.dimensions for v in vectors):
            sizes = sorted({len(v) for v in vectors})
            raise EmbeddingUnavailable(
                f"{model.name}: endpoint returned vectors of size {sizes}, expected {model.dimensions}"
            )
        return vectors
