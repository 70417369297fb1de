"""An OpenAI-compatible HTTP server for tests, demos and benchmarks: real sockets, scripted faults.

The summarizer is tested through the official SDK against this server rather than by patching the SDK, so
the tests cover what production runs: request encoding, status codes, headers such as ``Retry-After``, SDK
exception mapping and timeouts.

What it speaks:

- ``POST /v1/chat/completions``: answers with a summary (``choices[0].message.content`` is JSON for the
  summarization schema) that cites real lines: it reads the ``L<nn>:`` lines of the user message and refers
  to some of them. Usage, ids and ``x-request-id`` look like OpenAI's.
- ``POST /v1/embeddings``: deterministic "hashed bag of words" vectors, so similar texts get similar vectors
  (see ``hashed_embedding``).
- Errors use OpenAI's body shape ``{"error": {"message", "type", "param", "code"}}``.

Capacity and rate limits, as real endpoints have them: with ``capacity=C`` at most C chat calls are served
at once (the latency applies to each served call) and the others wait in a FIFO queue, as in a llama.cpp
server with C slots; a queued call whose client has gone away (its timeout fired) is dropped when its turn
comes. With ``rpm_limit=N``, a chat call beyond N accepted in the last ``rpm_window_s`` (60 s, a sliding
window) is answered 429 at once with ``Retry-After`` (whole seconds) and ``retry-after-ms``: when the
oldest accepted call leaves the window.

Ordinary answers are as unkind as real models' (``repertoire="varied"``, the default): each prompt (the user
message) gets one shape of answer, chosen by a stable hash of it (``answer_shape``; shares in ``REPERTOIRE``):
one line per item, ranges (``"L03-L05"``), lists (``"L02, L04"``), an item with an empty reference, an item
without its ``line_refs`` key, an oversized answer (long texts, more bullets and notes than the schema's
bounds), a refusal (``message.refusal`` set, content null), or an answer cut off at the cap
(``finish_reason: "length"``, truncated JSON). The last two only on the first call with a prompt: the
pipeline retries such an answer once, and the retry gets a usable shape, so a test still sees every trace
summarized. ``repertoire="clean"`` gives the old answers, one real line per item, for tests of exact content.

Faults are scripted per endpoint, either as a queue consumed by the next calls in order
(``enqueue_faults``) or as rules for calls whose prompt contains a marker (``add_fault_rule``), so a batch
test can make one trace fail while the others succeed. Every request is recorded (``requests``) with its
arrival time, and the server tracks how many calls were in flight at once (``max_in_flight``).

Standalone, for manual runs of the pipeline against a local endpoint::

    python -m trace_summaries_harness.openai_server --port 8000 --latency-ms 300 [--capacity 1] [--rpm 60]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import re
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Endpoint = Literal["chat", "embeddings"]

FaultKind = Literal[
    "rate_limit",
    "server_error",
    "status",
    "slow",
    "invalid_json",
    "schema_violation",
    "empty_content",
    "missing_line_refs",
    "unauthorized",
    "content",
    "shape",
]

# Faults that shape the content of a 200 answer: only a chat completion has such content.
_CONTENT_FAULTS = frozenset(
    {"invalid_json", "schema_violation", "empty_content", "missing_line_refs", "content", "shape"}
)

Repertoire = Literal["varied", "clean"]
AnswerShape = Literal[
    "single", "range", "list", "empty_ref", "missing_ref_key", "oversized", "refusal", "cut_off"
]

# The varied repertoire: each shape's weight, out of ``sum`` of them (12), over prompts.
REPERTOIRE: tuple[tuple[AnswerShape, int], ...] = (
    ("single", 3),  # every item cites one line, as the prompt asks
    ("range", 2),  # items cite ranges, in the styles models write ("L08-L10", "L08-10", "L08 to L10")
    ("list", 2),  # items cite two lines ("L08, L10", "L08; L10", "L08 and L10")
    ("empty_ref", 1),  # one item cites nothing ("")
    ("missing_ref_key", 1),  # one item has no "line_refs" key at all
    ("oversized", 1),  # a long title and flow, more bullets and notes than the bounds, texts of ~600 chars
    ("refusal", 1),  # message.refusal set, content null
    ("cut_off", 1),  # finish_reason "length", the JSON cut off
)
# Unusable answers the pipeline retries (once): only the first call with a prompt gets them.
FIRST_CALL_ONLY: frozenset[AnswerShape] = frozenset({"refusal", "cut_off"})
ANSWER_SHAPES: tuple[AnswerShape, ...] = tuple(shape for shape, _ in REPERTOIRE)
_USABLE = tuple((shape, weight) for shape, weight in REPERTOIRE if shape not in FIRST_CALL_ONLY)
REFUSAL_TEXT = "I'm sorry, but I can't help with that request."
# The oversized shape: how many bullets and notes, and how long each text (the bounds: 10, 5 and 200); the
# title gets half as many characters (its bound: 100), the flow four times as many (its bound: 600).
OVERSIZED_BULLETS = 16
OVERSIZED_NOTES = 8
OVERSIZED_TEXT_CHARS = 600

DEFAULT_EMBEDDING_DIMENSIONS = 1536
# A model name ending in "-<n>" with n at least this large names its dimension ("…-large-3072"); smaller
# suffixes are versions ("text-embedding-ada-002").
_MIN_SUFFIX_DIMENSIONS = 64

_PROMPT_LINE = re.compile(r"^L(\d+): ?(.*)$", re.MULTILINE)
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour, applied to one call. Build them with the class methods."""

    kind: FaultKind
    status: int = 200
    retry_after: str | None = None
    delay_s: float = 0.0
    content: str | None = None
    message: str = ""
    shape: AnswerShape | None = None

    @classmethod
    def rate_limit(cls, retry_after: str | None = "1") -> Fault:
        """429 with ``Retry-After: <retry_after>`` (seconds, may be fractional; ``None`` sends no header)."""
        return cls(
            "rate_limit", status=429, retry_after=retry_after, message="Rate limit reached for requests"
        )

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        return cls(
            "server_error", status=status, message="The server had an error while processing your request."
        )

    @classmethod
    def http_status(cls, status: int, message: str = "Scripted error") -> Fault:
        """Any error status, e.g. 400, 403 or 404, with an OpenAI-style body."""
        return cls("status", status=status, message=message)

    @classmethod
    def unauthorized(cls) -> Fault:
        return cls("unauthorized", status=401, message="Incorrect API key provided.")

    @classmethod
    def slow(cls, delay_s: float) -> Fault:
        """Answer normally, but only after ``delay_s`` (use more than the client's timeout)."""
        return cls("slow", delay_s=delay_s)

    @classmethod
    def invalid_json(cls) -> Fault:
        """200 whose message content is truncated JSON."""
        return cls("invalid_json", content='{"title": "Truncated answer", "summary_bullets": [')

    @classmethod
    def schema_violation(cls) -> Fault:
        """200 whose content is JSON, but a wrong type, a missing field and an extra field."""
        return cls(
            "schema_violation", content=json.dumps({"title": "Off schema", "summary_bullets": "none", "x": 1})
        )

    @classmethod
    def empty_content(cls) -> Fault:
        return cls("empty_content", content="")

    @classmethod
    def missing_line_refs(cls) -> Fault:
        """A valid summary citing one real line and two lines past the end of the prompt (2 invalid refs)."""
        return cls("missing_line_refs")

    @classmethod
    def with_content(cls, content: str) -> Fault:
        """200 with exactly this message content, e.g. a summary with hand-picked line refs."""
        return cls("content", content=content)

    @classmethod
    def shaped(cls, shape: AnswerShape) -> Fault:
        """200 with the repertoire's answer of this shape for the prompt, whatever its hash and call."""
        if shape not in ANSWER_SHAPES:
            raise ValueError(f"unknown answer shape {shape!r}; one of {ANSWER_SHAPES}")
        return cls("shape", shape=shape, message=REFUSAL_TEXT if shape == "refusal" else "")

    @classmethod
    def refusal(cls, message: str = REFUSAL_TEXT) -> Fault:
        """200 whose message is a refusal: ``refusal`` set, ``content`` null."""
        return cls("shape", shape="refusal", message=message)

    @classmethod
    def cut_off(cls) -> Fault:
        """200 with ``finish_reason: "length"`` and the JSON cut off, as when the answer reaches its cap."""
        return cls.shaped("cut_off")

    @classmethod
    def oversized(cls) -> Fault:
        """200 with a valid summary far beyond the schema's bounds: long texts, too many bullets and notes."""
        return cls.shaped("oversized")

    @classmethod
    def ranged_refs(cls) -> Fault:
        """200 with a summary whose items cite ranges of real lines (``"L08-L10"``, ``"L08-10"``...)."""
        return cls.shaped("range")

    @classmethod
    def listed_refs(cls) -> Fault:
        """200 with a summary whose items cite two real lines each (``"L08, L10"``, ``"L08; L10"``...)."""
        return cls.shaped("list")


