"""The LLM summarizer: one strict structured-output chat completion per trace, with our own retries.

Built on the official SDK's ``AsyncOpenAI`` so that any OpenAI-compatible endpoint works through
``base_url``. The SDK's retries are off (``max_retries=0``): this module retries with the policy of
``retry.py`` and records every attempt and wait, which the SDK would hide. Each attempt is also bounded by an
overall deadline, because the HTTP timeout only bounds each read and a server trickling bytes could
otherwise hold a trace for ever. The trace as a whole has a deadline too (``trace_deadline_s``, the original's
300 s), counted from its first call (waiting for the step's first slot is the step's queue, not the trace's
time): it covers every attempt, later waits for a call slot and backoff; once it has passed no attempt
starts, a running one is cut at it, and the trace fails with reason ``deadline_exceeded``.

The pipeline runs up to ``batch_size`` calls at once on one event loop, so the client's CPU per call decides
how close a partition gets to ``batch_size / latency`` summaries per second (``bench/bench_llm_stage.py``):
the request is built from a cached ``response_format`` and posted as plain JSON, and the TLS context is
built once per process rather than once per event loop. The SDK's aiohttp transport (``openai[aiohttp]``)
would take roughly another third off that CPU, but it reports a refused or dropped connection as a timeout
and logs an unclosed session for every event loop whose client is not closed, so the SDK's default httpx
transport stays; the benchmark keeps measuring both.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import random
import ssl
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

import httpx2
import openai
from openai.types.chat import ChatCompletion

from trace_summaries.summarize.endpoint import LLMSettings
from trace_summaries.summarize.heuristic import notable_lines
from trace_summaries.summarize.line_refs import check_summary_refs, citable_lines
from trace_summaries.summarize.modes import SummaryMode
from trace_summaries.summarize.pacing import MAX_ABSORBED_RETRIES, last_call_absorbed, paced_call
from trace_summaries.summarize.pricing import estimate_cost_usd
from trace_summaries.summarize.prompts import chat_messages
from trace_summaries.summarize.result import FailureReason, Provider, TraceSummaryResult
from trace_summaries.summarize.retry import TRANSIENT_REASONS, classify_api_error, retry_after_s
from trace_summaries.summarize.schema import (
    SummarizationResponse,
    SummaryContentError,
    bound_summary,
    bounded_response_format,
    parse_summary_counting,
    response_format,
)
from trace_summaries.summarize.steps import trace_name

if TYPE_CHECKING:
    from trace_summaries.text_repr import TraceText

# Sent as the bearer token when only a base URL is configured: local OpenAI-compatible servers (vLLM,
# Ollama, LM Studio) ignore it, and the SDK refuses to start without one.
NO_API_KEY = "not-needed"

CONTENT_REASONS: frozenset[FailureReason] = frozenset(
    {"invalid_json", "schema_violation", "empty_content", "refused"}
)

# The request options ``chat.completions.create`` passes: bearer-token auth only, where a bare ``client.post``
# would also allow the admin key (``OPENAI_ADMIN_KEY``).
_CHAT_COMPLETION_OPTIONS: openai.RequestOptions = {"security": {"bearer_auth": True}}


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """The TLS context every client of this process shares.

    httpx builds one per client, loading the CA bundle each time (milliseconds of CPU), and there is a
    client per event loop. This is the context httpx would build by default (it honours ``SSL_CERT_FILE`` and
    ``SSL_CERT_DIR``), built once.
    """
    return httpx2.create_ssl_context()


@dataclass(frozen=True)
class _Attempt:
    """What one chat completion call gave: a summary, or why not (and how long the server asked to wait)."""

    summary: SummarizationResponse | None = None
    # Items of the summary that had no ``line_refs`` at all (given an empty one).
    missing_refs: int = 0
    reason: FailureReason | None = None
    error: str | None = None
    retry_after_s: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    request_id: str | None = None
    service_tier: str | None = None


@dataclass
class _Tally:
    """What the attempts at one trace add up to."""

    started: float
    attempts: int = 0
    content_failures: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    # Summed per attempt, each at its own tier's price; None once an attempt has no known price.
    cost_usd: float | None = 0.0
    waits: list[float] = field(default_factory=list)
    request_id: str | None = None
    service_tier: str | None = None
    # When the trace's deadline passes (``time.monotonic()``): set when its first call gets a slot.
    deadline: float | None = None

    def add(self, attempt: _Attempt, cost_usd: float | None) -> None:
        self.attempts += 1
        self.input_tokens += attempt.input_tokens
        self.output_tokens += attempt.output_tokens
        self.cached_input_tokens += attempt.cached_input_tokens
        self.cost_usd = None if cost_usd is None or self.cost_usd is None else self.cost_usd + cost_usd
        self.request_id = attempt.request_id or self.request_id
        self.service_tier = attempt.service_tier or self.service_tier


_MAX_TOKENS_PARAMETER = {True: "max_completion_tokens", False: "max_tokens"}
# A flex call refused (429), too slow or failed (5xx) is tried again on the standard tier.
_FLEX_FALLBACK_REASONS = frozenset({"rate_limited", "timeout", "server_error", "connection"})


class LLMSummarizer:
    """Summarizes traces through an OpenAI-compatible chat completions endpoint."""

    provider: Provider = "openai"

    def __init__(self, settings: LLMSettings, *, rng: random.Random | None = None) -> None:
        self.settings = settings
        self._rng = rng or random.Random()
        # An ``AsyncOpenAI`` keeps pooled connections bound to the event loop that opened them; every step
        # (and every test or tool) runs its own loop, so each loop gets its own client.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, openai.AsyncOpenAI] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def model(self) -> str:
        return self.settings.model

    def _client(self) -> openai.AsyncOpenAI:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = openai.AsyncOpenAI(
                api_key=self.settings.api_key or NO_API_KEY,
                base_url=self.settings.base_url or None,
                timeout=self.settings.timeout_s,
                max_retries=0,
                http_client=openai.DefaultAsyncHttpxClient(verify=_ssl_context()),
            )
            self._clients[loop] = client
        return client

    async def aclose(self) -> None:
        """Close the client of the running loop (its pooled connections)."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close()

    async def __aenter__(self) -> LLMSummarizer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def summarize(
        self, trace_text: TraceText, events: Sequence[Any], mode: SummaryMode
    ) -> TraceSummaryResult:
        """Summarize one trace; never raises for an endpoint problem, the result says what went wrong."""
        policy = self.settings.retry_policy
        version = self.settings.prompt_version
        notable = notable_lines(trace_text, events)
        messages = chat_messages(trace_text.text, trace_name(events), mode, version, notable)
        tally = _Tally(started=time.monotonic())
        flex = self.settings.service_tier == "flex"
        absorbed = 0  # failed attempts the pacer took as its own doing (pacing.last_call_absorbed)
        last: _Attempt | None = None
        while True:
            if tally.deadline is not None and time.monotonic() >= tally.deadline:
                return self._past_deadline(tally, mode, last)
            attempt = await self._attempt(messages, flex=flex, clock=tally)
            if attempt.reason == "deadline_exceeded":
                tally.add(attempt, self._cost(attempt))
                return self._past_deadline(tally, mode, last, cut=True)
            last = attempt
            tally.add(attempt, self._cost(attempt))
            if flex and attempt.reason in _FLEX_FALLBACK_REASONS:
                # The flex tier refused or was too slow: the standard tier, at once, for the next attempt.
                flex = False
                if tally.attempts < policy.max_attempts:
                    continue
            if attempt.summary is not None:
                # Bounded first: the references of items cut away are not counted.
                bounded, warnings = bound_summary(attempt.summary)
                summary, invalid = check_summary_refs(bounded, citable_lines(trace_text))
                return self._result(
                    tally,
                    mode,
                    status="generated",
                    summary=summary,
                    line_refs_invalid=invalid + attempt.missing_refs,
                    warnings=tuple(warnings),
                )
            reason = attempt.reason or "internal_error"
            if reason in CONTENT_REASONS:
                retryable = tally.content_failures < self.settings.content_retries
                tally.content_failures += 1
            else:
                retryable = reason in TRANSIENT_REASONS
            if retryable and absorbed < MAX_ABSORBED_RETRIES and last_call_absorbed():
                # Queued by the endpoint past the timeout, or told to come back later: the pacer has
                # lowered the limit, and the retry does not use up one of the trace's attempts.
                # It waits for what the endpoint asked, if anything, and then for a slot: no backoff.
                absorbed += 1
                wait = min(attempt.retry_after_s or 0.0, policy.retry_after_max_s)
            elif not retryable or tally.attempts - absorbed >= policy.max_attempts:
                return self._result(tally, mode, status="failed", reason=reason, error=attempt.error)
            else:
                wait = policy.wait_s(tally.attempts - absorbed, attempt.retry_after_s, self._rng)
            if tally.deadline is not None and time.monotonic() + wait >= tally.deadline:
                # The next attempt could not start before the deadline: fail now rather than sleep to it.
                return self._past_deadline(tally, mode, last)
            tally.waits.append(wait)
            await asyncio.sleep(wait)

    def _past_deadline(
        self, tally: _Tally, mode: SummaryMode, last: _Attempt | None, *, cut: bool = False
    ) -> TraceSummaryResult:
        """The trace failed with ``deadline_exceeded``: the error names the setting and the last failure."""
        deadline = self.settings.trace_deadline_s
        error = (
            f"no summary within the trace deadline of {deadline:g} s (TRACE_SUMMARIES_LLM_TRACE_DEADLINE_S) "
            f"after {tally.attempts} attempt{'s' if tally.attempts != 1 else ''}"
        )
        if cut:
            error += "; the last attempt was cut at the deadline"
        if last is not None and last.reason is not None:
            error += f"; last failure: {last.reason}: {last.error}"
        return self._result(tally, mode, status="failed", reason="deadline_exceeded", error=error)

    def _result(self, tally: _Tally, mode: SummaryMode, **outcome: Any) -> TraceSummaryResult:
        return TraceSummaryResult(
            provider=self.provider,
            model=self.settings.model,
            mode=mode,
            prompt_version=self.settings.prompt_version,
            input_tokens=tally.input_tokens,
            output_tokens=tally.output_tokens,
            cached_input_tokens=tally.cached_input_tokens,
            service_tier=tally.service_tier,
            cost_usd=tally.cost_usd,
            latency_s=time.monotonic() - tally.started,
            attempts=tally.attempts,
            retry_waits_s=tuple(tally.waits),
            request_id=tally.request_id,
            **outcome,
        )

    def _cost(self, attempt: _Attempt) -> float | None:
        return estimate_cost_usd(
            self.settings.model,
            attempt.input_tokens,
            attempt.output_tokens,
            self.settings.prices,
            cached_input_tokens=attempt.cached_input_tokens,
            flex=attempt.service_tier == "flex",
        )

    async def _attempt(
        self, messages: list[dict[str, str]], *, flex: bool = False, clock: _Tally | None = None
    ) -> _Attempt:
        """One call. With ``clock``, the trace's deadline bounds the wait for a slot and the call together;
        its first call starts the deadline once it has a slot."""
        body: dict[str, Any] = {
            "model": self.settings.model,
            "messages": messages,
            "response_format": bounded_response_format()
            if self.settings.bounded_output
            else response_format(),
            # OpenAI's own API takes the newer name (its reasoning models refuse the old one); compatible
            # servers (llama.cpp, vLLM, Ollama) all read the old one.
            _MAX_TOKENS_PARAMETER[self.settings.base_url is None]: self.settings.max_output_tokens,
        }
        if flex:
            body["service_tier"] = "flex"
        if self.settings.reasoning_effort is not None:
            body["reasoning_effort"] = self.settings.reasoning_effort
        elif self.settings.temperature is not None:  # reasoning models refuse any temperature but their own
            body["temperature"] = self.settings.temperature
        posted = await self._post(body, clock)
        if isinstance(posted, _Attempt):
            return posted
        # The SDK sets ``_request_id`` (from ``x-request-id``) on every object it returns.
        return _parse_completion(posted, posted._request_id)

    async def _post(self, body: dict[str, Any], clock: _Tally | None) -> ChatCompletion | _Attempt:
        """Post one chat completion under the step's pacer and the attempt's timeout (and, with ``clock``,
        the trace's deadline): the completion, or an ``_Attempt`` saying why there is none."""
        client = self._client()
        deadline = None if clock is None else clock.deadline
        trace_deadline = asyncio.timeout(None if deadline is None else deadline - time.monotonic())
        try:
            # The trace's deadline around everything; a slot (the step's pacer), then the attempt's own.
            async with trace_deadline, paced_call(), asyncio.timeout(self.settings.timeout_s):
                if clock is not None and clock.deadline is None:
                    budget = self.settings.trace_deadline_s
                    clock.deadline = time.monotonic() + budget
                    trace_deadline.reschedule(asyncio.get_running_loop().time() + budget)
                # The request ``chat.completions.create`` makes, without its walk of the arguments through
                # the SDK's TypedDicts: that walk (for aliases and formats our plain JSON body does not have;
                # it returns the body unchanged) was a large share of the client's CPU per call
                # (bench/README.md, LLM stage).
                # The test that both send the same request, headers included, guards the equivalence.
                completion = await client.post(
                    "/chat/completions", cast_to=ChatCompletion, body=body, options=_CHAT_COMPLETION_OPTIONS
                )
        except TimeoutError:
            if trace_deadline.expired():
                return _Attempt(reason="deadline_exceeded", error="cut at the trace deadline")
            return _Attempt(reason="timeout", error=f"no answer within {self.settings.timeout_s:g} s")
        except openai.APIStatusError as exc:
            return _Attempt(
                reason=classify_api_error(exc),
                error=exc.message,  # "Error code: 429 - <the endpoint's message>"
                retry_after_s=retry_after_s(exc.response.headers),
                request_id=exc.request_id,
            )
        except openai.APIError as exc:
            return _Attempt(reason=classify_api_error(exc), error=f"{type(exc).__name__}: {exc.message}")
        except ValueError as exc:
            # A 2xx whose body claims to be JSON but is not.
            return _Attempt(reason="invalid_json", error=f"response body is not JSON: {exc}")
        if not isinstance(completion, ChatCompletion):
            return _Attempt(reason="invalid_json", error="response body is not a chat completion")
        return completion

    async def complete_json(
        self, messages: list[dict[str, str]], json_format: dict[str, Any], *, temperature: float = 0.0
    ) -> JsonAnswer:
        """One chat completion held to ``json_format`` (a ``response_format``), for a call other than the
        summary (the verification of ``verify.py``): its raw content, or why there is none, and what it
        cost. One attempt, paced like the summary's calls; the caller decides about retrying."""
        body: dict[str, Any] = {
            "model": self.settings.model,
            "messages": messages,
            "response_format": json_format,
            _MAX_TOKENS_PARAMETER[self.settings.base_url is None]: self.settings.max_output_tokens,
        }
        if self.settings.reasoning_effort is not None:
            # Reasoning models refuse any temperature but their own.
            body["reasoning_effort"] = self.settings.reasoning_effort
        else:
            body["temperature"] = temperature
        posted = await self._post(body, None)
        if isinstance(posted, _Attempt):
            return JsonAnswer(
                reason=posted.reason,
                error=posted.error,
                retry_after_s=posted.retry_after_s,
                cost_usd=0.0,
            )
        usage = _usage(posted, posted._request_id)
        cost = estimate_cost_usd(
            self.settings.model,
            usage["input_tokens"],
            usage["output_tokens"],
            self.settings.prices,
            cached_input_tokens=usage["cached_input_tokens"],
            flex=usage["service_tier"] == "flex",
        )
        paid = JsonAnswer(
            input_tokens=usage["input_tokens"],
            output_tokens=usage["output_tokens"],
            cached_input_tokens=usage["cached_input_tokens"],
            cost_usd=cost,
        )
        choices = posted.choices or []
        message = choices[0].message if choices else None
        content = message.content if message is not None else None
        refusal = getattr(message, "refusal", None)
        if not content:
            if refusal:
                return dataclasses.replace(paid, reason="refused", error=f"the model refused: {refusal}")
            return dataclasses.replace(paid, reason="empty_content", error="the answer has no content")
        finish_reason = getattr(choices[0], "finish_reason", None)
        return dataclasses.replace(paid, content=content, cut_off=finish_reason == "length")


