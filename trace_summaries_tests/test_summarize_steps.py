"""Reading the steps of a trace out of events from different SDKs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from trace_summaries.sample import TraceEvent
from trace_summaries.summarize.steps import ToolCall, trace_name, trace_steps


def generation(**properties: Any) -> dict[str, Any]:
    return {
        "uuid": "g",
        "event": "$ai_generation",
        "timestamp": "2025-01-15T11:00:00Z",
        "properties": properties,
    }


def test_tool_calls_are_read_from_openai_anthropic_and_vercel_shapes() -> None:
    openai_style = generation(
        **{
            "$ai_output_choices": [
                {
                    "message": {
                        "role": "assistant",
                        "tool_calls": [{"function": {"name": "a", "arguments": "{}"}}],
                    }
                }
            ]
        }
    )
    anthropic_style = generation(
        **{
            "$ai_output_choices": [
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "ok"},
                        {"type": "tool_use", "name": "b", "input": {"q": 1}},
                    ],
                }
            ]
        }
    )
    vercel_style = generation(
        **{
            "$ai_output_choices": {
                "choices": [{"content": [{"type": "tool-call", "toolName": "c", "args": {}}]}]
            }
        }
    )
    calls = [step.tool_calls for step in trace_steps([openai_style, anthropic_style, vercel_style])]
    assert calls == [(ToolCall("a", "{}"),), (ToolCall("b", '{"q":1}'),), (ToolCall("c", "{}"),)]


def test_messages_and_properties_may_arrive_as_json_strings() -> None:
    event = generation()
    event["properties"] = json.dumps(
        {
            "$ai_model": "gpt-4.1",
            "$ai_input": json.dumps(
                [
                    {"role": "system", "content": "s"},
                    {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                ]
            ),
            "$ai_is_error": "true",
        }
    )
    (step,) = trace_steps([event])
    assert (step.name, step.first_user_message, step.error) == (
        "gpt-4.1",
        "hi",
        "error (no details recorded)",
    )


def test_a_plain_string_input_is_the_user_request_but_a_message_list_without_user_is_not() -> None:
    (plain,) = trace_steps([generation(**{"$ai_input": "Translate this"})])
    (system_only,) = trace_steps([generation(**{"$ai_input": [{"role": "system", "content": "s"}]})])
    assert plain.first_user_message == "Translate this"
    assert system_only.first_user_message is None


def test_events_can_be_sampling_models_and_are_ordered_by_time() -> None:
    later = TraceEvent(
        uuid="2", event="$ai_span", timestamp=datetime(2025, 1, 1, 12, tzinfo=UTC), properties={}
    )
    earlier = TraceEvent(
        uuid="1",
        event="$ai_metric",
        timestamp=datetime(2025, 1, 1, 11, tzinfo=UTC),
        properties={"$ai_metric_name": "score", "$ai_metric_value": 0.5},
    )
    steps = trace_steps([later, earlier])
    assert [(step.uuid, step.kind, step.name) for step in steps] == [
        ("1", "metric", "score"),
        ("2", "span", "$ai_span"),
    ]
    assert steps[0].metric_value == "0.5"


def test_the_trace_name_comes_from_the_trace_event_first() -> None:
    trace = {
        "uuid": "t",
        "event": "$ai_trace",
        "timestamp": "2025-01-15T11:00:05Z",
        "properties": {"$ai_span_name": "Agent run"},
    }
    named_generation = generation(**{"$ai_trace_name": "Other name", "$ai_span_name": "chat"})
    assert trace_name([named_generation, trace]) == "Agent run"
    assert trace_name([named_generation]) == "Other name"
    assert trace_name([generation(**{"$ai_span_name": "chat"})]) is None
