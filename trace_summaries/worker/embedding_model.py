"""Embedding model names as they travel in requests and rows, e.g. ``text-embedding-3-large-3072``.

The name is the API model plus the vector size, so rows of different sizes of the same model never mix
in one distance computation: ``text-embedding-3-large-3072`` asks the API for ``text-embedding-3-large``
with ``dimensions=3072``. A name whose last dash-separated part is not a number (or is a known API model
on its own, like ``text-embedding-ada-002``) is sent as is, without ``dimensions``, so any model of an
OpenAI-compatible endpoint can be named.
"""

from __future__ import annotations

from dataclasses import dataclass

# Every OpenAI embedding model accepts 8191 tokens per input; the original cut content to 8192 cl100k
# tokens. Models of other endpoints get the same limit unless listed here.
DEFAULT_MAX_INPUT_TOKENS = 8191
_KNOWN_API_MODELS: dict[str, int] = {
    "text-embedding-3-small": 8191,
    "text-embedding-3-large": 8191,
    "text-embedding-ada-002": 8191,
}


class UnknownEmbeddingModel(ValueError):
    """A model name that cannot be turned into an API call (empty, or a zero/negative size)."""


@dataclass(frozen=True, slots=True)
class EmbeddingModel:
    """One requested model: the stored ``name`` and what the embeddings API is asked for."""

    name: str
    api_model: str
    dimensions: int | None
    max_input_tokens: int

    @classmethod
    def parse(cls, name: str) -> EmbeddingModel:
        name = name.strip()
        if not name:
            raise UnknownEmbeddingModel("empty embedding model name")
        base, _, suffix = name.rpartition("-")
        if base and suffix.isdigit() and name not in _KNOWN_API_MODELS:
            dimensions = int(suffix)
            if dimensions <= 0:
                raise UnknownEmbeddingModel(f"embedding model {name!r} asks for {dimensions} dimensions")
            api_model: str = base
        else:
            api_model, dimensions = name, None
        return cls(
            name=name,
            api_model=api_model,
            dimensions=dimensions,
            max_input_tokens=_KNOWN_API_MODELS.get(api_model, DEFAULT_MAX_INPUT_TOKENS),
        )
