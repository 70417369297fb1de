"""Trace shapes and the pure generator of one team-hour of events (``generate_hour``).

Each trace kind mirrors how a real app instruments its LLM calls with PostHog:

* agents (support bot, code assistant, SQL analyst): a root ``$ai_span``, 3-8 ``$ai_generation`` calls that
  repeat the same system prompt and tool list over a growing history, a ``$ai_span`` per tool execution and,
  for tools backed by another service, a nested span for that call (three nesting levels);
* RAG QA: root span (parented to the trace id, as the LangChain integration does), a retrieval span holding
  an ``$ai_embedding`` and a vector-search span, then one answering generation;
* data extraction: flat generations with no spans, sometimes invalid JSON followed by a retry;
* writing assistant: a multi-turn chat, one generation per turn, seconds to a minute apart;
* two oversized kinds that the pipeline's guards must exclude: a batch job with more than 50 events, and a
  contract review whose input alone is over 2,000,000 characters.

Some traces add an ``$ai_trace`` event, ``$ai_metric`` scores or ``$ai_feedback`` (some of it angry or
delighted); about 5% of generations fail with ``$ai_is_error``/``$ai_error``, and the app retries. Events
are timestamped when the SDK captures them, at the end of the call or span, so parents follow children.

Every value is drawn from random streams keyed by ``(seed, team, hour)`` (see ``identity.py``), so a chunk is
reproducible on its own, whatever range of hours a seeding run covers.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from trace_summaries.demo.conversations import (
    ANTHROPIC,
    ANTHROPIC_MODELS,
    EMBEDDING_PRICES,
    OPENAI,
    OPENAI_MODELS,
    TRIAGE_MODEL,
    Model,
    ProviderFormat,
    ToolCall,
    Turn,
    assistant_turn,
    cost_usd,
    estimate_tokens,
    tool_turn,
    user_turn,
)
from trace_summaries.demo.identity import chunk_rng, event_uuids, random_uuid4, require_hour, stable_int
from trace_summaries.demo.noise import non_ai_events
from trace_summaries.demo.scenarios import (
    CODE,
    CONTRACT_ANSWER,
    CONTRACT_QUESTION,
    CONTRACT_REVIEW_PROMPT,
    EMBEDDING_MODELS,
    EXTRACTION,
    FEEDBACK_CALM,
    FEEDBACK_STRONG,
    GENERATION_ERRORS,
    PASSAGES,
    RAG,
    RAG_METRICS,
    RAG_QA,
    SQL,
    SUPPORT,
    TOOL_ERRORS,
    TRIAGE,
    WRITING,
    Scenario,
    Tool,
    ToolUse,
    huge_document,
)

SECONDS_PER_HOUR = 3600.0

# Share of traces of each oversized kind per hour; at least one of each when traces_per_hour >= 20.
DEFAULT_OVERSIZED_FRACTION = 0.02
OVERSIZED_MINIMUM_TRACES = 20
# Events in the "too many events" trace (the guard is 50) and the share of traces sending `$ai_trace`.
MANY_EVENTS_RANGE = (55, 70)
TRACE_EVENT_FRACTION = 0.15
GENERATION_ERROR_RATE = 0.05
TOOL_ERROR_RATE = 0.04
MAX_AGENT_GENERATIONS = 8
FEEDBACK_RATE = 0.12
STRONG_FEEDBACK_SHARE = 0.35
# Distinct users per team: enough that sessions and users repeat within an hour, as in real apps.
USERS_PER_TEAM = 40

_LIB = {"$lib": "posthog-python", "$lib_version": "6.9.3"}
_THOUGHTS = (None, None, "Let me check that.", "I'll look that up first.")

Event = dict[str, Any]


@dataclass(frozen=True, slots=True)
class TraceOutcome:
    """What a trace kind reports back, for the optional `$ai_trace` event."""

    name: str
    input_state: Any
    output_state: Any


@dataclass(slots=True)
class _TraceBuilder:
    """Collects one trace's events at offsets (seconds) from the trace's start, on a running clock."""

    rng: random.Random
    trace_id: str
    session_id: str | None
    clock: float = 0.0
    pending: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)

    def new_id(self) -> str:
        return random_uuid4(self.rng)

    def advance(self, seconds: float) -> None:
        self.clock += seconds

    def emit(self, event: str, properties: dict[str, Any], at: float | None = None) -> None:
        properties["$ai_trace_id"] = self.trace_id
        if self.session_id is not None:
            properties["$ai_session_id"] = self.session_id
        properties.update(_LIB)
        self.pending.append((self.clock if at is None else at, event, properties))

    def span(
        self,
        name: str,
        *,
        span_id: str,
        parent: str | None,
        started: float,
        input_state: Any,
        output_state: Any,
        error: str | None = None,
    ) -> None:
        """Closes a span (a few ms after its last child, so it never shares a child's timestamp)."""
        self.advance(self.rng.uniform(0.001, 0.02))
        properties: dict[str, Any] = {
            "$ai_span_id": span_id,
            "$ai_span_name": name,
            "$ai_input_state": input_state,
            "$ai_output_state": output_state,
            "$ai_latency": round(self.clock - started, 3),
        }
        if parent is not None:
            properties["$ai_parent_id"] = parent
        if error is not None:
            properties["$ai_is_error"] = True
            properties["$ai_error"] = error
        self.emit("$ai_span", properties)

    def metric(self, name: str, value: float) -> None:
        self.advance(self.rng.uniform(0.5, 8.0))
        self.emit("$ai_metric", {"$ai_metric_name": name, "$ai_metric_value": round(value, 3)})


class _Conversation:
    """One app's conversation with one model: system prompt, tools and a history shared by its calls."""

    def __init__(
        self, fmt: ProviderFormat, model: Model, system_prompt: str, tools: Sequence[Tool] = ()
    ) -> None:
        self.fmt = fmt
        self.model = model
        self.messages: list[dict[str, Any]] = [fmt.system(system_prompt)]
        self.system_tokens = estimate_tokens(system_prompt) + 4
        self.tokens = self.system_tokens
        self.tools = fmt.tools(tools) if tools else None
        self.tool_tokens = sum(40 + estimate_tokens(t.description) for t in tools)
        self.calls = 0

    def append(self, turn: Turn) -> None:
        self.messages.extend(self.fmt.messages(turn))
        self.tokens += turn.tokens + 4

    def call(
        self,
        b: _TraceBuilder,
        output: Turn | None,
        *,
        parent: str | None,
        name: str | None = None,
        may_fail: bool = True,
        error: tuple[int, Any] | None = None,
    ) -> bool:
        """Emits one `$ai_generation` over the current history; returns False if the call failed.

        ``output=None`` is a failure (``error`` as ``(http_status, $ai_error)``, else a random provider
        error); otherwise the call fails at the generation error rate when ``may_fail``.
        """
        rng = b.rng
        self.calls += 1
        input_tokens = self.tokens + self.tool_tokens
        failed = output is None or (may_fail and rng.random() < GENERATION_ERROR_RATE)
        properties: dict[str, Any] = {
            "$ai_span_id": b.new_id(),
            "$ai_span_name": name or f"{self.fmt.name}.chat",
            "$ai_model": self.model.name,
            "$ai_provider": self.model.provider,
            "$ai_base_url": self.fmt.base_url,
            "$ai_input": list(self.messages),
            "$ai_input_tokens": input_tokens,
            "$ai_temperature": 0.2 if self.tools else 0.7,
            "$ai_stream": False,
        }
        if parent is not None:
            properties["$ai_parent_id"] = parent
        if self.tools is not None:
            properties["$ai_tools"] = self.tools
        if failed:
            status, message = error if error is not None else rng.choice(GENERATION_ERRORS)
            latency = 60.0 if status == 408 else rng.uniform(0.15, 1.5)
            properties.update(
                {
                    "$ai_output_tokens": 0,
                    "$ai_input_cost_usd": 0.0,
                    "$ai_output_cost_usd": 0.0,
                    "$ai_total_cost_usd": 0.0,
                    "$ai_http_status": status,
                    "$ai_is_error": True,
                    "$ai_error": message,
                }
            )
        else:
            assert output is not None
            output_tokens = max(1, output.tokens)
            latency = (
                self.model.overhead_seconds
                + output_tokens * self.model.seconds_per_token * rng.uniform(0.7, 1.6)
                + input_tokens * 0.000_02
            )
            input_cost, output_cost = cost_usd(self.model, input_tokens, output_tokens)
            properties.update(
                {
                    "$ai_output_choices": self.fmt.output_choices(output, rng),
                    "$ai_output_tokens": output_tokens,
                    "$ai_input_cost_usd": input_cost,
                    "$ai_output_cost_usd": output_cost,
                    "$ai_total_cost_usd": round(input_cost + output_cost, 8),
                    "$ai_http_status": 200,
                }
            )
            if self.model.provider == "anthropic" and self.calls > 1:
                # Agents resend the same prefix; Anthropic reports the cached part separately.
                properties["$ai_cache_read_input_tokens"] = self.tool_tokens + self.system_tokens
        b.advance(latency)
        properties["$ai_latency"] = round(latency, 3)
        b.emit("$ai_generation", properties)
        return not failed


def _pick_model(rng: random.Random, scenario: Scenario) -> tuple[ProviderFormat, Model]:
    if rng.random() < scenario.anthropic_share:
        return ANTHROPIC, rng.choice(ANTHROPIC_MODELS)
    return OPENAI, rng.choice(OPENAI_MODELS)


# --- trace kinds -----------------------------------------------------------------------------------------


def _agent_trace(b: _TraceBuilder, scenario: Scenario) -> TraceOutcome:
    """A tool-using agent running one scripted play; failed calls are retried within 8 generations."""
    rng = b.rng
    fmt, model = _pick_model(rng, scenario)
    play = rng.choice(scenario.plays)
    tools = {tool.name: tool for tool in scenario.tools}
    conversation = _Conversation(fmt, model, scenario.system_prompt, scenario.tools)
    if play.earlier is not None:
        conversation.append(user_turn(play.earlier[0]))
        conversation.append(assistant_turn(play.earlier[1]))
    conversation.append(user_turn(play.request, image=play.image))

    root_id, root_started = b.new_id(), b.clock
    retries = MAX_AGENT_GENERATIONS - len(play.steps) - 1
    steps = list(play.steps)
    step = 0
    while step < len(steps):
        uses = steps[step]
        calls = [ToolCall(fmt.new_call_id(rng), use.tool, use.arguments) for use in uses]
        turn = assistant_turn(rng.choice(_THOUGHTS), calls)
        if not conversation.call(b, turn, parent=root_id, may_fail=retries > 0):
            retries -= 1
            b.advance(rng.uniform(1.0, 4.0))  # the app backs off and retries with the same input
            continue
        conversation.append(turn)
        results: list[tuple[ToolCall, Any]] = []
        failed: list[ToolUse] = []
        for use, call in zip(uses, calls, strict=True):
            result, ok = _run_tool(b, tools[use.tool], call, use.result, root_id, may_fail=retries > 0)
            results.append((call, result))
            if not ok:
                failed.append(use)
        conversation.append(tool_turn(results))
        if failed:
            retries -= 1
            steps.insert(step + 1, tuple(failed))  # the agent tries the failed calls once more
        step += 1

    answer = play.answer
    if not conversation.call(b, assistant_turn(answer), parent=root_id, may_fail=retries > 0):
        b.advance(rng.uniform(1.0, 4.0))
        conversation.call(b, assistant_turn(answer), parent=root_id, may_fail=False)
    b.span(
        scenario.app_name,
        span_id=root_id,
        parent=None,
        started=root_started,
        input_state={"messages": [{"role": "user", "content": play.request}]},
        output_state={"role": "assistant", "content": answer},
    )
    return TraceOutcome(scenario.app_name, play.request, answer)


def _run_tool(
    b: _TraceBuilder, tool: Tool, call: ToolCall, result: Any, parent: str, *, may_fail: bool
) -> tuple[Any, bool]:
    """A tool execution span (level 2), with a nested backend-call span (level 3) for service tools."""
    rng = b.rng
    span_id, started = b.new_id(), b.clock
    error = rng.choice(TOOL_ERRORS) if may_fail and rng.random() < TOOL_ERROR_RATE else None
    if tool.backend_call is not None:
        inner_started = b.clock
        b.advance(rng.uniform(0.02, 1.2))
        b.span(
            tool.backend_call,
            span_id=b.new_id(),
            parent=span_id,
            started=inner_started,
            input_state={"request": tool.backend_call, "params": call.arguments},
            output_state={"status": 503 if error else 200},
            error=error,
        )
    else:
        b.advance(rng.uniform(0.01, 0.3))
    if error is not None:
        result = {"error": error}
    b.span(
        f"tool:{tool.name}",
        span_id=span_id,
        parent=parent,
        started=started,
        input_state=call.arguments,
        output_state=result,
        error=error,
    )
    return result, error is None


def _rag_trace(b: _TraceBuilder, scenario: Scenario) -> TraceOutcome:
    rng = b.rng
    fmt, model = _pick_model(rng, scenario)
    qa = rng.choice(RAG_QA)
    root_id, root_started = b.new_id(), b.clock
    retrieve_id, retrieve_started = b.new_id(), b.clock

    embedding_model = rng.choice(EMBEDDING_MODELS)
    latency = rng.uniform(0.05, 0.4)
    b.advance(latency)
    tokens = estimate_tokens(qa.question)
    b.emit(
        "$ai_embedding",
        {
            "$ai_span_id": b.new_id(),
            "$ai_span_name": "embed_query",
            "$ai_parent_id": retrieve_id,
            "$ai_model": embedding_model,
            "$ai_provider": "openai",
            "$ai_input": qa.question,
            "$ai_input_tokens": tokens,
            "$ai_total_cost_usd": round(tokens * EMBEDDING_PRICES[embedding_model] / 1_000_000, 10),
            "$ai_latency": round(latency, 3),
        },
    )
    # The passage that answers the question ranks first, so answers can cite it as [1].
    others = rng.sample([i for i in range(len(PASSAGES)) if i != qa.passage], 2)
    passages = [PASSAGES[i] for i in (qa.passage, *others)]
    search_started = b.clock
    b.advance(rng.uniform(0.01, 0.15))
    scores = sorted((round(rng.uniform(0.55, 0.93), 3) for _ in passages), reverse=True)
    hits = [
        {"id": f"handbook-{stable_int(p) % 10_000:04d}", "score": score}
        for p, score in zip(passages, scores, strict=True)
    ]
    b.span(
        "vector_search",
        span_id=b.new_id(),
        parent=retrieve_id,
        started=search_started,
        input_state={"index": "handbook-v3", "top_k": 3},
        output_state=hits,
    )
    b.span(
        "retrieve",
        span_id=retrieve_id,
        parent=root_id,
        started=retrieve_started,
        input_state={"query": qa.question},
        output_state={"documents": passages},
    )
    context = "\n".join(f"[{i}] {passage}" for i, passage in enumerate(passages, 1))
    conversation = _Conversation(fmt, model, f"{scenario.system_prompt}\n\nContext:\n{context}")
    conversation.append(user_turn(qa.question))
    if not conversation.call(b, assistant_turn(qa.answer), parent=root_id, name="answer"):
        b.advance(rng.uniform(1.0, 3.0))
        conversation.call(b, assistant_turn(qa.answer), parent=root_id, name="answer", may_fail=False)
    b.span(
        scenario.app_name,
        span_id=root_id,
        parent=b.trace_id,
        started=root_started,
        input_state={"question": qa.question},
        output_state={"answer": qa.answer},
    )
    if rng.random() < 0.5:
        name, low, high = rng.choice(RAG_METRICS)
        b.metric(name, rng.uniform(low, high))
    return TraceOutcome(scenario.app_name, qa.question, qa.answer)


def _extraction_trace(b: _TraceBuilder, scenario: Scenario) -> TraceOutcome:
    rng = b.rng
    fmt, model = _pick_model(rng, scenario)
    exchange = rng.choice(scenario.exchanges)
    conversation = _Conversation(fmt, model, scenario.system_prompt)
    conversation.append(user_turn(exchange.user))
    if rng.random() < 0.15:
        # The model's first reply is cut off; the app validates it, fails, and asks again.
        broken = exchange.assistant[: len(exchange.assistant) // 2]
        conversation.call(b, assistant_turn(broken), parent=None, name="extract", may_fail=False)
        started = b.clock
        b.span(
            "validate_json",
            span_id=b.new_id(),
            parent=None,
            started=started,
            input_state=broken,
            output_state=None,
            error=f"JSONDecodeError: Unterminated string starting at: line 1 column {len(broken) - 5}",
        )
        conversation.append(assistant_turn(broken))
        conversation.append(
            user_turn("Your previous reply was not valid JSON. Reply with the JSON object only.")
        )
    valid = conversation.call(b, assistant_turn(exchange.assistant), parent=None, name="extract")
    if rng.random() < 0.5:
        b.metric("json_valid", 1.0 if valid else 0.0)
    return TraceOutcome(scenario.app_name, exchange.user, exchange.assistant if valid else None)


def _chat_trace(b: _TraceBuilder, scenario: Scenario) -> TraceOutcome:
    """A multi-turn chat: each user message is one generation over the whole conversation so far."""
    rng = b.rng
    fmt, model = _pick_model(rng, scenario)
    dialog = rng.choice(scenario.dialogs)
    conversation = _Conversation(fmt, model, scenario.system_prompt)
    answer: str | None = None
    for turn, exchange in enumerate(dialog[: rng.randint(1, len(dialog))]):
        if turn:
            b.advance(rng.uniform(5.0, 45.0))  # the user reads the reply and types the next message
        conversation.append(user_turn(exchange.user))
        if conversation.call(b, assistant_turn(exchange.assistant), parent=None):
            answer = exchange.assistant
            conversation.append(assistant_turn(answer))
        else:
            answer = None
            break  # the user gives up after an error
    return TraceOutcome(scenario.app_name, dialog[0].user, answer)


def _many_events_trace(b: _TraceBuilder, scenario: Scenario) -> TraceOutcome:
    """A nightly batch job: one span and 55-70 small generations, over the 50-event guard."""
    rng = b.rng
    root_id, root_started = b.new_id(), b.clock
    counts: dict[str, int] = {}
    for _ in range(rng.randint(*MANY_EVENTS_RANGE)):
        exchange = rng.choice(scenario.exchanges)
        conversation = _Conversation(OPENAI, TRIAGE_MODEL, scenario.system_prompt)
        conversation.append(user_turn(exchange.user))
        if conversation.call(b, assistant_turn(exchange.assistant), parent=root_id, name="classify_ticket"):
            counts[exchange.assistant] = counts.get(exchange.assistant, 0) + 1
        b.advance(rng.uniform(0.05, 0.4))
    b.span(
        scenario.app_name,
        span_id=root_id,
        parent=None,
        started=root_started,
        input_state={"queue": "inbox", "batch": "nightly"},
        output_state={"classified": counts},
    )
    return TraceOutcome(scenario.app_name, {"queue": "inbox"}, counts)


@functools.cache
def _contract_prompt() -> str:
    """The 2.1M-character user message, built once so every oversized trace shares one string."""
    return f"{huge_document()}\n\n{CONTRACT_QUESTION}"


def _huge_input_trace(b: _TraceBuilder, scenario: Scenario) -> TraceOutcome:
    """A contract review whose input is a ~2.1M-character document: over the 2,000,000-character guard."""
    rng = b.rng
    root_id, root_started = b.new_id(), b.clock
    fmt, model = (OPENAI, OPENAI_MODELS[0]) if rng.random() < 0.5 else (ANTHROPIC, ANTHROPIC_MODELS[0])
    conversation = _Conversation(fmt, model, CONTRACT_REVIEW_PROMPT)
    conversation.append(user_turn(_contract_prompt()))
    answer: str | None = CONTRACT_ANSWER
    if fmt is OPENAI:
        # gpt-4.1 has a 1M-token window and answers.
        conversation.call(b, assistant_turn(CONTRACT_ANSWER), parent=root_id, name="review_contract")
    else:
        # Anthropic rejects a prompt this long.
        answer = None
        too_long = {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": f"prompt is too long: {conversation.tokens} tokens > 200000 maximum",
            },
        }
        conversation.call(b, None, parent=root_id, name="review_contract", error=(400, too_long))
    b.span(
        "contract-review",
        span_id=root_id,
        parent=None,
        started=root_started,
        input_state={"document": "msa_acme_initech_2024.pdf", "pages": 912},
        output_state={"answer": answer},
    )
    return TraceOutcome("contract-review", {"document": "msa_acme_initech_2024.pdf"}, answer)


TraceKind = Callable[[_TraceBuilder, Scenario], TraceOutcome]
_PlanEntry = tuple[str, TraceKind, Scenario]

# Regular trace kinds and how many of every 20 traces they make up (shuffled per hour).
_REGULAR_KINDS: tuple[tuple[str, TraceKind, Scenario, int], ...] = (
    ("support_agent", _agent_trace, SUPPORT, 4),
    ("code_agent", _agent_trace, CODE, 3),
    ("sql_agent", _agent_trace, SQL, 2),
    ("rag_qa", _rag_trace, RAG, 4),
    ("data_extraction", _extraction_trace, EXTRACTION, 3),
    ("writing_chat", _chat_trace, WRITING, 4),
)
_OVERSIZED_MANY: _PlanEntry = ("oversized_many_events", _many_events_trace, TRIAGE)
_OVERSIZED_LARGE: _PlanEntry = ("oversized_large", _huge_input_trace, EXTRACTION)
_AGENT_KINDS = frozenset({"support_agent", "code_agent", "sql_agent"})
TRACE_KINDS: tuple[str, ...] = (*(k[0] for k in _REGULAR_KINDS), _OVERSIZED_MANY[0], _OVERSIZED_LARGE[0])


def oversized_count(traces_per_hour: int, fraction: float) -> int:
    """Traces of each oversized kind in an hour: ``fraction`` of them, and at least one from 20 traces."""
    count = round(traces_per_hour * fraction)
    if fraction > 0 and traces_per_hour >= OVERSIZED_MINIMUM_TRACES:
        count = max(count, 1)
    return min(count, traces_per_hour // 2)


def _plan_kinds(rng: random.Random, traces_per_hour: int, oversized_fraction: float) -> list[_PlanEntry]:
    deck = [(name, kind, scenario) for name, kind, scenario, weight in _REGULAR_KINDS for _ in range(weight)]
    plan = [deck[i % len(deck)] for i in range(traces_per_hour)]
    rng.shuffle(plan)
    oversized = oversized_count(traces_per_hour, oversized_fraction)
    slots = rng.sample(range(traces_per_hour), 2 * oversized)
    for slot in slots[:oversized]:
        plan[slot] = _OVERSIZED_MANY
    for slot in slots[oversized:]:
        plan[slot] = _OVERSIZED_LARGE
    return plan


@functools.lru_cache(maxsize=1024)
def _team_users(seed: int, team_id: int) -> tuple[str, ...]:
    """A team's users (distinct ids), fixed per (seed, team) so they recur across hours."""
    rng = random.Random(stable_int("users", seed, team_id))
    return tuple(random_uuid4(rng) for _ in range(USERS_PER_TEAM))


def generate_hour(
    team_id: int,
    hour_start: datetime,
    traces_per_hour: int,
    seed: int,
    *,
    oversized_fraction: float = DEFAULT_OVERSIZED_FRACTION,
    include_non_ai: bool = True,
) -> list[Event]:
    """All events of one team-hour chunk, sorted by timestamp, each with a deterministic uuid.

    Events are dicts ``{uuid, event, timestamp, properties, team_id, distinct_id}`` (timestamp tz-aware UTC,
    properties a dict). Each trace's first event lies within the hour; its last may lie in the next hour.
    The result depends only on the arguments: same arguments, same events, in any process. Callers must
    not mutate the returned properties: generations of a trace share message dicts.
    """
    return _generate_hour(
        team_id,
        hour_start,
        traces_per_hour,
        seed,
        oversized_fraction=oversized_fraction,
        include_non_ai=include_non_ai,
    )[0]


def hour_trace_kinds(
    team_id: int,
    hour_start: datetime,
    traces_per_hour: int,
    seed: int,
    *,
    oversized_fraction: float = DEFAULT_OVERSIZED_FRACTION,
) -> dict[str, str]:
    """What the seeder knows of the chunk ``generate_hour`` returns for the same arguments: each trace id's
    kind (one of ``TRACE_KINDS``, e.g. ``support_agent``), the ground truth for search and clustering
    figures."""
    return _generate_hour(
        team_id,
        hour_start,
        traces_per_hour,
        seed,
        oversized_fraction=oversized_fraction,
        include_non_ai=False,
    )[1]


def _generate_hour(
    team_id: int,
    hour_start: datetime,
    traces_per_hour: int,
    seed: int,
    *,
    oversized_fraction: float,
    include_non_ai: bool,
) -> tuple[list[Event], dict[str, str]]:
    hour = require_hour(hour_start)
    if traces_per_hour < 0:
        raise ValueError(f"traces_per_hour must be >= 0, got {traces_per_hour}")
    if not 0 <= oversized_fraction <= 0.5:
        raise ValueError(f"oversized_fraction must be within [0, 0.5], got {oversized_fraction}")
    rng = chunk_rng(seed, team_id, hour, "traces")
    users = _team_users(seed, team_id)
    plan = _plan_kinds(rng, traces_per_hour, oversized_fraction)
    with_trace_event = set(rng.sample(range(traces_per_hour), round(traces_per_hour * TRACE_EVENT_FRACTION)))
    agents = [i for i, (name, _, _) in enumerate(plan) if name in _AGENT_KINDS]
    # One trace per hour (from 20 traces) starts in the last seconds and runs into the next hour.
    crossing = rng.choice(agents) if traces_per_hour >= OVERSIZED_MINIMUM_TRACES and agents else None
    sessions: dict[str, str] = {}

    staged: list[tuple[datetime, str, dict[str, Any], str]] = []
    trace_ids: list[str] = []
    kinds: dict[str, str] = {}
    for index, (kind_name, kind, scenario) in enumerate(plan):
        trace_rng = random.Random(rng.getrandbits(64))
        user = trace_rng.choice(users)
        # Most SDK users set a session id; the same user keeps the same session within the hour.
        session = sessions.setdefault(user, random_uuid4(trace_rng)) if trace_rng.random() < 0.8 else None
        builder = _TraceBuilder(trace_rng, random_uuid4(trace_rng), session)
        trace_ids.append(builder.trace_id)
        kinds[builder.trace_id] = kind_name
        outcome = kind(builder, scenario)
        _finish_trace(builder, outcome, with_trace_event=index in with_trace_event)

        first = min(offset for offset, _, _ in builder.pending)
        span = max(offset for offset, _, _ in builder.pending) - first
        if index == crossing and span > 0:
            # First event within the last seconds of the hour, last event in the next hour.
            anchor = SECONDS_PER_HOUR - trace_rng.uniform(min(0.5, span / 4), min(20.0, span / 2))
        else:
            # Kept a millisecond inside the hour so microsecond rounding cannot push it out.
            anchor = trace_rng.uniform(0.0, SECONDS_PER_HOUR - 0.001)
        staged.extend(
            (hour + timedelta(seconds=anchor + (offset - first)), event, properties, user)
            for offset, event, properties in builder.pending
        )

    if include_non_ai:
        noise_rng = chunk_rng(seed, team_id, hour, "non-ai")
        staged.extend(non_ai_events(noise_rng, hour, traces_per_hour, users, trace_ids))

    staged.sort(key=lambda row: row[0])
    uuids = event_uuids(seed, team_id, hour, len(staged))
    events = [
        {
            "uuid": uuid,
            "event": event,
            "timestamp": timestamp,
            "properties": properties,
            "team_id": team_id,
            "distinct_id": distinct_id,
        }
        for uuid, (timestamp, event, properties, distinct_id) in zip(uuids, staged, strict=True)
    ]
    return events, kinds


def _finish_trace(b: _TraceBuilder, outcome: TraceOutcome, *, with_trace_event: bool) -> None:
    """Feedback and the `$ai_trace` event, which real apps send after the trace's work is done."""
    rng = b.rng
    end = b.clock
    if rng.random() < FEEDBACK_RATE:
        texts = FEEDBACK_STRONG if rng.random() < STRONG_FEEDBACK_SHARE else FEEDBACK_CALM
        b.emit("$ai_feedback", {"$ai_feedback_text": rng.choice(texts)}, at=end + rng.uniform(5.0, 120.0))
    if with_trace_event:
        b.emit(
            "$ai_trace",
            {
                "$ai_span_name": outcome.name,
                "$ai_input_state": outcome.input_state,
                "$ai_output_state": outcome.output_state,
                "$ai_latency": round(end, 3),
            },
            at=end + rng.uniform(0.001, 0.05),
        )
