"""How to reach the LLM and how patiently: what a summarizer is built from (``LLMResource`` builds it)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from trace_summaries.config import LLMConfig
from trace_summaries.summarize.pricing import ModelPrice
from trace_summaries.summarize.prompts import PROMPT_VERSION, shipped_prompts
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
    # A deadline for the whole trace: every attempt, slot wait and backoff (``LLMConfig.trace_deadline_s``).
    trace_deadline_s: float = Field(default=_DEFAULTS["trace_deadline_s"].default, gt=0)
    # The answer's cap (``max_tokens``), so an answer that never ends cannot run to the context's end.
    max_output_tokens: int = Field(default=_DEFAULTS["max_output_tokens"].default, ge=1)
    # ``"flex"``: ask for the flex tier, falling back to the standard tier on 429, timeout or 5xx.
    service_tier: Literal["flex"] | None = None
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None
    # The summary calls' temperature; None: not sent (``LLMConfig.temperature``).
    temperature: float | None = Field(default=None, ge=0, le=2)
    # Ask for the schema with length bounds (``schema.bounded_response_format``): for self-hosted servers
    # whose structured output is a grammar, so a small model must close its JSON within the answer's cap.
    bounded_output: bool = False
    # The prompt files to use (``prompts/*.<version>.txt``); the current version unless comparing.
    prompt_version: str = PROMPT_VERSION
    max_attempts: int = Field(default=_DEFAULTS["max_attempts"].default, ge=1)
    backoff_base_s: float = Field(default=1.0, ge=0)
    backoff_max_s: float = Field(default=30.0, ge=0)
    retry_after_max_s: float = Field(default=60.0, ge=0)
    # An answer that is not a valid summary (bad JSON, schema violation, empty) is retried this many times.
    content_retries: int = Field(default=1, ge=0)
    # Merged over ``pricing.DEFAULT_PRICES``: entries here win.
    prices: dict[str, ModelPrice] = Field(default_factory=dict)

    @field_validator("prompt_version")
    @classmethod
    def _prompt_version(cls, value: str) -> str:
        shipped = sorted({name.rsplit(".", 1)[1] for name in shipped_prompts()})
        if value not in shipped:
            raise ValueError(f"no prompt files of version {value!r}; shipped: {', '.join(shipped)}")
        return value

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
