"""Which LLM call failures are worth retrying, and how long to wait before the next attempt.

Rate limits, server errors, timeouts and dropped connections are transient: they are retried with
exponential backoff and jitter (so that the calls of a batch that failed together do not retry together),
and a server's ``Retry-After`` is honoured as a floor. Any other 4xx means the request itself is wrong and
is not retried. The SDK's own retries are switched off so that this is the only retry loop, and every wait
is recorded on the result.
"""

from __future__ import annotations

import email.utils
import math
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

import openai

from trace_summaries.summarize.result import FailureReason

# How endpoints say the prompt does not fit: OpenAI's code ``context_length_exceeded``, llama.cpp's type
# ``exceed_context_size_error``, vLLM's "maximum context length is N tokens".
_CONTEXT_EXCEEDED = re.compile(
    r"context_length_exceeded|exceed_context_size|maximum context length|exceeds the (available )?context",
    re.IGNORECASE,
)

TRANSIENT_REASONS: frozenset[FailureReason] = frozenset(
    {"rate_limited", "server_error", "timeout", "connection"}
)


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts a trace gets and how the waits between them grow."""

    max_attempts: int = 4
    backoff_base_s: float = 1.0
    backoff_max_s: float = 30.0
    # A server may ask for a long pause; a batch waits at most this long for one retry.
    retry_after_max_s: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.backoff_base_s < 0 or self.backoff_max_s < 0 or self.retry_after_max_s < 0:
            raise ValueError("backoff and Retry-After limits cannot be negative")

    def wait_s(self, failed_attempt: int, retry_after_s: float | None, rng: random.Random) -> float:
        """The pause after attempt ``failed_attempt`` (1-based) failed.

        Exponential backoff with "equal jitter" (a random point in the upper half of the step), so the wait
        never collapses to zero; never shorter than ``Retry-After`` (capped at ``retry_after_max_s``).
        """
        step = min(self.backoff_max_s, self.backoff_base_s * 2 ** (failed_attempt - 1))
        backoff = step * rng.uniform(0.5, 1.0)
        if retry_after_s is None:
            return backoff
        return max(backoff, min(retry_after_s, self.retry_after_max_s))


def retry_after_s(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asked to wait: ``retry-after-ms``, else ``retry-after`` (seconds or HTTP date)."""
    lowered = {key.lower(): value for key, value in headers.items()}
    for header, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = lowered.get(header)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            continue
        if math.isfinite(seconds):
            return max(0.0, seconds)
    date = lowered.get("retry-after")
    if date is None:
        return None
    parsed = email.utils.parsedate_tz(date)
    if parsed is None:
        return None
    return max(0.0, email.utils.mktime_tz(parsed) - (time.time() if now is None else now))


def classify_api_error(error: openai.APIError) -> FailureReason:
    """The failure reason of an SDK error; ``reason in TRANSIENT_REASONS`` decides whether to retry."""
    # APITimeoutError is a subclass of APIConnectionError, so it is tested first.
    if isinstance(error, openai.APITimeoutError):
        return "timeout"
    if isinstance(error, openai.APIConnectionError):
        return "connection"
    if isinstance(error, openai.APIStatusError):
        if error.status_code in (400, 413) and _CONTEXT_EXCEEDED.search(
            f"{error.code} {error.type} {error.message}"
        ):
            return "context_exceeded"
        return classify_status(error.status_code)
    # APIResponseValidationError: a 2xx whose body is not a chat completion at all.
    return "invalid_json"


def classify_status(status_code: int) -> FailureReason:
    if status_code == 429:
        return "rate_limited"
    if status_code >= 500:
        return "server_error"
    if status_code == 401:
        return "authentication"
    if status_code == 403:
        return "permission_denied"
    if status_code == 404:
        return "not_found"
    return "bad_request"
