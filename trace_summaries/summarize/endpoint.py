"""How to reach the LLM and how patiently: what a summarizer is built from (``LLMResource`` builds it)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from trace_summaries.config import LLMConfig
from trace_summaries.summarize.pricing import ModelPrice
from trace_summaries.summarize.retry import RetryPolicy

_DEFAULTS = LLMConfig.model_fields


class LLMSettings(BaseModel):
    """An OpenAI-compatible endpoint (OpenAI itself when ``base_url`` is unset) and the retry budget.

    With neither ``api_key`` nor ``base_url`` there is no endpoint at all and the heuristic summarizer is
    used (see ``make_summarizer``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: str | None = None
    base_url: str | None = None
    model: str = _DEFAULTS["model"].default
    # A deadline for one attempt (connect, wait and read), not for the trace: retries get their own.
    timeout_s: float = Field(default=_DEFAULTS["timeout_s"].default, gt=0)
    max_attempts: int = Field(default=_DEFAULTS["max_attempts"].default, ge=1)
    backoff_base_s: float = Field(default=1.0, ge=0)
    backoff_max_s: float = Field(default=30.0, ge=0)
    retry_after_max_s: float = Field(default=60.0, ge=0)
    # An answer that is not a valid summary (bad JSON, schema violation, empty) is retried this many times.
    content_retries: int = Field(default=1, ge=0)
    # Merged over ``pricing.DEFAULT_PRICES``: entries here win.
    prices: dict[str, ModelPrice] = Field(default_factory=dict)

    @property
    def has_endpoint(self) -> bool:
        return bool(self.api_key) or bool(self.base_url)

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            backoff_base_s=self.backoff_base_s,
            backoff_max_s=self.backoff_max_s,
            retry_after_max_s=self.retry_after_max_s,
        )
