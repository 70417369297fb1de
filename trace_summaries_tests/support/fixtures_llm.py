"""Shared material for the summarization tests: a sample trace, hand-numbered trace texts, fast settings.

The ``llm_server`` fixture is here so that a conftest can expose it to every test module with
``pytest_plugins = ["trace_summaries_tests.support.fixtures_llm"]``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from trace_summaries.summarize import LLMSettings
from trace_summaries.text_repr import LineSource, TraceText, format_trace
from trace_summaries_harness.openai_server import OpenAICompatibleServer, openai_server

TEST_API_KEY = "sk-test-key"

# (content, event uuid or None for trace-level lines, section)
Row = tuple[str, str | None, str]


@pytest.fixture
def llm_server() -> Iterator[OpenAICompatibleServer]:
    """A fresh OpenAI-compatible server on a free port that only accepts ``TEST_API_KEY``."""
    with openai_server(require_api_key=TEST_API_KEY) as server:
        yield server


def fast_settings(server: OpenAICompatibleServer | None = None, **overrides: Any) -> LLMSettings:
    """Settings pointing at ``server`` with backoff in hundredths of a second, so retry tests stay fast."""
    values: dict[str, Any] = {
        "api_key": TEST_API_KEY,
        "base_url": server.base_url if server is not None else None,
        "timeout_s": 5.0,
        "max_attempts": 4,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "retry_after_max_s": 5.0,
    }
    values.update(overrides)
    return LLMSettings(**values)


def numbered_text(rows: Sequence[Row], keep: set[int] | None = None) -> TraceText:
    """A ``TraceText`` numbered like the formatter's (zero padded to the line count).

    With ``keep``, only those line numbers stay, as after sampling a long trace: the text has gaps.
    """
    width = len(str(len(rows)))
    numbered = [(number, row) for number, row in enumerate(rows, start=1) if keep is None or number in keep]
    return TraceText(
        text="\n".join(f"L{number:0{width}d}: {content}" for number, (content, _, _) in numbered),
        line_map={
            number: LineSource(event_uuid=uuid, section=section) for number, (_, uuid, section) in numbered
        },
        total_lines=len(rows),
        sampled=keep is not None,
    )


_T0 = datetime(2025, 1, 15, 11, 0, tzinfo=UTC)

ANSWER_TEXT = "Sorry, I cannot reach the order service right now. Please try again later."

TRACE_UUID = "00000000-0000-0000-0000-000000000000"
PLAN_UUID = "00000000-0000-0000-0000-000000000001"
LOOKUP_UUID = "00000000-0000-0000-0000-000000000002"
ANSWER_UUID = "00000000-0000-0000-0000-000000000003"
FEEDBACK_UUID = "00000000-0000-0000-0000-000000000004"
METRIC_UUID = "00000000-0000-0000-0000-000000000005"


def checkout_events(*, named: bool = True) -> list[dict[str, Any]]:
    """A small support-agent trace: plan with a tool call, a failing lookup span, an answer, feedback."""
    trace_id = "trace-checkout-1"

    def event(uuid: str, name: str, seconds: int, **properties: Any) -> dict[str, Any]:
        return {
            "uuid": uuid,
            "event": name,
            "timestamp": _T0 + timedelta(seconds=seconds),
            "properties": {"$ai_trace_id": trace_id, **properties},
        }

    trace_properties: dict[str, Any] = {"$ai_input_state": {"order": "1182"}}
    if named:
        trace_properties["$ai_trace_name"] = "Order status assistant"
    return [
        event(TRACE_UUID, "$ai_trace", 0, **trace_properties),
        event(
            PLAN_UUID,
            "$ai_generation",
            1,
            **{
                "$ai_span_name": "plan",
                "$ai_model": "gpt-4.1-mini",
                "$ai_provider": "openai",
                "$ai_input": [
                    {"role": "system", "content": "You help customers with their orders."},
                    {"role": "user", "content": "Where is my order 1182? It is three days late!"},
                ],
                "$ai_output_choices": [
                    {
                        "message": {
                            "role": "assistant",
                            "content": "",
                            "tool_calls": [
                                {
                                    "type": "function",
                                    "function": {"name": "lookup_order", "arguments": '{"order_id": "1182"}'},
                                }
                            ],
                        }
                    }
                ],
                "$ai_input_tokens": 120,
                "$ai_output_tokens": 18,
                "$ai_total_cost_usd": 0.0002,
                "$ai_latency": 0.8,
            },
        ),
        event(
            LOOKUP_UUID,
            "$ai_span",
            2,
            **{
                "$ai_span_name": "lookup_order",
                "$ai_parent_id": PLAN_UUID,
                "$ai_input_state": {"order_id": "1182"},
                "$ai_is_error": True,
                "$ai_error": "OrderServiceTimeout: upstream did not answer in 5s",
                "$ai_latency": 5.2,
            },
        ),
        event(
            ANSWER_UUID,
            "$ai_generation",
            8,
            **{
                "$ai_span_name": "answer",
                "$ai_model": "gpt-4.1-mini",
                "$ai_input": [{"role": "user", "content": "Where is my order 1182? It is three days late!"}],
                "$ai_output_choices": [
                    {
                        "message": {
                            "role": "assistant",
                            "content": ANSWER_TEXT,
                        }
                    }
                ],
                "$ai_input_tokens": 300,
                "$ai_output_tokens": 40,
                "$ai_total_cost_usd": 0.0005,
                "$ai_latency": 1.1,
            },
        ),
        event(FEEDBACK_UUID, "$ai_feedback", 9, **{"$ai_feedback_text": "Useless, I am really annoyed"}),
        event(METRIC_UUID, "$ai_metric", 10, **{"$ai_metric_name": "resolved", "$ai_metric_value": 0}),
    ]


def checkout_rows() -> list[Row]:
    """The checkout trace rendered by hand in the formatter's layout, with each line's source."""
    sep = "-" * 80
    indent = "       "
    return [
        ("ORDER STATUS ASSISTANT", None, "header"),
        ("=" * 80, None, "header"),
        ("", None, "header"),
        (sep, None, "header"),
        ("", None, "header"),
        ("TRACE HIERARCHY:", None, "header"),
        ("", None, "header"),
        ("├─ [+] [GEN] plan (0.80s, $0.0002, gpt-4.1-mini)", PLAN_UUID, "tree"),
        (f"│      {sep}", PLAN_UUID, "input"),
        ("│      INPUT:", PLAN_UUID, "input"),
        ("│      [1] SYSTEM", PLAN_UUID, "input"),
        ("│      You help customers with their orders.", PLAN_UUID, "input"),
        ("│      [2] USER", PLAN_UUID, "input"),
        ("│      Where is my order 1182? It is three days late!", PLAN_UUID, "input"),
        ("│      OUTPUT:", PLAN_UUID, "output"),
        ("│      [1] ASSISTANT", PLAN_UUID, "output"),
        ("│      Tool calls: 1", PLAN_UUID, "output"),
        ('│        - lookup_order(order_id="1182")', PLAN_UUID, "output"),
        ("├─ [+] [SPAN] lookup_order (5.20s) ERROR", LOOKUP_UUID, "tree"),
        ("│      LOOKUP_ORDER", LOOKUP_UUID, "tree"),
        ("│      ERROR:", LOOKUP_UUID, "error"),
        ("│      OrderServiceTimeout: upstream did not answer in 5s", LOOKUP_UUID, "error"),
        ("├─ [+] [GEN] answer (1.10s, $0.0005, gpt-4.1-mini)", ANSWER_UUID, "tree"),
        ("│      INPUT:", ANSWER_UUID, "input"),
        ("│      [1] USER", ANSWER_UUID, "input"),
        ("│      Where is my order 1182? It is three days late!", ANSWER_UUID, "input"),
        ("│      OUTPUT:", ANSWER_UUID, "output"),
        ("│      [1] ASSISTANT", ANSWER_UUID, "output"),
        (
            f"│      {indent}{ANSWER_TEXT}",
            ANSWER_UUID,
            "output",
        ),
        ("├─ [EVENT] $ai_feedback: Useless, I am really annoyed", FEEDBACK_UUID, "tree"),
        ("└─ [EVENT] $ai_metric: resolved = 0", METRIC_UUID, "tree"),
    ]


def checkout_text() -> TraceText:
    return numbered_text(checkout_rows())


def rendered_checkout_text(**options: Any) -> TraceText:
    """The checkout trace as the real formatter renders it (``nest``, ``dedupe``, ``max_length``...)."""
    return format_trace(checkout_events(), **options)
