"""Provider message formats: the same conversation as OpenAI Chat Completions or Anthropic Messages shapes.

The pipeline has to render whatever the SDKs captured, so seeded traces carry both real shapes: OpenAI
``tool_calls`` on assistant messages and ``role: tool`` results, ``{"type": "function", "function": ...}``
tool definitions; Anthropic content blocks (``text``, ``image``, ``tool_use``, ``tool_result``) and
``input_schema`` tool definitions. As PostHog's SDKs do, the system prompt is the first input message for
both providers.

A conversation is kept provider-neutral (``Turn``) and formatted once per turn; the formatted message dicts
are shared between the generations of a trace (each generation's input repeats the history), which keeps
seeding millions of events cheap.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from trace_summaries.demo.identity import random_hex
from trace_summaries.demo.scenarios import SCREENSHOT_PNG_BASE64, Tool

ProviderName = Literal["openai", "anthropic"]


@dataclass(frozen=True, slots=True)
class Model:
    """A model with its list price (USD per million tokens), used to compute realistic costs."""

    provider: ProviderName
    name: str
    input_price: float
    output_price: float
    # Typical seconds per output token and fixed overhead, for plausible latencies.
    seconds_per_token: float = 0.012
    overhead_seconds: float = 0.35


OPENAI_MODELS: tuple[Model, ...] = (
    Model("openai", "gpt-4.1", 2.0, 8.0, 0.018, 0.5),
    Model("openai", "gpt-4.1-mini", 0.4, 1.6, 0.009, 0.35),
    Model("openai", "gpt-4o-mini", 0.15, 0.6, 0.008, 0.3),
)
ANTHROPIC_MODELS: tuple[Model, ...] = (
    Model("anthropic", "claude-sonnet-4-20250514", 3.0, 15.0, 0.02, 0.6),
    Model("anthropic", "claude-3-5-haiku-20241022", 0.8, 4.0, 0.01, 0.4),
)
TRIAGE_MODEL = Model("openai", "gpt-4.1-nano", 0.1, 0.4, 0.005, 0.2)
EMBEDDING_PRICES = {"text-embedding-3-small": 0.02, "text-embedding-3-large": 0.13}


@dataclass(frozen=True, slots=True)
class ToolCall:
    call_id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Turn:
    """One provider-neutral conversation turn.

    ``user`` has text (and maybe an image); ``assistant`` has text and/or tool calls; ``tool`` carries the
    results of the previous assistant turn's calls, in call order.
    """

    role: Literal["user", "assistant", "tool"]
    text: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    results: tuple[tuple[ToolCall, Any], ...] = ()
    image: bool = False
    tokens: int = field(default=0, compare=False)


def estimate_tokens(text: str) -> int:
    """Roughly four characters per token, as tokenizers do on English prose."""
    return max(1, len(text) // 4)


def user_turn(text: str, *, image: bool = False) -> Turn:
    return Turn("user", text=text, image=image, tokens=estimate_tokens(text) + (85 if image else 0))


def assistant_turn(text: str | None, tool_calls: Sequence[ToolCall] = ()) -> Turn:
    tokens = estimate_tokens(text or "") + sum(
        12 + estimate_tokens(json.dumps(c.arguments)) for c in tool_calls
    )
    return Turn("assistant", text=text, tool_calls=tuple(tool_calls), tokens=tokens)


def tool_turn(results: Sequence[tuple[ToolCall, Any]]) -> Turn:
    tokens = sum(8 + estimate_tokens(_result_text(result)) for _, result in results)
    return Turn("tool", results=tuple(results), tokens=tokens)


def _result_text(result: Any) -> str:
    return (
        result if isinstance(result, str) else json.dumps(result, separators=(",", ":"), ensure_ascii=False)
    )


class ProviderFormat:
    """Formats neutral turns, tools and ids the way one provider's SDK shows them."""

    name: ProviderName
    base_url: str

    def new_call_id(self, rng: random.Random) -> str:
        raise NotImplementedError

    def tools(self, tools: Sequence[Tool]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def messages(self, turn: Turn) -> list[dict[str, Any]]:
        """The input message(s) of one turn (OpenAI spreads tool results over several messages)."""
        raise NotImplementedError

    def output_choices(self, turn: Turn, rng: random.Random) -> list[dict[str, Any]]:
        raise NotImplementedError

    def system(self, prompt: str) -> dict[str, Any]:
        return {"role": "system", "content": prompt}


class OpenAIFormat(ProviderFormat):
    name: ProviderName = "openai"
    base_url = "https://api.openai.com/v1"

    def new_call_id(self, rng: random.Random) -> str:
        return "call_" + random_hex(rng, 24)

    def tools(self, tools: Sequence[Tool]) -> list[dict[str, Any]]:
        return [
            {
                "type": "function",
                "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
            }
            for t in tools
        ]

    def messages(self, turn: Turn) -> list[dict[str, Any]]:
        if turn.role == "user":
            if not turn.image:
                return [{"role": "user", "content": turn.text}]
            return [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": turn.text},
                        {
                            "type": "image_url",
                            "image_url": {"url": f"data:image/png;base64,{SCREENSHOT_PNG_BASE64}"},
                        },
                    ],
                }
            ]
        if turn.role == "assistant":
            message: dict[str, Any] = {"role": "assistant", "content": turn.text}
            if turn.tool_calls:
                message["tool_calls"] = [
                    {
                        "id": call.call_id,
                        "type": "function",
                        "function": {
                            "name": call.name,
                            "arguments": json.dumps(
                                call.arguments, separators=(",", ":"), ensure_ascii=False
                            ),
                        },
                    }
                    for call in turn.tool_calls
                ]
            return [message]
        return [
            {"role": "tool", "tool_call_id": call.call_id, "content": _result_text(result)}
            for call, result in turn.results
        ]

    def output_choices(self, turn: Turn, rng: random.Random) -> list[dict[str, Any]]:
        (message,) = self.messages(turn)
        # Older SDK versions captured the raw API choices; newer ones capture bare messages. Both occur.
        if rng.random() < 0.2:
            reason = "tool_calls" if turn.tool_calls else "stop"
            return [{"index": 0, "message": message, "finish_reason": reason}]
        return [message]


