"""The embedder the worker and search use: each model name goes to what can compute it.

Local models (``local_embedder.LOCAL_MODELS``) run in this process; every other name goes to the
OpenAI-compatible endpoint of ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``, whose client is only built when such
a model is first asked for. So a worker with no key embeds local-model requests, and API-model requests
wait uncommitted with a reason in the log (``EmbeddingUnavailable``) until a key is configured.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from trace_summaries.config import SettingError
from trace_summaries.worker.embedder import Embedder, EmbeddingUnavailable, OpenAIEmbedder
from trace_summaries.worker.embedding_model import EmbeddingModel
from trace_summaries.worker.local_embedder import LocalEmbedder, is_local_model


class EmbedderByModel:
    """An ``Embedder`` that routes by model name: local models in process, the rest to the API."""

    def __init__(
        self,
        local: Embedder | None = None,
        api: Callable[[], Embedder] = OpenAIEmbedder.from_env,
    ) -> None:
        self._local = local or LocalEmbedder()
        self._make_api = api
        self._api: Embedder | None = None

    def embed(self, model: EmbeddingModel, texts: Sequence[str], *, query: bool = False) -> list[list[float]]:
        if is_local_model(model):
            return self._local.embed(model, texts, query=query)
        if self._api is None:
            try:
                self._api = self._make_api()
            except SettingError as exc:
                raise EmbeddingUnavailable(f"{model.name} is an API model: {exc}") from exc
        return self._api.embed(model, texts, query=query)
