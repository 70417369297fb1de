"""How many LLM calls a step keeps in flight: a limit that adapts to what the endpoint can serve.

A fixed number of calls in flight cannot suit both a one-slot local server (llama.cpp on a laptop, where
every call beyond the first waits in the server's queue until the client's timeout throws it away) and a
large cloud quota (where a handful of calls leaves most of it idle). ``CallPacer`` is additive increase,
multiplicative decrease, as TCP paces a connection:

- it starts at one call and doubles the limit after each round of successful calls (a round: calls
  started at the current limit, as many as the limit, three at a limit of one) until
  the endpoint first pushes back, then grows it by one per round; never above ``max_limit`` (the step's
  ``batch_size``), never below one;
- it halves the limit on a timeout, a 429, a 5xx or a dropped connection, at most once per round (the calls
  of a round fail together; they are one signal);
- it lowers the limit when latency rises: a round whose median latency is well above the best median seen
  at a lower limit means the endpoint is queueing our calls. The new limit is that lower limit's share of
  the observed latency (``limit * best / observed``, Little's law: an endpoint that serves ``c`` at a time
  answers ``n > c`` calls in ``n / c`` times its latency), and at least half the old one: halving would
  drop below what the endpoint serves and idle part of it;
- a 429 that says when to come back (``Retry-After``) pauses every new call until then, since the quota is
  the step's, not the trace's;
- after the endpoint pushed back at some limit, probing that limit again waits for more and more
  successful calls (4, 8, ... 64), so a one-slot server is not sent a second call after every answer.

A step starts cold (one call) unless it is told where the previous step on the same endpoint and model
ended (``warm_start``): then at half that limit, so the endpoint is not sent more than it last took, and
the round at the lower limit is still there as the reference for "latency rose". At 10 calls in flight and
1 s per call, the cold start costs a step about 4 s of its calls (six rounds to reach 10); the warm start
about 0.5 s.

Latency that rises for everyone (longer prompts, a slower provider hour) is not queueing: when lowering the
limit did not bring latency down, the old figures are forgotten and the new latency becomes the reference.

The limit applies to HTTP attempts, not traces: ``paced_call`` wraps one request, and a retry waits for its
backoff outside any slot. Which failures were the pacing's fault rather than the trace's is the pacer's
call too (``last_call_absorbed``): a timeout of a call that shared the endpoint with others of ours (it
waited in the endpoint's queue) does not use up a trace's attempts. A 429 does: its ``Retry-After`` pauses
every new call of the step, and the trace's retry budget (``max_attempts``) stays what the README promises.

One pacer serves a whole step (all partitions of a ranged run); ``pacing`` makes it the one the calls of
the summaries started inside it use, through a context variable, so a summarizer that makes no calls (the
offline heuristic) needs no change. ``CallPacer.fixed`` keeps a constant limit (what shipped before), for
comparison in ``bench/bench_pacing.py``.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from urllib.parse import urlsplit

import openai

from trace_summaries.summarize.result import FailureReason
from trace_summaries.summarize.retry import classify_api_error, retry_after_s

# Failures that say the endpoint has more than it can take: each shrinks the limit.
OVERLOAD_REASONS: frozenset[FailureReason] = frozenset(
    {"timeout", "rate_limited", "server_error", "connection"}
)
# A trace retries failures the pacer absorbed (see ``last_call_absorbed``) at most this many times on top of
# its own attempts: a queue or a quota that never clears still ends the trace.
MAX_ABSORBED_RETRIES = 8

# A round is as many successful calls as the limit, but this many at a limit of one: one call is too few to
# judge by (the first of a step also pays for opening the connection), and it is the reference for the rest.
MIN_ROUND = 3
# A round's latency "rose" when it is this many times the best seen at a lower limit...
LATENCY_TOLERANCE = 1.3
# ... and at least this much longer: below that, the difference is the network's and the machine's noise.
MIN_LATENCY_RISE_S = 0.05
# Lowering the limit "brought latency down" when the next round is below this share of the one before.
RELIEF = 0.9
# Successful calls needed before probing a limit the endpoint pushed back at: doubled on each push back.
PROBE_WAIT_START = 4
PROBE_WAIT_MAX = 64
# The endpoint of a client with no base URL (the OpenAI SDK's default).
DEFAULT_BASE_URL = "https://api.openai.com/v1"
# The longest pause a ``Retry-After`` imposes on the step.
PAUSE_MAX_S = 60.0


@dataclass(frozen=True)
class PacingStats:
    """What the pacer did during a step; ``metadata()`` is what the asset reports."""

    limit: int
    max_limit: int
    initial: int
    max_reached: int
    decreases: int
    calls: int
    timeouts: int
    rate_limited: int
    server_errors: int
    absorbed: int

    def metadata(self) -> dict[str, int]:
        return {
            "llm_concurrency_initial": self.initial,
            "llm_concurrency_final": self.limit,
            "llm_concurrency_max_reached": self.max_reached,
            "llm_concurrency_allowed": self.max_limit,
            "llm_concurrency_decreases": self.decreases,
            "llm_calls": self.calls,
            "llm_timeouts": self.timeouts,
            "llm_rate_limited": self.rate_limited,
            "llm_server_errors": self.server_errors,
            "llm_retries_absorbed": self.absorbed,
        }


def warm_start(max_limit: int, remembered: int | None) -> int:
    """The limit a step starts at: one call when nothing is known of the endpoint, else half the limit
    (at least one, at most ``max_limit``) that the last step on the same endpoint and model ended at."""
    if remembered is None or remembered < 1:
        return 1
    return max(1, min(max_limit, remembered) // 2)


def endpoint_identity(base_url: str | None, model: str) -> str:
    """Which endpoint and model a pacing figure belongs to: the base URL's host, port and path (never its
    credentials or query) and the model name. No base URL: the OpenAI API."""
    parts = urlsplit(base_url or DEFAULT_BASE_URL)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path.rstrip('/')} {model}"


class PacedCall:
    """One HTTP attempt holding a slot; ``absorbed`` is set when it ends."""

    __slots__ = ("absorbed", "epoch", "peak", "started")

    def __init__(self, epoch: int, in_flight: int) -> None:
        self.started = time.monotonic()
        self.epoch = epoch
        # The most calls of ours in flight at once while this one was: above one, it may have been queued.
        self.peak = in_flight
        self.absorbed = False


class _Waiters:
    """A FIFO of tasks waiting for a slot, loop-agnostic (futures are made in the waiting task's loop)."""

    def __init__(self) -> None:
        self._queue: deque[asyncio.Future[None]] = deque()

    def __bool__(self) -> bool:
        while self._queue and self._queue[0].done():  # cancelled waits
            self._queue.popleft()
        return bool(self._queue)

    async def wait(self, give_back: Callable[[], None], queued: Callable[[], None] | None = None) -> None:
        """Wait until ``hand_over`` gives this task the slot; ``queued`` runs once it is in the queue.

        A task cancelled after being handed the slot but before it resumed gives the slot back.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(future)
        if queued is not None:
            queued()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                give_back()
            raise

    def hand_over(self) -> bool:
        """Give the slot to the first task still waiting; False when none is."""
        while self._queue:
            future = self._queue.popleft()
            if not future.done():
                future.set_result(None)
                return True
        return False


class CallPacer:
    """The step's limit on LLM calls in flight (adaptive) and on traces in progress (``max_limit``)."""

    def __init__(
        self,
        max_limit: int,
        *,
        adaptive: bool = True,
        initial: int = 1,
        latency_tolerance: float = LATENCY_TOLERANCE,
        min_latency_rise_s: float = MIN_LATENCY_RISE_S,
    ) -> None:
        if max_limit < 1:
            raise ValueError("batch_size must be at least 1")
        if initial < 1:
            raise ValueError("the initial limit must be at least 1")
        self.max_limit = max_limit
        self.adaptive = adaptive
        self._tolerance = latency_tolerance
        self._min_rise_s = min_latency_rise_s
        self._limit = min(initial, max_limit) if adaptive else max_limit
        self._initial = self._limit
        self._in_flight = 0
        self._active: set[PacedCall] = set()
        self._waiters = _Waiters()
        self._traces = 0
        self._trace_waiters = _Waiters()
        self._paused_until = 0.0
        self._wake_scheduled = False
        # The current round: calls started at the current limit.
        self._epoch = 0
        self._latencies: deque[float] = deque(maxlen=max(max_limit, MIN_ROUND))
        self._successes = 0
        self._slow_start = True
        # The latest round median at each limit: the reference for "latency rose".
        self._medians: dict[int, float] = {}
        # The median of the round that made the limit drop, until the next round says whether that helped.
        self._dropped_at: float | None = None
        self._ceiling: int | None = None
        self._probe_wait = 0
        self._max_reached = self._limit
        self._decreases = 0
        self._calls = 0
        self._counts: dict[FailureReason, int] = {}
        self._absorbed = 0

    @classmethod
    def fixed(cls, limit: int) -> CallPacer:
        """A constant ``limit``: no adaptation, no pause, no absorbed retries (the semaphore of before)."""
        return cls(limit, adaptive=False)

    @property
    def limit(self) -> int:
        return self._limit

    def stats(self) -> PacingStats:
        return PacingStats(
            limit=self._limit,
            max_limit=self.max_limit,
            initial=self._initial,
            max_reached=self._max_reached,
            decreases=self._decreases,
            calls=self._calls,
            timeouts=self._counts.get("timeout", 0),
            rate_limited=self._counts.get("rate_limited", 0),
            server_errors=self._counts.get("server_error", 0) + self._counts.get("connection", 0),
            absorbed=self._absorbed,
        )

    # -- traces in progress -----------------------------------------------------------------------------

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """A trace in progress (prepared, calling, or waiting out a backoff): at most ``max_limit`` at once.

        Enough for every call slot to find a trace while others wait out a backoff, and few enough that a
        trace is rendered only shortly before its call.
        """
        if self._traces < self.max_limit and not self._trace_waiters:
            self._traces += 1
        else:
            await self._trace_waiters.wait(self._release_trace)  # handed over, already counted
        try:
            yield
        finally:
            self._release_trace()

    def _release_trace(self) -> None:
        if not self._trace_waiters.hand_over():
            self._traces -= 1

    # -- calls in flight --------------------------------------------------------------------------------

    async def start_call(self) -> PacedCall:
        """Wait for a call slot (FIFO, and for the end of a ``Retry-After`` pause)."""
        if self._can_start() and not self._waiters:
            self._in_flight += 1
        else:
            # ``_wake`` counts it in flight when its turn comes (and wakes the queue when a pause ends).
            await self._waiters.wait(self._release_call, queued=self._wake)
        call = PacedCall(self._epoch, self._in_flight)
        for other in self._active:
            other.peak = max(other.peak, self._in_flight)
        self._active.add(call)
        self._calls += 1
        return call

    def end_call(self, call: PacedCall, error: BaseException | None) -> None:
        """Release the slot and learn from the outcome: an answer (latency), overload, or neither."""
        self._active.discard(call)
        self._in_flight -= 1
        now = time.monotonic()
        reason = _overload_reason(error)
        if error is None:
            self._on_answer(call, now - call.started)
        elif reason is not None:
            self._on_overload(call, reason, error, now)
        self._wake()

    def _release_call(self) -> None:
        self._in_flight -= 1
        self._wake()

    def _can_start(self) -> bool:
        return self._in_flight < self._limit and time.monotonic() >= self._paused_until

    def _wake(self) -> None:
        while self._waiters and self._can_start():
            self._in_flight += 1
            if not self._waiters.hand_over():
                self._in_flight -= 1
                break
        if self._waiters and self._in_flight < self._limit and not self._wake_scheduled:
            # Paused by a Retry-After: come back when the pause ends.
            self._wake_scheduled = True
            delay = max(0.0, self._paused_until - time.monotonic())
            asyncio.get_running_loop().call_later(delay, self._scheduled_wake)

    def _scheduled_wake(self) -> None:
        self._wake_scheduled = False
        self._wake()

    # -- adapting the limit ----------------------------------------------------------------------------

    def _on_answer(self, call: PacedCall, latency_s: float) -> None:
        if not self.adaptive or call.epoch != self._epoch:
            return
        self._latencies.append(latency_s)
        self._successes += 1
        level = self._limit
        size = MIN_ROUND if level == 1 else level
        if self._successes < size:
            return
        observed = statistics.median(list(self._latencies)[-size:])
        lower = [median for limit, median in self._medians.items() if limit < level]
        best = min(lower) if lower else None
        rose = best is not None and observed > self._tolerance * best and observed - best > self._min_rise_s
        if rose and self._dropped_at is not None and observed >= RELIEF * self._dropped_at:
            # A lower limit did not bring latency down: it is the endpoint's, not our queueing.
            self._medians = {}
            rose = False
        self._dropped_at = None
        if rose:
            assert best is not None
            self._decrease(max(level // 2, math.ceil(level * best / observed)), dropped_at=observed)
            return
        self._medians[level] = observed
        if self._ceiling is not None and level >= self._ceiling:
            self._ceiling, self._probe_wait = None, 0  # the endpoint now takes what it refused before
        if level >= self.max_limit:
            return
        grown = min(self.max_limit, level * 2 if self._slow_start else level + 1)
        if self._ceiling is not None and grown >= self._ceiling:
            if self._successes < self._probe_wait:
                return
            grown = min(grown, self._ceiling)
        self._set_limit(grown)

    def _on_overload(self, call: PacedCall, reason: FailureReason, error: BaseException, now: float) -> None:
        self._counts[reason] = self._counts.get(reason, 0) + 1
        if not self.adaptive:
            return
        retry_after = _retry_after(error) if reason == "rate_limited" else None
        if retry_after is not None:
            self._paused_until = max(self._paused_until, now + min(retry_after, PAUSE_MAX_S))
        if reason == "timeout" and call.peak > 1:
            call.absorbed = True
            self._absorbed += 1
        if call.epoch == self._epoch:
            self._decrease(self._limit // 2)

    def _decrease(self, limit: int, *, dropped_at: float | None = None) -> None:
        old = self._limit
        new = max(1, min(limit, old - 1))
        if old == 1:
            self._new_round()
            return
        if self._ceiling is not None and old <= self._ceiling:
            self._probe_wait = min(PROBE_WAIT_MAX, max(PROBE_WAIT_START, 2 * self._probe_wait))
        self._ceiling = old
        self._slow_start = False
        self._decreases += 1
        self._dropped_at = dropped_at
        self._limit = new
        self._new_round()

    def _set_limit(self, limit: int) -> None:
        self._limit = limit
        self._max_reached = max(self._max_reached, limit)
        self._new_round()
        self._wake()

    def _new_round(self) -> None:
        self._epoch += 1
        self._successes = 0
        self._latencies.clear()


def _overload_reason(error: BaseException | None) -> FailureReason | None:
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, openai.APIError):
        reason = classify_api_error(error)
        return reason if reason in OVERLOAD_REASONS else None
    return None


def _retry_after(error: BaseException) -> float | None:
    if isinstance(error, openai.APIStatusError):
        return retry_after_s(error.response.headers)
    return None


# -- which pacer the calls of a task use -----------------------------------------------------------------

_PACER: ContextVar[CallPacer | None] = ContextVar("trace_summaries_pacer", default=None)
_LAST_CALL: ContextVar[PacedCall | None] = ContextVar("trace_summaries_last_call", default=None)


@contextmanager
def pacing(pacer: CallPacer) -> Iterator[CallPacer]:
    """Calls made by tasks started inside this block (``asyncio.gather`` copies the context) use ``pacer``."""
    token = _PACER.set(pacer)
    try:
        yield pacer
    finally:
        _PACER.reset(token)


@asynccontextmanager
async def paced_call() -> AsyncIterator[None]:
    """One HTTP attempt under the current pacer (none outside ``pacing``: the call goes at once).

    Enter it before the attempt's timeout starts, so waiting for a slot is not part of the attempt.
    """
    pacer = _PACER.get()
    if pacer is None:
        _LAST_CALL.set(None)
        yield
        return
    call = await pacer.start_call()
    _LAST_CALL.set(call)
    try:
        yield
    except BaseException as error:
        pacer.end_call(call, error)
        raise
    pacer.end_call(call, None)


def last_call_absorbed() -> bool:
    """Whether the pacer took the last failed attempt of this task as its own doing (queueing, quota).

    Such a failure is retried without counting against the trace's ``max_attempts``.
    """
    call = _LAST_CALL.get()
    return call is not None and call.absorbed