@dataclass
class RecordedRequest:
    """One request as the server saw it; ``status`` and ``fault`` are set once it is answered."""

    index: int
    endpoint: str
    path: str
    headers: dict[str, str]
    body: Any
    arrived_at: float
    status: int | None = None
    fault: FaultKind | None = None
    answered_at: float | None = None
    # Time spent waiting for capacity, and whether the client left before its turn came.
    queued_s: float = 0.0
    abandoned: bool = False
    # Chat calls with this user message the server has seen, this one included (1: the prompt's first call).
    prompt_call: int = 0
    # The shape of the summary served (repertoire or ``Fault.shaped``); None for errors and other faults.
    shape: AnswerShape | None = None

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages") or []) if isinstance(self.body, dict) else []

    def message_text(self, role: str) -> str:
        return "\n".join(str(m.get("content") or "") for m in self.messages if m.get("role") == role)


@dataclass
class _FaultRule:
    contains: str
    faults: deque[Fault]
    repeat: bool


@dataclass
class _State:
    """Everything the handler threads share, guarded by one lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    queues: dict[str, deque[Fault]] = field(default_factory=lambda: {"chat": deque(), "embeddings": deque()})
    rules: dict[str, list[_FaultRule]] = field(default_factory=lambda: {"chat": [], "embeddings": []})
    requests: list[RecordedRequest] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    in_flight_by_endpoint: dict[str, int] = field(default_factory=lambda: {"chat": 0, "embeddings": 0})
    max_in_flight_by_endpoint: dict[str, int] = field(default_factory=lambda: {"chat": 0, "embeddings": 0})
    latency_s: float = 0.0
    require_api_key: str | None = None
    repertoire: Repertoire = "varied"
    # Chat calls seen per user message (by digest), so the first call of a prompt can be told apart.
    prompt_calls: dict[int, int] = field(default_factory=dict)
    # A gate: chat answers wait until this many chat calls are in flight at once (see ``hold_chat_until``).
    gate_in_flight: int = 0
    gate_timeout_s: float = 0.0
    gate_changed: threading.Condition = field(init=False)
    # Capacity: at most this many chat calls served at once (0: no limit), the others queued FIFO.
    capacity: int = 0
    serving: int = 0
    max_serving: int = 0
    max_queued: int = 0
    abandoned: int = 0
    queue: deque[int] = field(default_factory=deque)
    next_ticket: int = 0
    capacity_changed: threading.Condition = field(init=False)
    # Rate limit: at most ``rpm_limit`` chat calls accepted per sliding ``rpm_window_s`` (0: no limit).
    rpm_limit: int = 0
    rpm_window_s: float = 60.0
    accepted_at: deque[float] = field(default_factory=deque)
    rate_limited: int = 0

    def __post_init__(self) -> None:
        self.gate_changed = threading.Condition(self.lock)
        self.capacity_changed = threading.Condition(self.lock)


class OpenAICompatibleServer:
    """A threaded HTTP server on 127.0.0.1; ``with OpenAICompatibleServer() as server: server.base_url``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_s: float = 0.0,
        require_api_key: str | None = None,
        capacity: int = 0,
        rpm_limit: int = 0,
        rpm_window_s: float = 60.0,
        repertoire: Repertoire = "varied",
    ) -> None:
        if capacity < 0 or rpm_limit < 0 or rpm_window_s <= 0:
            raise ValueError("capacity and rpm_limit cannot be negative, rpm_window_s must be positive")
        _check_repertoire(repertoire)
        self._state = _State(
            latency_s=latency_s,
            require_api_key=require_api_key,
            repertoire=repertoire,
            capacity=capacity,
            rpm_limit=rpm_limit,
            rpm_window_s=rpm_window_s,
        )
        self._httpd = _HTTPServer((host, port), _Handler, self._state)
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def base_url(self) -> str:
        """What the SDK takes as ``base_url``."""
        return f"{self.url}/v1"

    def start(self) -> OpenAICompatibleServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                # How often the accept loop checks for shutdown: short, so stopping costs no test time.
                kwargs={"poll_interval": 0.02},
                name="openai-test-server",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; calls held by a ``slow`` fault are released at once."""
        self._state.stopping.set()
        with self._state.lock:
            self._state.gate_changed.notify_all()
            self._state.capacity_changed.notify_all()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> OpenAICompatibleServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- behaviour -----------------------------------------------------------------------------------------

    @property
    def latency_s(self) -> float:
        return self._state.latency_s

    @latency_s.setter
    def latency_s(self, value: float) -> None:
        """A fixed delay before every answer, to make concurrency visible in benchmarks."""
        with self._state.lock:
            self._state.latency_s = value

    @property
    def repertoire(self) -> Repertoire:
        return self._state.repertoire

    @repertoire.setter
    def repertoire(self, value: Repertoire) -> None:
        """``"varied"`` (default): answers shaped as real models shape them; ``"clean"``: one line each."""
        _check_repertoire(value)
        with self._state.lock:
            self._state.repertoire = value

    @property
    def capacity(self) -> int:
        return self._state.capacity

    @capacity.setter
    def capacity(self, value: int) -> None:
        """Chat calls served at once (0: no limit); the others wait their turn, first come first served."""
        if value < 0:
            raise ValueError("capacity cannot be negative")
        with self._state.lock:
            self._state.capacity = value
            self._state.capacity_changed.notify_all()

    def limit_rate(self, rpm_limit: int, window_s: float = 60.0) -> None:
        """At most ``rpm_limit`` chat calls per sliding ``window_s`` (0: no limit); beyond, 429 at once."""
        if rpm_limit < 0 or window_s <= 0:
            raise ValueError("rpm_limit cannot be negative, window_s must be positive")
        with self._state.lock:
            self._state.rpm_limit = rpm_limit
            self._state.rpm_window_s = window_s
            self._state.accepted_at.clear()

    def enqueue_faults(self, faults: Iterable[Fault], endpoint: Endpoint = "chat") -> None:
        """The next calls to ``endpoint`` get these faults, one each, in order; later calls are normal."""
        faults = list(faults)
        _check_endpoint(faults, endpoint)
        with self._state.lock:
            self._state.queues[endpoint].extend(faults)

    def add_fault_rule(
        self, contains: str, faults: Sequence[Fault], *, repeat: bool = False, endpoint: Endpoint = "chat"
    ) -> None:
        """Calls whose request text contains ``contains`` get ``faults`` in order (for ever if ``repeat``).

        Rules are checked before the queue; the first matching rule with a fault left wins.
        """
        _check_endpoint(faults, endpoint)
        with self._state.lock:
            self._state.rules[endpoint].append(_FaultRule(contains, deque(faults), repeat))

    def clear_faults(self) -> None:
        with self._state.lock:
            for queue in self._state.queues.values():
                queue.clear()
            for rules in self._state.rules.values():
                rules.clear()

    # -- observation ---------------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._state.lock:
            return list(self._state.requests)

    def chat_requests(self) -> list[RecordedRequest]:
        return [request for request in self.requests if request.endpoint == "chat"]

    def embedding_requests(self) -> list[RecordedRequest]:
        return [request for request in self.requests if request.endpoint == "embeddings"]

    def served_shapes(self) -> Counter[AnswerShape]:
        """How many chat answers of each shape were served (the repertoire's and ``Fault.shaped``)."""
        return Counter(request.shape for request in self.chat_requests() if request.shape is not None)

    def unusable_answers(self) -> list[RecordedRequest]:
        """Chat calls answered with a refusal or a cut-off answer: the client retries them.

        ``len(chat_requests()) - len(unusable_answers())`` is the number of calls a test would count if
        every answer were usable.
        """
        return [request for request in self.chat_requests() if request.shape in FIRST_CALL_ONLY]

    @property
    def in_flight(self) -> int:
        with self._state.lock:
            return self._state.in_flight

    @property
    def max_in_flight(self) -> int:
        """The most calls (any endpoint) the server was handling at the same moment."""
        with self._state.lock:
            return self._state.max_in_flight

    @property
    def max_serving(self) -> int:
        """The most chat calls served at once (never above ``capacity`` when one is set)."""
        with self._state.lock:
            return self._state.max_serving

    @property
    def max_queued(self) -> int:
        """The most chat calls waiting for capacity at once."""
        with self._state.lock:
            return self._state.max_queued

    @property
    def rate_limited(self) -> int:
        """Chat calls answered 429 by the rate limit (scripted ``rate_limit`` faults not included)."""
        with self._state.lock:
            return self._state.rate_limited

    @property
    def abandoned(self) -> int:
        """Queued chat calls whose client had gone when their turn came (not served)."""
        with self._state.lock:
            return self._state.abandoned

    def max_in_flight_for(self, endpoint: Endpoint) -> int:
        with self._state.lock:
            return self._state.max_in_flight_by_endpoint[endpoint]

    def hold_chat_until(self, in_flight: int, timeout_s: float = 30.0) -> None:
        """Hold every chat answer until ``in_flight`` chat calls are in flight at once, then open for good.

        It proves calls overlap without sleeping: a client that never reaches ``in_flight`` concurrent calls
        has each of them held for ``timeout_s``, then answered, and ``max_in_flight_for`` tells the truth.
        """
        with self._state.lock:
            self._state.gate_in_flight = in_flight
            self._state.gate_timeout_s = timeout_s

    def reset_stats(self) -> None:
        """Forget recorded requests and the in-flight maximum (calls still running keep being counted)."""
        with self._state.lock:
            self._state.requests.clear()
            self._state.max_in_flight = self._state.in_flight
            self._state.max_in_flight_by_endpoint = dict(self._state.in_flight_by_endpoint)
            self._state.max_serving = self._state.serving
            self._state.max_queued = len(self._state.queue)
            self._state.rate_limited = 0
            self._state.abandoned = 0


@contextmanager
def openai_server(**options: Any) -> Iterator[OpenAICompatibleServer]:
    """A started server for the duration of the block (a pytest fixture can simply yield from this)."""
    with OpenAICompatibleServer(**options) as server:
        yield server


def _check_repertoire(repertoire: str) -> None:
    if repertoire not in ("varied", "clean"):
        raise ValueError(f"unknown repertoire {repertoire!r}: 'varied' or 'clean'")


def _check_endpoint(faults: Iterable[Fault], endpoint: Endpoint) -> None:
    if endpoint not in ("chat", "embeddings"):
        raise ValueError(f"unknown endpoint {endpoint!r}")
    if endpoint == "embeddings":
        content = [fault.kind for fault in faults if fault.kind in _CONTENT_FAULTS]
        if content:
            raise ValueError(f"{content} only apply to chat completions")


# -- answers ---------------------------------------------------------------------------------------------


def prompt_lines(text: str) -> list[tuple[int, str, str]]:
    """``(number, label as written, content)`` of every ``L<nn>: ...`` line of a prompt."""
    return [
        (int(match.group(1)), f"L{match.group(1)}", match.group(2)) for match in _PROMPT_LINE.finditer(text)
    ]


def summary_for_prompt(prompt: str) -> dict[str, Any]:
    """A plausible summary of the trace in ``prompt`` that only cites lines the prompt has.

    Tree lines (``├─``/``└─``) become the flow and the first bullets; other lines with content fill up to
    five bullets; a line mentioning ERROR becomes a note. Refs are copied as written (``L03``), like a model
    would, which leaves normalising them to the client.
    """
    meaningful = _meaningful_lines(prompt)
    tree = [(label, content) for label, content in meaningful if "├─" in content or "└─" in content]
    others = [(label, content) for label, content in meaningful if (label, content) not in tree]
    header = meaningful[0][1] if meaningful else "empty trace"
    steps = [_tree_label(content) for _, content in tree[:5]] or ["Trace"]
    bullets = [
        {"text": f"Step: {_tree_label(content)[:60]}", "line_refs": label} for label, content in tree[:5]
    ] + [{"text": f"Content: {content[:60]}", "line_refs": label} for label, content in others]
    errors = [(label, content) for label, content in meaningful if "ERROR" in content.upper()]
    return {
        "title": " ".join(f"Summary of {header.title()}".split()[:10]),
        "flow_diagram": "\n    ↓\n".join(steps),
        "summary_bullets": bullets[:5],
        "interesting_notes": [
            {"text": f"Error reported: {content[:60]}", "line_refs": label} for label, content in errors[:1]
        ],
    }


def _meaningful_lines(prompt: str) -> list[tuple[str, str]]:
    """``(label as written, content)`` of the prompt's lines a careful model would cite."""
    return [(label, content.strip()) for _, label, content in prompt_lines(prompt) if _is_meaningful(content)]


def _is_meaningful(content: str) -> bool:
    """Lines a careful model would cite: not blank, not a rule, not the sampling note."""
    stripped = content.strip()
    return bool(stripped.strip("=-─│ ")) and not stripped.startswith("[SAMPLED VIEW")


def _tree_label(content: str) -> str:
    return content.replace("├─", "").replace("└─", "").replace("│", "").strip()


def prompt_digest(prompt: str) -> int:
    """A stable 64-bit hash of a prompt (blake2b: the same in every process, unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(prompt.encode("utf-8"), digest_size=8).digest(), "big")


def answer_shape(prompt: str, call: int = 1) -> AnswerShape:
    """The varied repertoire's shape of the answer to the ``call``-th call with this user message.

    Chosen by the prompt's hash with the weights of ``REPERTOIRE``. A prompt whose shape is unusable
    (``FIRST_CALL_ONLY``) gets it on its first call only; its later calls get a usable shape, chosen by the
    hash as well, so every call after the first gives the same answer.
    """
    digest = prompt_digest(prompt)
    shape = _weighted(REPERTOIRE, digest)
    if call > 1 and shape in FIRST_CALL_ONLY:
        shape = _weighted(_USABLE, digest // sum(weight for _, weight in REPERTOIRE))
    return shape


def _weighted(choices: Sequence[tuple[AnswerShape, int]], number: int) -> AnswerShape:
    point = number % sum(weight for _, weight in choices)
    for shape, weight in choices:
        if point < weight:
            return shape
        point -= weight
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class ChatAnswer:
    """What the assistant message says: ``content`` (or a ``refusal``), and why the answer ended."""

    content: str | None
    refusal: str | None = None
    finish_reason: Literal["stop", "length"] = "stop"


def answer_for_prompt(prompt: str, shape: AnswerShape, refusal: str = REFUSAL_TEXT) -> ChatAnswer:
    """The answer of this shape: a refusal, a summary cut off mid-JSON, or a summary as JSON."""
    if shape == "refusal":
        return ChatAnswer(content=None, refusal=refusal)
    if shape == "cut_off":
        # A long answer reaching the cap: the JSON stops part-way through, never closed.
        whole = json.dumps(shaped_summary(prompt, "oversized"), ensure_ascii=False)
        return ChatAnswer(content=whole[: len(whole) * 3 // 5], finish_reason="length")
    return ChatAnswer(content=json.dumps(shaped_summary(prompt, shape), ensure_ascii=False))


def shaped_summary(prompt: str, shape: AnswerShape) -> dict[str, Any]:
    """``summary_for_prompt`` with its references (or its size) in one of the repertoire's JSON shapes.

    Ranges and lists only join lines the prompt has, so after normalisation they are valid citations; an
    empty or missing reference takes the last bullet (or a bullet added for it), so the answer still cites
    something when the prompt has a line worth citing.
    """
    if shape in FIRST_CALL_ONLY:
        raise ValueError(f"{shape!r} is not a summary")
    if shape == "oversized":
        return _oversized_summary(prompt)
    summary = summary_for_prompt(prompt)
    labels = [label for label, _ in _meaningful_lines(prompt)]
    items = summary["summary_bullets"] + summary["interesting_notes"]
    if shape in ("range", "list"):
        for index, item in enumerate(items):
            item["line_refs"] = _joined_ref(item["line_refs"], labels, index, ranged=shape == "range")
    elif shape in ("empty_ref", "missing_ref_key"):
        bullets = summary["summary_bullets"]
        if len(bullets) < 2:
            bullets.append({"text": "The trace ends without a clear outcome", "line_refs": ""})
        if shape == "empty_ref":
            bullets[-1]["line_refs"] = ""
        else:
            del bullets[-1]["line_refs"]
    return summary


def _joined_ref(label: str, labels: Sequence[str], index: int, *, ranged: bool) -> str:
    """``label`` with the next line worth citing (or the one before, at the end): a range or a list."""
    if label not in labels or len(labels) < 2:
        return label
    position = labels.index(label)
    other = labels[position + 1] if position + 1 < len(labels) else labels[position - 1]
    first, last = sorted((label, other), key=lambda written: int(written[1:]))
    if ranged:
        return [f"{first}-{last}", f"{first}-{int(last[1:])}", f"{first} to {last}"][index % 3]
    return [f"{first}, {last}", f"{first}; {last}", f"{first} and {last}"][index % 3]


def _oversized_summary(prompt: str) -> dict[str, Any]:
    """A summary that ignores every bound: a long title and flow, too many items, each far too long."""
    meaningful = _meaningful_lines(prompt) or [("", "the trace")]

    def item(kind: str, number: int) -> dict[str, Any]:
        label, content = meaningful[number % len(meaningful)]
        text = f"{kind} {number + 1}: {content}."
        while len(text) < OVERSIZED_TEXT_CHARS:
            text += f" In more detail, {content}."
        return {"text": text[:OVERSIZED_TEXT_CHARS], "line_refs": label}

    title = f"A long and detailed summary of {meaningful[0][1]}"
    while len(title) < OVERSIZED_TEXT_CHARS // 2:
        title += ", step by step, with every input, output and error explained at length"
    steps: list[str] = []
    while sum(len(step) + 7 for step in steps) < 4 * OVERSIZED_TEXT_CHARS:
        steps.append(f"Step {len(steps) + 1}: {meaningful[len(steps) % len(meaningful)][1]}")
    return {
        "title": title,
        "flow_diagram": "\n    ↓\n".join(steps),
        "summary_bullets": [item("Bullet", number) for number in range(OVERSIZED_BULLETS)],
        "interesting_notes": [item("Note", number) for number in range(OVERSIZED_NOTES)],
    }


def _missing_refs_summary(prompt: str) -> dict[str, Any]:
    numbers = [number for number, _, _ in prompt_lines(prompt)]
    last = max(numbers, default=0)
    first = f"L{min(numbers)}" if numbers else ""
    return {
        "title": "Summary citing missing lines",
        "flow_diagram": "Start\n    ↓\nEnd",
        "summary_bullets": [
            {"text": "Cites a real line", "line_refs": first},
            {"text": "Cites a line past the end", "line_refs": f"L{last + 100}"},
        ],
        "interesting_notes": [{"text": "Cites another missing line", "line_refs": f"L{last + 300}"}],
    }


def embedding_dimensions(model: str, dimensions: int | None = None) -> int:
    """``dimensions`` if given, else the model name's numeric suffix (``…-3072``), else 1536."""
    if dimensions is not None:
        return dimensions
    match = re.search(r"-(\d+)$", model)
    if match and int(match.group(1)) >= _MIN_SUFFIX_DIMENSIONS:
        return int(match.group(1))
    return DEFAULT_EMBEDDING_DIMENSIONS


def hashed_embedding(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector: lowercase word tokens hashed (blake2b) to an index and a sign, summed.

    Texts that share words share components, so cosine similarity follows word overlap; blake2b (unlike
    ``hash``) gives the same vector in every process. A text without words maps to a fixed unit vector.
    """
    vector = [0.0] * dimensions
    for word in _WORD.findall(text.lower()) or ["<empty>"]:
        digest = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "big")
        vector[digest % dimensions] += -1.0 if digest >> 63 else 1.0
    norm = math.sqrt(sum(value * value for value in vector))
    return [value / norm for value in vector] if norm else vector


def word_count(text: str) -> int:
    return len(_WORD.findall(text))


# -- HTTP ------------------------------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (its timeout fired) is not an error of the server; anything else is."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], state: _State
    ) -> None:
        self.state = state
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    # Answers go out in one write (``_send_json``), so Nagle's algorithm has nothing to hold back; TCP_NODELAY
    # keeps it that way for any write added later (a split write would wait ~40 ms for a delayed ACK).
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"
    # Idle keep-alive connections release their thread after this long.
    timeout = 30
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr log; tests inspect ``requests`` instead."""

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            self._send_json(200, {"object": "list", "data": [{"id": "gpt-4.1-nano", "object": "model"}]})
        else:
            self._send_error(404, f"Unknown path {self.path}", "invalid_request_error", "unknown_url")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        endpoint = {"/v1/chat/completions": "chat", "/v1/embeddings": "embeddings"}.get(
            self.path.split("?")[0]
        )
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        state = self.server.state
        prompt_key = prompt_digest(_user_text(body)) if endpoint == "chat" else None
        with state.lock:
            record = RecordedRequest(
                index=len(state.requests),
                endpoint=endpoint or "unknown",
                path=self.path,
                headers={key.lower(): value for key, value in self.headers.items()},
                body=body,
                arrived_at=time.monotonic(),
            )
            if prompt_key is not None:
                record.prompt_call = state.prompt_calls[prompt_key] = (
                    state.prompt_calls.get(prompt_key, 0) + 1
                )
            state.requests.append(record)
            if endpoint is not None:
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
                state.in_flight_by_endpoint[endpoint] += 1
                state.max_in_flight_by_endpoint[endpoint] = max(
                    state.max_in_flight_by_endpoint[endpoint], state.in_flight_by_endpoint[endpoint]
                )
                if endpoint == "chat" and state.gate_in_flight:
                    self._wait_at_gate(state)
        try:
            if endpoint is None:
                self._answer(
                    record,
                    404,
                    _error_payload(f"Unknown path {self.path}", "invalid_request_error", "unknown_url"),
                )
            else:
                self._serve(record, endpoint, body)
        finally:
            if endpoint is not None:
                with state.lock:
                    state.in_flight -= 1
                    state.in_flight_by_endpoint[endpoint] -= 1

    @staticmethod
    def _wait_at_gate(state: _State) -> None:
        """Called holding ``state.lock``; the call is already counted in flight."""
        if state.in_flight_by_endpoint["chat"] >= state.gate_in_flight:
            state.gate_in_flight = 0  # reached: open for good, and let the held calls go
            state.gate_changed.notify_all()
            return
        state.gate_changed.wait_for(
            lambda: state.gate_in_flight == 0 or state.stopping.is_set(), timeout=state.gate_timeout_s
        )

    def _serve(self, record: RecordedRequest, endpoint: str, body: Any) -> None:
        state = self.server.state
        if endpoint != "chat":
            self._serve_call(record, endpoint, body)
            return
        wait_s = _take_rate(state)
        if wait_s is not None:
            record.fault = "rate_limit"
            headers = {
                "Retry-After": str(max(1, math.ceil(wait_s))),
                "retry-after-ms": str(math.ceil(wait_s * 1000)),
            }
            message = f"Rate limit reached for requests: {state.rpm_limit} per {state.rpm_window_s:g} s"
            self._answer(record, 429, _error_payload(message, *_ERROR_KINDS["rate_limit"]), headers)
            return
        turn = self._wait_for_capacity(state, record)
        if turn == "refused":
            self.close_connection = True
            return
        try:
            self._serve_call(record, endpoint, body)
        finally:
            if turn == "counted":
                with state.lock:
                    state.serving -= 1
                    state.capacity_changed.notify_all()

    def _wait_for_capacity(
        self, state: _State, record: RecordedRequest
    ) -> Literal["unlimited", "counted", "refused"]:
        """Wait (FIFO) until this call may be served: "counted" in ``serving`` (release it after serving),
        "unlimited" without a capacity, "refused" if the server stops or the client has gone meanwhile."""
        with state.lock:
            if not state.capacity:
                return "unlimited"
            ticket = state.next_ticket
            state.next_ticket += 1
            state.queue.append(ticket)
            waited = False
            while True:
                if state.stopping.is_set():
                    state.queue.remove(ticket)
                    state.capacity_changed.notify_all()
                    return "refused"
                if state.queue[0] == ticket and state.serving < state.capacity:
                    state.queue.popleft()
                    record.queued_s = time.monotonic() - record.arrived_at
                    state.capacity_changed.notify_all()  # the next in line may have room too
                    if waited and self._client_gone():
                        record.abandoned = True
                        state.abandoned += 1
                        return "refused"
                    state.serving += 1
                    state.max_serving = max(state.max_serving, state.serving)
                    return "counted"
                state.max_queued = max(state.max_queued, len(state.queue))
                waited = True
                state.capacity_changed.wait()

    def _client_gone(self) -> bool:
        """Whether the client closed the connection (a peek that reads end of file, without blocking)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            # Readable with nothing to read is end of file; a waiting client sends nothing more.
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (ConnectionError, ValueError):
            return True

    def _serve_call(self, record: RecordedRequest, endpoint: str, body: Any) -> None:
        state = self.server.state
        fault = self._next_fault(endpoint, body)
        record.fault = fault.kind if fault else None
        delay = state.latency_s + (fault.delay_s if fault else 0.0)
        if delay > 0 and state.stopping.wait(delay):
            self.close_connection = True
            return
        expected_key = state.require_api_key
        if expected_key is not None and record.headers.get("authorization") != f"Bearer {expected_key}":
            fault = Fault.unauthorized()
        if fault is not None and fault.status >= 400:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            kind, code = _ERROR_KINDS.get(fault.kind, ("invalid_request_error", None))
            self._answer(record, fault.status, _error_payload(fault.message, kind, code), headers)
            return
        if not isinstance(body, dict):
            message = "We could not parse the JSON body of your request."
            self._answer(record, 400, _error_payload(message, "invalid_request_error", None))
            return
        if endpoint == "chat":
            self._answer(record, *self._chat_completion(record, body, fault))
        else:
            self._answer(record, *self._embeddings(body))

    def _next_fault(self, endpoint: str, body: Any) -> Fault | None:
        state = self.server.state
        with state.lock:
            has_rules = bool(state.rules[endpoint])
        # Re-encoding the whole request (the prompt) is only needed to match a rule's marker.
        text = json.dumps(body, ensure_ascii=False) if has_rules and body is not None else ""
        with state.lock:
            for rule in state.rules[endpoint]:
                if rule.faults and rule.contains in text:
                    fault = rule.faults.popleft()
                    if rule.repeat:
                        rule.faults.append(fault)
                    return fault
            queue = state.queues[endpoint]
            return queue.popleft() if queue else None

    def _chat_completion(
        self, record: RecordedRequest, body: dict[str, Any], fault: Fault | None
    ) -> tuple[int, Any]:
        if not body.get("model") or not isinstance(body.get("messages"), list):
            message = "'model' and 'messages' are required."
            return 400, _error_payload(message, "invalid_request_error", "missing_required_parameter")
        prompt = record.message_text("user")
        if fault is not None and fault.kind == "missing_line_refs":
            answer = ChatAnswer(content=json.dumps(_missing_refs_summary(prompt), ensure_ascii=False))
        elif fault is not None and fault.kind == "shape" and fault.shape is not None:
            record.shape = fault.shape
            answer = answer_for_prompt(prompt, fault.shape, fault.message or REFUSAL_TEXT)
        elif fault is not None and fault.content is not None:
            answer = ChatAnswer(content=fault.content)
        else:
            varied = self.server.state.repertoire == "varied"
            record.shape = answer_shape(prompt, record.prompt_call) if varied else "single"
            answer = answer_for_prompt(prompt, record.shape)
        prompt_tokens = sum(word_count(str(message.get("content") or "")) for message in record.messages)
        completion_tokens = word_count(answer.content or answer.refusal or "")
        cap = body.get("max_completion_tokens") or body.get("max_tokens")
        if answer.finish_reason == "length" and isinstance(cap, int) and cap > 0:
            completion_tokens = cap  # cut off at the cap: the whole cap was spent
        return 200, {
            "id": f"chatcmpl-test-{record.index}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer.content, "refusal": answer.refusal},
                    "logprobs": None,
                    "finish_reason": answer.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "system_fingerprint": "fp_test",
        }

    def _embeddings(self, body: dict[str, Any]) -> tuple[int, Any]:
        raw_input = body.get("input")
        texts = _embedding_texts(raw_input)
        model = body.get("model")
        if texts is None or not model:
            message = "'input' (a string or a list) and 'model' are required."
            return 400, _error_payload(message, "invalid_request_error", None)
        dimensions = body.get("dimensions")
        if dimensions is not None and (not isinstance(dimensions, int) or dimensions < 1):
            return 400, _error_payload(
                "'dimensions' must be a positive integer.", "invalid_request_error", None
            )
        size = embedding_dimensions(str(model), dimensions)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = hashed_embedding(text, size)
            encoded: Any = (
                base64.b64encode(struct.pack(f"<{size}f", *vector)).decode("ascii") if as_base64 else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(word_count(text) for text in texts)
        return 200, {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def _answer(
        self, record: RecordedRequest, status: int, payload: Any, headers: dict[str, str] | None = None
    ) -> None:
        record.status = status
        record.answered_at = time.monotonic()
        extra = {"x-request-id": f"req_test_{record.index}", **(headers or {})}
        self._send_json(status, payload, extra)

    def _send_error(self, status: int, message: str, kind: str, code: str | None) -> None:
        self._send_json(status, _error_payload(message, kind, code))

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        """Send the status line, the headers and the body in one write, as production servers do.

        ``send_response`` plus ``end_headers`` write the head and then the body: two segments per answer for
        the client to read, and with Nagle's algorithm on, a body held back ~40 ms for the client's delayed
        ACK of the head.
        """
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        reason = self.responses[status][0] if status in self.responses else ""
        head = [
            f"{self.protocol_version} {status} {reason}",
            f"Server: {self.version_string()}",
            f"Date: {self.date_time_string()}",
            "Content-Type: application/json",
            f"Content-Length: {len(data)}",
            *(f"{key}: {value}" for key, value in (headers or {}).items()),
        ]
        try:
            self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (its timeout fired during a slow answer): nothing left to tell it.
            self.close_connection = True


_ERROR_KINDS: dict[str, tuple[str, str | None]] = {
    "rate_limit": ("requests", "rate_limit_exceeded"),
    "server_error": ("server_error", None),
    "unauthorized": ("invalid_request_error", "invalid_api_key"),
}


def _take_rate(state: _State) -> float | None:
    """Admit one chat call under the rate limit: None if admitted, else seconds until there is room."""
    with state.lock:
        if not state.rpm_limit:
            return None
        now = time.monotonic()
        accepted = state.accepted_at
        while accepted and accepted[0] <= now - state.rpm_window_s:
            accepted.popleft()
        if len(accepted) < state.rpm_limit:
            accepted.append(now)
            return None
        state.rate_limited += 1
        return accepted[0] + state.rpm_window_s - now


def _user_text(body: Any) -> str:
    """The user message of a chat request body, as ``RecordedRequest.message_text("user")`` reads it."""
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list):
        return ""
    return "\n".join(
        str(m.get("content") or "") for m in messages if isinstance(m, dict) and m.get("role") == "user"
    )


def _error_payload(message: str, kind: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _embedding_texts(raw: Any) -> list[str] | None:
    """Texts to embed: a string, a list of strings, or token arrays (each token id counts as a word)."""
    if isinstance(raw, str):
        return [raw]
    if not isinstance(raw, list) or not raw:
        return None
    if all(isinstance(item, str) for item in raw):
        return list(raw)
    if all(isinstance(item, int) for item in raw):
        return [" ".join(f"t{token}" for token in raw)]
    if all(isinstance(item, list) and all(isinstance(token, int) for token in item) for item in raw):
        return [" ".join(f"t{token}" for token in item) for item in raw]
    return None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="OpenAI-compatible test server (chat completions, embeddings)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="fixed delay before every answer")
    parser.add_argument("--api-key", default=None, help="require this bearer token (401 otherwise)")
    parser.add_argument("--capacity", type=int, default=0, help="chat calls served at once (0: no limit)")
    parser.add_argument("--rpm", type=int, default=0, help="chat calls per sliding minute (0: no limit)")
    parser.add_argument("--rpm-window-s", type=float, default=60.0, help="the rate limit's window")
    parser.add_argument(
        "--repertoire",
        choices=["varied", "clean"],
        default="varied",
        help="varied: answers shaped as real models shape them (default); clean: one real line per item",
    )
    args = parser.parse_args(argv)
    server = OpenAICompatibleServer(
        host=args.host,
        port=args.port,
        latency_s=args.latency_ms / 1000,
        require_api_key=args.api_key,
        capacity=args.capacity,
        rpm_limit=args.rpm,
        rpm_window_s=args.rpm_window_s,
        repertoire=args.repertoire,
    )
    # SIGTERM stops it like Ctrl-C, even when started from a shell that ignores SIGTERM (a background job
    # under nohup passes the ignored disposition on through exec; `terminate()` then did nothing).
    signal.signal(signal.SIGTERM, _interrupt)
    server.start()
    print(f"OpenAI-compatible test server on {server.base_url} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
