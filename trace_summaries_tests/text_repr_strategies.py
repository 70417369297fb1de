"""Hypothesis strategies for the text rendering: arbitrary JSON, message shapes, events and options."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from trace_summaries.text_repr import RenderOptions

# Text that includes the awkward parts: line breaks of every kind, tree characters, lone surrogates are
# left out by default by hypothesis, so they are mixed in explicitly.
awkward_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["", "\n", "\r\n", "a\rb", "x\u2028y", "\x0b", "├─ ", "L01: fake", "\ud800", "null", "{}"]
    ),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    awkward_text,
)

json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(awkward_text, st.sampled_from(["role", "content", "type", "text"])),
            children,
            max_size=4,
        ),
    ),
    max_leaves=12,
)

roles = st.sampled_from(["system", "user", "assistant", "tool", "model", "function", None, 7])

content_blocks = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": awkward_text}),
    st.fixed_dictionaries(
        {"type": st.just("tool_use"), "id": st.just("toolu_1"), "name": awkward_text, "input": json_values}
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("tool_result"),
            "tool_use_id": st.just("toolu_1"),
            "content": st.one_of(
                awkward_text,
                st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": awkward_text}), max_size=2),
            ),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("image"),
            "source": st.fixed_dictionaries(
                {
                    "type": st.just("base64"),
                    "media_type": st.just("image/png"),
                    "data": st.just("iVBORw0KGgo="),
                }
            ),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("image_url"),
            "image_url": st.fixed_dictionaries(
                {"url": st.sampled_from(["https://example.com/a.png", "data:image/png;base64,AAAA"])}
            ),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("function"),
            "function": st.fixed_dictionaries(
                {"name": awkward_text, "arguments": st.one_of(awkward_text, json_values)}
            ),
        }
    ),
    st.fixed_dictionaries(
        {"functionCall": st.fixed_dictionaries({"name": awkward_text, "args": json_values})}
    ),
    st.fixed_dictionaries(
        {"functionResponse": st.fixed_dictionaries({"name": awkward_text, "response": json_values})}
    ),
    json_values,
)

tool_calls = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {
                "id": st.just("call_1"),
                "type": st.just("function"),
                "function": st.fixed_dictionaries(
                    {
                        "name": awkward_text,
                        "arguments": st.one_of(awkward_text, st.just('{"q": 1}'), json_values),
                    }
                ),
            }
        ),
        st.fixed_dictionaries({"name": awkward_text, "args": json_values}),
        json_values,
    ),
    max_size=3,
)

messages = st.one_of(
    st.fixed_dictionaries(
        {
            "role": roles,
            "content": st.one_of(awkward_text, st.lists(content_blocks, max_size=3), json_values),
        },
        optional={"tool_calls": tool_calls, "tool_call_id": awkward_text},
    ),
    st.fixed_dictionaries({"role": roles, "parts": st.lists(content_blocks, max_size=3)}),
    json_values,
)

message_lists = st.lists(messages, max_size=5)

tools = st.one_of(
    st.lists(
        st.one_of(
            st.fixed_dictionaries(
                {
                    "type": st.just("function"),
                    "function": st.fixed_dictionaries(
                        {"name": awkward_text, "description": awkward_text, "parameters": json_values}
                    ),
                }
            ),
            st.fixed_dictionaries(
                {"name": awkward_text, "description": json_values, "input_schema": json_values}
            ),
            st.fixed_dictionaries({"functionDeclarations": st.lists(json_values, max_size=3)}),
            json_values,
        ),
        max_size=7,
    ),
    json_values,
)

AI_KEYS = st.sampled_from(
    [
        "$ai_input",
        "$ai_output",
        "$ai_output_choices",
        "$ai_tools",
        "$ai_input_state",
        "$ai_output_state",
        "$ai_error",
        "$ai_is_error",
        "$ai_latency",
        "$ai_total_cost_usd",
        "$ai_model",
        "$ai_span_name",
        "$ai_trace_name",
        "$ai_span_id",
        "$ai_parent_id",
        "$ai_metric_name",
        "$ai_metric_value",
        "$ai_feedback_text",
    ]
)

structured_properties = st.fixed_dictionaries(
    {},
    optional={
        "$ai_input": st.one_of(message_lists, awkward_text, json_values),
        "$ai_output_choices": st.one_of(
            st.lists(st.one_of(st.fixed_dictionaries({"message": messages}), messages), max_size=3),
            st.fixed_dictionaries({"choices": message_lists}),
            json_values,
        ),
        "$ai_output": st.one_of(awkward_text, json_values),
        "$ai_tools": tools,
        "$ai_input_state": st.one_of(
            json_values, message_lists, st.just("{'a': [1, 2]}"), st.just('{"b": true}')
        ),
        "$ai_output_state": st.one_of(json_values, st.fixed_dictionaries({"messages": message_lists})),
        "$ai_error": json_values,
        "$ai_is_error": json_values,
        "$ai_latency": json_values,
        "$ai_total_cost_usd": json_values,
        "$ai_model": json_values,
        "$ai_span_name": json_values,
        "$ai_span_id": st.sampled_from(["s1", "s2", "s3"]),
        "$ai_parent_id": st.sampled_from(["s1", "s2", "s3", "trace", None]),
        "$ai_metric_name": json_values,
        "$ai_metric_value": json_values,
        "$ai_feedback_text": json_values,
    },
)

arbitrary_properties = st.one_of(
    structured_properties,
    st.dictionaries(st.one_of(AI_KEYS, awkward_text), json_values, max_size=6),
)

raw_properties = st.one_of(
    arbitrary_properties,
    arbitrary_properties.map(lambda props: json.dumps(props, default=str)),
    st.sampled_from(['{"$ai_input": [', "not json", "[1, 2]", "42", "", "null", '{"$ai_input": "\\ud800"}']),
    st.none(),
)

EVENT_TYPES = st.sampled_from(
    ["$ai_generation", "$ai_span", "$ai_embedding", "$ai_metric", "$ai_feedback", "$ai_trace", "custom", ""]
)

BASE_TIME = datetime(2026, 11, 20, 9, tzinfo=UTC)

timestamps = st.one_of(
    st.integers(min_value=0, max_value=3600).map(lambda s: BASE_TIME + timedelta(seconds=s)),
    st.integers(min_value=0, max_value=3600).map(lambda s: (BASE_TIME + timedelta(seconds=s)).isoformat()),
    st.sampled_from(["garbage", "", None, "2026-11-20 09:00:00.123456"]),
)


@st.composite
def event_lists(draw: st.DrawFn, max_events: int = 6) -> list[dict[str, Any]]:
    count = draw(st.integers(min_value=0, max_value=max_events))
    return [
        {
            "uuid": f"00000000-0000-0000-0000-{index:012d}",
            "event": draw(EVENT_TYPES),
            "timestamp": draw(timestamps),
            "properties": draw(raw_properties),
        }
        for index in range(count)
    ]


render_options = st.builds(
    RenderOptions,
    max_length=st.one_of(st.none(), st.just(2_000_000), st.integers(min_value=0, max_value=3000)),
    nest=st.booleans(),
    dedupe=st.booleans(),
    truncate_values=st.booleans(),
    truncate_buffer=st.integers(min_value=2, max_value=200),
    tools_collapse_threshold=st.one_of(st.none(), st.integers(min_value=0, max_value=6)),
    event_details=st.booleans(),
    include_trace_state=st.booleans(),
    escape_non_ascii=st.booleans(),
)