@dataclass(frozen=True)
class JsonAnswer:
    """What one ``complete_json`` call gave: the answer's content, or why there is none, and its usage.

    ``cost_usd`` is None when the model has no known price; a call that got no answer costs 0.
    """

    content: str | None = None
    # The answer reached its cap (``finish_reason: "length"``): its JSON is likely cut off.
    cut_off: bool = False
    reason: FailureReason | None = None
    error: str | None = None
    retry_after_s: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cost_usd: float | None = 0.0


class _Usage(TypedDict):
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    request_id: str | None
    service_tier: str | None


def _usage(completion: ChatCompletion, request_id: str | None) -> _Usage:
    usage = getattr(completion, "usage", None)
    return _Usage(
        input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        cached_input_tokens=int(
            getattr(getattr(usage, "prompt_tokens_details", None), "cached_tokens", 0) or 0
        ),
        request_id=request_id,
        service_tier=getattr(completion, "service_tier", None),
    )


def _parse_completion(completion: ChatCompletion, request_id: str | None) -> _Attempt:
    tokens = _usage(completion, request_id)
    choices = getattr(completion, "choices", None) or []
    message = getattr(choices[0], "message", None) if choices else None
    content = getattr(message, "content", None)
    refusal = getattr(message, "refusal", None)
    if not content and refusal:
        return _Attempt(reason="refused", error=f"the model refused: {refusal}", **tokens)
    try:
        summary, missing_refs = parse_summary_counting(content)
    except SummaryContentError as exc:
        error = str(exc)
        if choices and getattr(choices[0], "finish_reason", None) == "length":
            # Not a broken model: the answer reached its cap (max_tokens) before the JSON was closed.
            error = f"the answer was cut off at the output cap (finish_reason 'length'): {error}"
        return _Attempt(reason=exc.reason, error=error, **tokens)
    return _Attempt(summary=summary, missing_refs=missing_refs, **tokens)