class AnthropicFormat(ProviderFormat):
    name: ProviderName = "anthropic"
    base_url = "https://api.anthropic.com"

    def new_call_id(self, rng: random.Random) -> str:
        return "toolu_01" + random_hex(rng, 22)

    def tools(self, tools: Sequence[Tool]) -> list[dict[str, Any]]:
        return [{"name": t.name, "description": t.description, "input_schema": t.parameters} for t in tools]

    def messages(self, turn: Turn) -> list[dict[str, Any]]:
        if turn.role == "user":
            if not turn.image:
                return [{"role": "user", "content": turn.text}]
            return [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {
                                "type": "base64",
                                "media_type": "image/png",
                                "data": SCREENSHOT_PNG_BASE64,
                            },
                        },
                        {"type": "text", "text": turn.text},
                    ],
                }
            ]
        if turn.role == "assistant":
            blocks: list[dict[str, Any]] = []
            if turn.text:
                blocks.append({"type": "text", "text": turn.text})
            blocks.extend(
                {"type": "tool_use", "id": call.call_id, "name": call.name, "input": call.arguments}
                for call in turn.tool_calls
            )
            return [{"role": "assistant", "content": blocks}]
        return [
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.call_id, "content": _result_text(result)}
                    for call, result in turn.results
                ],
            }
        ]

    def output_choices(self, turn: Turn, rng: random.Random) -> list[dict[str, Any]]:
        return self.messages(turn)


OPENAI = OpenAIFormat()
ANTHROPIC = AnthropicFormat()


def cost_usd(model: Model, input_tokens: int, output_tokens: int) -> tuple[float, float]:
    """Input and output cost in USD, rounded like SDKs report them."""
    return (
        round(input_tokens * model.input_price / 1_000_000, 8),
        round(output_tokens * model.output_price / 1_000_000, 8),
    )
