"""What summarizing one trace produced: the summary or the reason it failed, and what it cost.

A failed trace is a value, not an exception, so one bad trace never stops a batch; the reasons form a closed
set so a caller can tell a per-trace problem (the model answered nonsense) from a systemic one (every call
was refused with 401) without parsing messages.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, model_validator

from trace_summaries.summarize.modes import SummaryMode
from trace_summaries.summarize.schema import SummarizationResponse

Provider = Literal["openai", "heuristic"]

FailureReason = Literal[
    # The endpoint answered, but not with a usable summary (retried once).
    "invalid_json",
    "schema_violation",
    "empty_content",
    # The model declined to answer (``message.refusal``), also retried once.
    "refused",
    # Transient by nature, retried with backoff until the attempts run out.
    "rate_limited",
    "server_error",
    "timeout",
    "connection",
    # Client errors other than 429: retrying cannot help.
    "authentication",
    "permission_denied",
    "not_found",
    "bad_request",
    # The prompt did not fit the model's context: the trace is rendered smaller and tried once more.
    "context_exceeded",
    # The trace's overall deadline (``trace_deadline_s``) passed before an attempt succeeded.
    "deadline_exceeded",
    # A bug of ours or of the summarizer, caught so that the batch goes on.
    "internal_error",
]
FAILURE_REASONS: tuple[FailureReason, ...] = get_args(FailureReason)

# Reasons that describe the endpoint or its configuration rather than the trace. When every trace of a run
# fails with the same one of these, the run itself is broken (wrong key, wrong URL, provider down) and should
# fail loudly instead of recording a partition full of failed summaries.
SYSTEMIC_REASONS: frozenset[FailureReason] = frozenset(
    {
        "authentication",
        "permission_denied",
        "not_found",
        "bad_request",
        "connection",
        "timeout",
        "rate_limited",
        "server_error",
        "deadline_exceeded",
    }
)


class TraceSummaryResult(BaseModel):
    """The outcome of summarizing one trace, with everything the summary event records about the call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Literal["generated", "failed"]
    # Set exactly when ``status == "failed"``.
    reason: FailureReason | None = None
    # Human-readable detail of the failure (status code and the endpoint's message), for logs.
    error: str | None = None
    # Line references already checked against the trace text and normalised.
    summary: SummarizationResponse | None = None
    provider: Provider
    model: str
    mode: SummaryMode
    prompt_version: str
    # Summed over every attempt that returned usage: a retried invalid answer was paid for too.
    input_tokens: int = 0
    output_tokens: int = 0
    # Of the input tokens, those the provider served from its prompt cache (priced lower).
    cached_input_tokens: int = 0
    # The tier that served the last attempt, as the endpoint reported it ("flex", "default"), if it did.
    service_tier: str | None = None
    # ``None`` when the model has no known price.
    cost_usd: float | None = None
    # Wall-clock time for the trace, retries and waits included.
    latency_s: float = 0.0
    attempts: int = 0
    # The waits before each retry, in order; the first one follows attempt 1.
    retry_waits_s: tuple[float, ...] = ()
    # References dropped: to lines the text does not have, or absent from an item (no ``line_refs`` key).
    line_refs_invalid: int = 0
    # What was wrong with the answer without failing it (e.g. cut to the answer limits); never a failure.
    warnings: tuple[str, ...] = ()
    # The endpoint's id of the last request (``x-request-id``), to quote to the provider's support.
    request_id: str | None = None

    @model_validator(mode="after")
    def _reason_matches_status(self) -> TraceSummaryResult:
        if self.generated != (self.summary is not None) or self.generated != (self.reason is None):
            raise ValueError("a generated result has a summary and no reason; a failed one the reverse")
        return self

    @property
    def generated(self) -> bool:
        return self.status == "generated"
