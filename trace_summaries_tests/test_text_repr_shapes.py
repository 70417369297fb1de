"""Every event type and message shape instrumented apps send renders cleanly (no ``[Unparsed`` fallback)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from trace_summaries.text_repr import format_trace

T = "2026-11-20T09:00:{:02d}Z"


def event(uuid: str, name: str, second: int, **properties: Any) -> dict[str, Any]:
    return {"uuid": uuid, "event": name, "timestamp": T.format(second), "properties": properties}


def body(events: list[dict[str, Any]], **options: Any) -> list[str]:
    """The rendered lines without line numbers and tree indentation."""
    text = format_trace(events, **options).text
    assert "[Unparsed" not in text
    return [unindent(line.split(": ", 1)[1]) for line in text.split("\n")]


def unindent(line: str) -> str:
    """A line of a flat tree without its tree marker or body indentation."""
    if line.startswith(("├─ ", "└─ ")):
        return line[3:]
    if line.startswith(("│      ", "       ")):
        return line[7:]
    return line.rstrip() if line.strip() == "" else line


OPENAI_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the weather for a city. Uses a paid API.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
ANTHROPIC_TOOLS = [
    {
        "name": "search",
        "description": "Search the web\nfor anything.",
        "input_schema": {
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        },
    }
]
GEMINI_TOOLS = [
    {
        "functionDeclarations": [
            {
                "name": "lookup",
                "description": "Look up a record",
                "parameters": {
                    "type": "OBJECT",
                    "properties": {"id": {"type": "STRING"}},
                    "required": ["id"],
                },
            },
            {"name": "noop"},
        ]
    }
]


def test_openai_chat_messages_with_tool_calls_and_tool_role() -> None:
    lines = body(
        [
            event(
                "g",
                "$ai_generation",
                1,
                **{
                    "$ai_model": "gpt-4o",
                    "$ai_tools": OPENAI_TOOLS,
                    "$ai_input": [
                        {"role": "system", "content": "You are helpful."},
                        {
                            "role": "user",
                            "content": [
                                {"type": "text", "text": "Weather in Paris?"},
                                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                            ],
                        },
                        {
                            "role": "assistant",
                            "content": None,
                            "tool_calls": [
                                {
                                    "id": "call_1",
                                    "type": "function",
                                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                                },
                            ],
                        },
                        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
                    ],
                    "$ai_output_choices": [
                        {"index": 0, "message": {"role": "assistant", "content": "21C in Paris."}}
                    ],
                },
            )
        ]
    )
    assert "AVAILABLE TOOLS: 1" in lines
    assert "  get_weather(city: string, unit?: string)" in lines
    assert "    Get the weather for a city." in lines
    for expected in [
        "[1] SYSTEM",
        "You are helpful.",
        "[2] USER",
        "Weather in Paris?",
        "[IMAGE]",
        "[3] ASSISTANT",
        "Tool calls: 1",
        '  - get_weather(city="Paris")',
        "[4] TOOL",
        '{"temp": 21}',
        "OUTPUT:",
        "[1] ASSISTANT",
        "21C in Paris.",
    ]:
        assert expected in lines, expected


def test_anthropic_content_blocks() -> None:
    lines = body(
        [
            event(
                "g",
                "$ai_generation",
                1,
                **{
                    "$ai_model": "claude-sonnet-4",
                    "$ai_tools": ANTHROPIC_TOOLS,
                    "$ai_input": [
                        {
                            "role": "user",
                            "content": [
                                {"type": "text", "text": "Find news"},
                                {
                                    "type": "image",
                                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"},
                                },
                            ],
                        },
                        {
                            "role": "assistant",
                            "content": [
                                {"type": "thinking", "thinking": "I should search."},
                                {
                                    "type": "tool_use",
                                    "id": "toolu_1",
                                    "name": "search",
                                    "input": {"query": "news"},
                                },
                            ],
                        },
                        {
                            "role": "user",
                            "content": [
                                {
                                    "type": "tool_result",
                                    "tool_use_id": "toolu_1",
                                    "content": [{"type": "text", "text": "Headline"}],
                                },
                                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "plain result"},
                            ],
                        },
                    ],
                    "$ai_output_choices": [
                        {
                            "role": "assistant",
                            "content": [
                                {"type": "text", "text": "Here is the news."},
                                {
                                    "type": "function",
                                    "id": "toolu_3",
                                    "function": {"name": "search", "arguments": {"query": "more"}},
                                },
                            ],
                        }
                    ],
                },
            )
        ]
    )
    for expected in [
        "search(query: string)",
        "Search the web.",
        "Find news",
        "[IMAGE]",
        "[THINKING]",
        "I should search.",
        'search(query="news")',
        "[TOOL_RESULT]",
        "Headline",
        "plain result",
        "Here is the news.",
        "Tool calls: 1",
        '- search(query="more")',
    ]:
        assert expected in [line.strip() for line in lines], expected


def test_gemini_parts_and_function_declarations() -> None:
    lines = body(
        [
            event(
                "g",
                "$ai_generation",
                1,
                **{
                    "$ai_model": "gemini-2.5-flash",
                    "$ai_tools": GEMINI_TOOLS,
                    "$ai_input": [
                        {"role": "user", "parts": [{"text": "Look up 42"}]},
                        {
                            "role": "model",
                            "parts": [{"functionCall": {"name": "lookup", "args": {"id": "42"}}}],
                        },
                        {
                            "role": "function",
                            "parts": [{"functionResponse": {"name": "lookup", "response": {"found": True}}}],
                        },
                        {
                            "role": "user",
                            "parts": [{"inlineData": {"mimeType": "image/jpeg", "data": "/9j/"}}],
                        },
                    ],
                    "$ai_output_choices": [
                        {"content": {"role": "model", "parts": [{"text": "Record 42 exists."}]}}
                    ],
                },
            )
        ]
    )
    stripped = [line.strip() for line in lines]
    for expected in [
        "AVAILABLE TOOLS: 2",
        "lookup(id: STRING)",
        "Look up a record.",
        "noop()",
        "[1] USER",
        "Look up 42",
        "[2] MODEL",
        'lookup(id="42")',
        "[3] FUNCTION",
        "[Tool result: lookup]",
        '{"found": true}',
        "[IMAGE]",
        "Record 42 exists.",
    ]:
        assert expected in stripped, expected


@pytest.mark.parametrize(
    ("tools", "title"),
    [
        (OPENAI_TOOLS, "AVAILABLE TOOLS: 1"),
        (ANTHROPIC_TOOLS, "AVAILABLE TOOLS: 1"),
        (GEMINI_TOOLS, "AVAILABLE TOOLS: 2"),
        ({"get_weather": OPENAI_TOOLS[0]["function"]}, "AVAILABLE TOOLS: 1"),
        (OPENAI_TOOLS * 6, "[+] AVAILABLE TOOLS: 6"),
    ],
)
def test_tool_lists_in_every_shape(tools: Any, title: str) -> None:
    lines = body([event("g", "$ai_generation", 1, **{"$ai_tools": tools})])
    assert title in lines


def test_more_than_five_tools_collapse_unless_the_threshold_is_raised() -> None:
    tools = OPENAI_TOOLS * 6
    collapsed = body([event("g", "$ai_generation", 1, **{"$ai_tools": tools})])
    assert not any("get_weather(" in line for line in collapsed)
    expanded = body([event("g", "$ai_generation", 1, **{"$ai_tools": tools})], tools_collapse_threshold=None)
    assert sum("get_weather(" in line for line in expanded) == 6


@pytest.mark.parametrize(
    "choices",
    [
        [{"message": {"role": "assistant", "content": "done"}}],
        {"choices": [{"message": {"role": "assistant", "content": "done"}}]},
        [{"role": "assistant", "content": [{"type": "text", "text": "done"}]}],
        ["done"],
    ],
)
def test_output_choices_as_list_or_wrapped(choices: Any) -> None:
    lines = body([event("g", "$ai_generation", 1, **{"$ai_output_choices": choices})])
    assert lines[-4:] == ["OUTPUT:", "", "[1] ASSISTANT", ""] or lines[-5:-1] == [
        "OUTPUT:",
        "",
        "[1] ASSISTANT",
        "",
    ]
    assert lines[-1] == "done"


def test_a_string_output_wins_over_choices() -> None:
    lines = body([event("g", "$ai_generation", 1, **{"$ai_output": "text out", "$ai_output_choices": ["x"]})])
    assert lines[-3:] == ["OUTPUT:", "", "text out"]


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"query": "x"}, ["{", '  "query": "x"', "}"]),
        ("{'a': [1, 2]}", ["{", '  "a": [', "    1,", "    2", "  ]", "}"]),
        ('{"ok": true}', ["{", '  "ok": true', "}"]),
        ("plain text", ["plain text"]),
        (["a", "b"], ["[", '  "a",', '  "b"', "]"]),
        ([{"role": "user", "content": "hi"}], ["", "[1] USER", "", "hi"]),
        ({"messages": [{"role": "user", "content": "hi"}]}, ["", "[1] USER", "", "hi"]),
        (
            {"type": "tool", "name": "search", "status": "success", "content": "found"},
            ["[TOOL RESULT] search (success)", "", "found"],
        ),
        (
            {
                "__type": "tool_call_with_context",
                "state": {"messages": [{"role": "user", "content": "hi"}], "remaining_steps": 3},
                "tool_call": {"name": "search", "args": {"q": "x"}},
            },
            ["", "[1] USER", "", "hi", "", "Remaining steps: 3", "", "Tool Call:", '  search(q="x")'],
        ),
    ],
)
def test_span_states_as_dicts_strings_and_lists(state: Any, expected: list[str]) -> None:
    lines = body([event("s", "$ai_span", 1, **{"$ai_span_name": "step", "$ai_input_state": state})])
    # Span body: title, rule, separator, blank, label, blank, then the state.
    assert lines[7:13] == ["[+] [SPAN] step", "STEP", "=" * 80, "-" * 80, "", "INPUT STATE:"]
    assert lines[14:] == expected


def test_trace_state_of_a_trace_without_events() -> None:
    trace = {
        "uuid": "t",
        "event": "$ai_trace",
        "timestamp": T.format(0),
        "properties": {"$ai_trace_name": "run", "$ai_input_state": {"q": 1}, "$ai_output_state": "answer"},
    }
    result = format_trace([trace])
    lines = [line.split(": ", 1)[1] for line in result.text.split("\n")]
    assert lines == [
        "RUN",
        "=" * 80,
        "",
        "-" * 80,
        "",
        "TRACE INPUT:",
        "",
        "{",
        '  "q": 1',
        "}",
        "",
        "-" * 80,
        "",
        "TRACE OUTPUT:",
        "",
        "answer",
    ]
    assert {source.section for n, source in result.line_map.items() if n > 2} == {"trace_state"}
    assert {source.event_uuid for n, source in result.line_map.items() if n > 2} == {"t"}


def test_trace_state_with_events_is_only_shown_on_request() -> None:
    trace = {
        "uuid": "t",
        "event": "$ai_trace",
        "timestamp": T.format(0),
        "properties": {"$ai_input_state": [{"role": "user", "content": "question"}]},
    }
    gen = event("g", "$ai_generation", 1, **{"$ai_input": "x"})
    assert "question" not in format_trace([trace, gen]).text
    lines = body([trace, gen], include_trace_state=True)
    assert lines[:9] == ["TRACE", "=" * 80, "", "-" * 80, "", "INPUT:", "", "[1] USER", ""]
    assert "question" in lines and "TRACE HIERARCHY:" in lines


def test_embedding_input_as_string_or_list() -> None:
    lines = body(
        [event("e", "$ai_embedding", 1, **{"$ai_model": "text-embedding-3-small", "$ai_input": "embed"})]
    )
    assert lines[7:] == [
        "[+] [EMBED] text-embedding-3-small (text-embedding-3-small)",
        "-" * 80,
        "",
        "INPUT:",
        "",
        "embed",
        "",
        "-" * 80,
        "",
        "OUTPUT:",
        "",
        "Embedding vector generated",
        "",
    ]
    lines = body([event("e", "$ai_embedding", 1, **{"$ai_input": ["one", "two"]})])
    assert "[1] TEXT" in lines and "two" in lines


def test_metric_and_feedback_are_event_lines_with_optional_details() -> None:
    events = [
        event("m", "$ai_metric", 1, **{"$ai_metric_name": "quality", "$ai_metric_value": 0.8}),
        event("f", "$ai_feedback", 2, **{"$ai_feedback_text": "Wrong city!"}),
    ]
    assert body(events)[7:] == ["[EVENT] $ai_metric", "[EVENT] $ai_feedback"]
    result = format_trace(events, event_details=True)
    lines = [unindent(line.split(": ", 1)[1]) for line in result.text.split("\n")]
    assert lines[7:] == [
        "[EVENT] $ai_metric",
        "METRIC: quality = 0.8",
        "[EVENT] $ai_feedback",
        "FEEDBACK:",
        "Wrong city!",
    ]
    assert result.line_map[9].section == "event" and result.line_map[9].event_uuid == "m"


def test_generation_error_is_shown_structured() -> None:
    lines = body(
        [
            event(
                "g",
                "$ai_generation",
                1,
                **{
                    "$ai_is_error": True,
                    "$ai_error": json.dumps({"message": "rate limited", "code": 429}),
                },
            )
        ]
    )
    assert lines[7:] == [
        "[+] [GEN] generation (ERROR)",
        "",
        "-" * 80,
        "",
        "ERROR:",
        "",
        "message: rate limited",
        "code: 429",
        "",
    ]
    lines = body([event("g", "$ai_generation", 1, **{"$ai_is_error": True})])
    assert "An error occurred (no details available)" in lines


def test_properties_as_a_raw_json_string_render_like_a_dict() -> None:
    properties = {"$ai_input": [{"role": "user", "content": "hi"}], "$ai_model": "m"}
    as_dict = format_trace([event("g", "$ai_generation", 1, **properties)])
    raw = {
        "uuid": "g",
        "event": "$ai_generation",
        "timestamp": T.format(1),
        "properties": json.dumps(properties),
    }
    assert format_trace([raw]) == as_dict


def test_malformed_properties_are_labelled_not_raised() -> None:
    raw = {
        "uuid": "g",
        "event": "$ai_generation",
        "timestamp": T.format(1),
        "properties": '{"$ai_input": [1,',
    }
    text = format_trace([raw]).text
    assert "[+] [GEN] generation" in text
    assert "[Unparsed properties: not a JSON object]" in text and '{"$ai_input": [1,' in text


def test_events_are_ordered_by_timestamp_then_uuid_and_the_trace_event_is_not_a_line() -> None:
    from datetime import UTC, datetime

    events = [
        {"uuid": "b", "event": "$ai_metric", "timestamp": "2026-11-20T09:00:05Z", "properties": {}},
        {"uuid": "a", "event": "$ai_feedback", "timestamp": "2026-11-20T09:00:05+00:00", "properties": {}},
        {
            "uuid": "c",
            "event": "$ai_span",
            "timestamp": datetime(2026, 11, 20, 9, 0, 1, tzinfo=UTC),
            "properties": {},
        },
        {"uuid": "t", "event": "$ai_trace", "timestamp": "2026-11-20T09:00:00Z", "properties": {}},
    ]
    tree = [line for line in body(events) if line.startswith("[")]
    assert tree == ["[+] [SPAN] span", "[EVENT] $ai_feedback", "[EVENT] $ai_metric"]
