"""Our improvements behind options: real nesting, dedupe of repeated content, and option handling."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import pytest

from trace_summaries.summarize.line_refs import check_line_refs, citable_lines
from trace_summaries.text_repr import LineSource, RenderOptions, TraceText, format_trace

T = "2026-11-20T09:{:02d}:{:02d}Z"
SEP = "-" * 80
REFERENCE = re.compile(r"\(same (?:([^()]*?) )?as L(\d+)(?:-L(\d+))?\)")


def at(second: int) -> str:
    return T.format(second // 60, second % 60)


def event(uuid: str, name: str, second: int, **properties: Any) -> dict[str, Any]:
    return {"uuid": uuid, "event": name, "timestamp": at(second), "properties": properties}


def content(result: TraceText) -> dict[int, str]:
    return {int(line[1 : line.index(":")]): line.split(": ", 1)[1] for line in result.text.split("\n")}


def tree_lines(result: TraceText) -> list[str]:
    lines = content(result)
    return [lines[n] for n, source in result.line_map.items() if source.section == "tree"]


def approximate_tokens(text: str) -> int:
    """Words, punctuation marks and whitespace runs: close enough to BPE tokens to compare two renderings."""
    return len(re.findall(r"\w+|[^\w\s]|\s+", text))


# --- nesting ---------------------------------------------------------------------------------------------


def nested_events() -> list[dict[str, Any]]:
    return [
        event("t", "$ai_trace", 0, **{"$ai_trace_id": "trace-1", "$ai_span_name": "run"}),
        event(
            "root",
            "$ai_span",
            1,
            **{"$ai_span_id": "s-root", "$ai_parent_id": "trace-1", "$ai_span_name": "agent"},
        ),
        event("g1", "$ai_generation", 2, **{"$ai_parent_id": "s-root", "$ai_span_name": "plan"}),
        event(
            "tool",
            "$ai_span",
            3,
            **{"$ai_span_id": "s-tool", "$ai_parent_id": "s-root", "$ai_span_name": "tool"},
        ),
        event(
            "g2",
            "$ai_generation",
            4,
            **{"$ai_parent_id": "s-tool", "$ai_span_name": "inner", "$ai_input": "Look it up."},
        ),
        event("orphan", "$ai_generation", 5, **{"$ai_parent_id": "missing", "$ai_span_name": "orphan"}),
        event("fb", "$ai_feedback", 6, **{"$ai_parent_id": "s-root"}),
    ]


def test_flat_is_the_default_and_lists_every_event_at_the_root() -> None:
    assert tree_lines(format_trace(nested_events())) == [
        "├─ [+] [SPAN] agent",
        "├─ [+] [GEN] plan",
        "├─ [+] [SPAN] tool",
        "├─ [+] [GEN] inner",
        "├─ [+] [GEN] orphan",
        "└─ [EVENT] $ai_feedback",
    ]


def test_nest_renders_events_under_their_parent() -> None:
    result = format_trace(nested_events(), nest=True)
    assert tree_lines(result) == [
        "├─ [+] [SPAN] agent",
        "│  ├─ [+] [GEN] plan",
        "│  ├─ [+] [SPAN] tool",
        "│  │  └─ [+] [GEN] inner",
        "│  └─ [EVENT] $ai_feedback",
        "└─ [+] [GEN] orphan",
    ]
    lines = content(result)
    tree_at, *body = result.lines_of_event("g2")
    assert lines[tree_at] == "│  │  └─ [+] [GEN] inner"
    assert [lines[n] for n in body] == ["  " + SEP, "  INPUT:", "  Look it up."], (
        "a body follows its own tree line, indented, without blank lines or tree guides"
    )


def test_nest_breaks_cycles_and_keeps_every_event_once() -> None:
    events = [
        event("a", "$ai_span", 1, **{"$ai_span_id": "A", "$ai_parent_id": "B"}),
        event("b", "$ai_span", 2, **{"$ai_span_id": "B", "$ai_parent_id": "A"}),
        event("c", "$ai_span", 3, **{"$ai_span_id": "C", "$ai_parent_id": "C"}),
    ]
    result = format_trace(events, nest=True)
    owners = Counter(source.event_uuid for source in result.line_map.values() if source.section == "tree")
    assert owners == {"a": 1, "b": 1, "c": 1}


def test_nesting_deeper_than_the_maximum_keeps_every_event() -> None:
    events = [
        event(
            f"s{depth:02d}",
            "$ai_span",
            depth,
            **{"$ai_span_id": f"id{depth}", "$ai_parent_id": f"id{depth - 1}"},
        )
        for depth in range(15)
    ]
    result = format_trace(events, nest=True)
    owners = {source.event_uuid for source in result.line_map.values() if source.section == "tree"}
    assert owners == {f"s{depth:02d}" for depth in range(15)} | {None}
    assert "[... max depth reached]" in result.text


# --- dedupe ----------------------------------------------------------------------------------------------

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": f"tool_{i}",
            "description": f"Tool number {i}. Details.",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
        },
    }
    for i in range(4)
]
SYSTEM = "You are a careful research agent. " * 20


def agent_trace(steps: int = 8) -> list[dict[str, Any]]:
    """An agent loop: every generation resends the system prompt, the tools and the conversation so far."""
    events = [
        event("t", "$ai_trace", 0, **{"$ai_trace_id": "tr", "$ai_span_name": "agent"}),
        event(
            "loop", "$ai_span", 1, **{"$ai_span_id": "loop", "$ai_parent_id": "tr", "$ai_span_name": "loop"}
        ),
    ]
    conversation: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Compare the populations of Paris and Berlin."},
    ]
    for step in range(steps):
        final = step == steps - 1
        call = {
            "id": f"call_{step}",
            "type": "function",
            "function": {"name": f"tool_{step % 4}", "arguments": json.dumps({"q": f"query {step}"})},
        }
        output = {
            "role": "assistant",
            "content": "Final answer." if final else None,
            "tool_calls": [] if final else [call],
        }
        events.append(
            event(
                f"gen{step:02d}",
                "$ai_generation",
                2 + 2 * step,
                **{
                    "$ai_parent_id": "loop",
                    "$ai_span_name": "llm",
                    "$ai_model": "gpt-4o",
                    "$ai_tools": TOOLS,
                    "$ai_input": list(conversation),
                    "$ai_output_choices": [{"message": output}],
                },
            )
        )
        conversation.append(output)
        if not final:
            events.append(
                event(
                    f"tool{step:02d}",
                    "$ai_span",
                    3 + 2 * step,
                    **{
                        "$ai_parent_id": "loop",
                        "$ai_span_name": f"tool_{step % 4}",
                        "$ai_input_state": {"q": f"query {step}"},
                        "$ai_output_state": {"rows": [step] * 40},
                    },
                )
            )
            conversation.append(
                {"role": "tool", "tool_call_id": f"call_{step}", "content": json.dumps({"rows": [step] * 40})}
            )
    return events


def test_dedupe_renders_tools_and_system_prompt_once_and_references_them() -> None:
    result = format_trace(agent_trace(), dedupe=True, tools_collapse_threshold=None)
    lines = content(result)
    assert result.text.count("You are a careful research agent.") == SYSTEM.count("You are")
    assert result.text.count("tool_0(q: string)") == 1
    tool_refs = [line for line in lines.values() if "AVAILABLE TOOLS: 4 (same tools as L" in line]
    assert len(tool_refs) == 7
    for line in tool_refs:
        cited = int(REFERENCE.search(line).group(2))  # type: ignore[union-attr]
        assert lines[cited].strip(" │") == "AVAILABLE TOOLS: 4"


def test_dedupe_references_cite_earlier_lines_of_the_same_content() -> None:
    result = format_trace(agent_trace(), dedupe=True, nest=True)
    lines = content(result)
    seen = 0
    for number, line in lines.items():
        for match in REFERENCE.finditer(line):
            seen += 1
            first, last = int(match.group(2)), int(match.group(3) or match.group(2))
            assert 1 <= first <= last < number
            if match.group(1) in ("message", "system prompt"):
                role = line.strip(" │").split(" ")[1]
                assert lines[first].strip(" │").endswith(f"] {role}") or "(same" in lines[first]
    assert seen > 10


def test_dedupe_keeps_every_message_index_and_tool_call_visible() -> None:
    events = agent_trace()
    result = format_trace(events, dedupe=True, nest=True)
    text = result.text
    last_input = events[-1]["properties"]["$ai_input"]
    for step in range(7):
        assert f'tool_{step % 4}(q="query {step}")' in text
    for generation in (e for e in events if e["event"] == "$ai_generation"):
        count = len(generation["properties"]["$ai_input"])
        gen_lines = [content(result)[n] for n in result.lines_of_event(generation["uuid"])]
        shown: set[int] = set()
        for line in gen_lines:
            match = re.search(r"\[(\d+)(?:\.\.(\d+))?\] ", line)
            if match and "Tool calls" not in line:
                first = int(match.group(1))
                shown.update(range(first, int(match.group(2) or first) + 1))
        # Input indices 1..count plus the output's [1].
        assert shown == set(range(1, count + 1)), generation["uuid"]
    assert len(last_input) == 16


def test_nest_and_dedupe_cut_tokens_on_agent_traces_by_at_least_a_quarter() -> None:
    events = agent_trace(steps=10)
    flat = format_trace(events)
    improved = format_trace(events, nest=True, dedupe=True)
    assert approximate_tokens(improved.text) <= 0.75 * approximate_tokens(flat.text)
    assert len(improved.text) <= 0.75 * len(flat.text)


def test_dedupe_replaces_a_repeated_big_state_with_a_reference() -> None:
    state = {"documents": [f"document {i} " * 5 for i in range(10)]}
    events = [
        event("a", "$ai_span", 1, **{"$ai_span_name": "retrieve", "$ai_output_state": state}),
        event("b", "$ai_span", 2, **{"$ai_span_name": "rerank", "$ai_input_state": state}),
    ]
    result = format_trace(events, dedupe=True)
    lines = content(result)
    refs = [(n, line) for n, line in lines.items() if "(same as L" in line]
    assert len(refs) == 1 and result.line_map[refs[0][0]].section == "state_input"
    match = REFERENCE.search(refs[0][1])
    assert match is not None
    first, last = int(match.group(2)), int(match.group(3))
    assert lines[first].strip(" │") == "{" and lines[last].strip(" │") == "}"
    assert "(same" not in format_trace(events).text


def test_dedupe_leaves_small_repeated_values_alone() -> None:
    events = [
        event("a", "$ai_span", 1, **{"$ai_output_state": "ok"}),
        event("b", "$ai_span", 2, **{"$ai_input_state": "ok"}),
    ]
    assert "(same" not in format_trace(events, dedupe=True).text


# --- compact nested layout -------------------------------------------------------------------------------

GUIDES = re.compile(r"^[ │]*")


def rich_trace() -> list[dict[str, Any]]:
    """Every kind of body: an agent loop, paragraphs, an embedding, errors, metric, feedback, trace state."""
    events = agent_trace(steps=3)
    events[0]["properties"].update(
        {
            "$ai_input_state": {"question": "Paris or Berlin?", "locale": "en"},
            "$ai_output_state": "Paris.\n\nBerlin is a close second.",
            "$ai_error": "budget exceeded",
        }
    )
    question = {"role": "user", "content": "Which city is bigger?"}
    answer = {"role": "assistant", "content": "Paris is bigger.\n\nBy about a million people.\n"}
    events += [
        event(
            "chat1",
            "$ai_generation",
            40,
            **{
                "$ai_input": [question, answer, {"role": "user", "content": "Thanks."}],
                "$ai_model": "gpt-4o",
            },
        ),
        event(
            "chat2",
            "$ai_generation",
            41,
            **{
                "$ai_input": [question, answer, {"role": "user", "content": "And Berlin?"}],
                "$ai_is_error": True,
                "$ai_error": {"type": "RateLimitError", "message": "slow down"},
            },
        ),
        event(
            "emb", "$ai_embedding", 42, **{"$ai_input": "Paris population", "$ai_model": "text-embedding-3"}
        ),
        event("failed", "$ai_span", 43, **{"$ai_span_name": "fetch", "$ai_error": "HTTP 503"}),
        event("empty", "$ai_generation", 44),
        event("metric", "$ai_metric", 45, **{"$ai_metric_name": "helpful", "$ai_metric_value": 0.5}),
        event("fb", "$ai_feedback", 46, **{"$ai_feedback_text": "Good answer"}),
    ]
    return events


def visible(result: TraceText) -> Counter[str]:
    """What a reader sees on the non-blank lines, without the tree guides and indentation of either layout."""
    return Counter(shown for shown in map(without_guides, content(result).values()) if shown.strip())


def without_guides(line: str) -> str:
    return line.lstrip(" │├└─")


@pytest.mark.parametrize(
    "options",
    [
        RenderOptions(nest=True),
        RenderOptions(nest=True, dedupe=True),
        RenderOptions(nest=True, dedupe=True, event_details=True, include_trace_state=True),
    ],
    ids=["nest", "nest+dedupe", "pipeline"],
)
def test_nested_text_has_no_blank_lines_and_no_guides_on_body_lines(options: RenderOptions) -> None:
    result = format_trace(rich_trace(), options=options)
    lines = content(result)
    assert list(lines) == list(range(1, result.total_lines + 1)), "numbered without gaps"
    blank = [n for n, line in lines.items() if not line.strip()]
    assert not blank, f"blank lines in the compact layout: {blank}"
    trace_level = {None, "t"}  # the header, and the trace's own state and error: not under any tree line
    for number, source in result.line_map.items():
        line = lines[number]
        guides = GUIDES.match(line).group()  # type: ignore[union-attr]
        if source.section == "tree":
            assert line[len(guides) :].startswith(("├─ ", "└─ ")), line
        else:
            assert "│" not in guides, f"L{number} ({source.event_uuid}): tree guides on a body line: {line!r}"
            assert source.event_uuid in trace_level or line.startswith("  "), f"L{number}: not indented"


def test_the_compact_layout_drops_only_blank_lines() -> None:
    """Without dedupe, nesting only moves bodies under their parents: line for line, the same text."""
    events = rich_trace()
    flat = format_trace(events, event_details=True, include_trace_state=True)
    nested = format_trace(events, nest=True, event_details=True, include_trace_state=True)
    assert visible(nested) == visible(flat)
    flat_lines = content(flat)
    non_blank = Counter(
        source for n, source in flat.line_map.items() if without_guides(flat_lines[n]).strip()
    )
    assert Counter(nested.line_map.values()) == non_blank, "every event and section keeps its lines"
    assert {source.event_uuid for source in nested.line_map.values()} == {e["uuid"] for e in events} | {None}


def test_compact_references_resolve_to_the_content_they_stand_for() -> None:
    result = format_trace(rich_trace(), nest=True, dedupe=True)
    lines = content(result)
    citable = citable_lines(result)
    cited_lines = 0
    for number, line in lines.items():
        for match in REFERENCE.finditer(line):
            first, last = int(match.group(2)), int(match.group(3) or match.group(2))
            assert check_line_refs(match.group(0)[match.group(0).index("L") : -1], citable).invalid == 0
            assert 1 <= first <= last < number and lines[first].strip() and lines[last].strip()
            cited_lines += last - first + 1
    assert cited_lines > 20
    # chat2 repeats chat1's first two messages; the answer's text ends with a line break, so the run cited
    # ended on a blank line while the text was built: it now ends on the answer's last line of text.
    [run] = [lines[n] for n in result.lines_of_event("chat2") if "[1..2] (same messages as L" in lines[n]]
    match = REFERENCE.search(run)
    assert match is not None
    first, last = int(match.group(2)), int(match.group(3))
    assert [lines[n].strip() for n in range(first, last + 1)] == [
        "[1] USER",
        "Which city is bigger?",
        SEP,
        "[2] ASSISTANT",
        "Paris is bigger.",
        "By about a million people.",
    ]
    assert result.line_map[first].event_uuid == result.line_map[last].event_uuid == "chat1"


def test_a_cited_value_of_blank_lines_keeps_a_line_to_cite() -> None:
    blank_value = "\n" * 6
    events = [
        event("a", "$ai_span", 1, **{"$ai_span_name": "first", "$ai_output_state": blank_value}),
        event("b", "$ai_span", 2, **{"$ai_span_name": "second", "$ai_input_state": blank_value}),
    ]
    result = format_trace(events, nest=True, dedupe=True)
    lines = content(result)
    [(number, reference)] = [(n, line) for n, line in lines.items() if "(same as L" in line]
    match = REFERENCE.search(reference)
    assert match is not None and match.group(3) is None, "the blank value shrinks to its one kept line"
    cited = int(match.group(2))
    assert result.line_map[cited] == LineSource("a", "state_output") and cited < number


# --- options ---------------------------------------------------------------------------------------------


def test_options_object_and_keyword_overrides_combine() -> None:
    events = agent_trace(steps=2)
    base = RenderOptions(dedupe=True)
    assert format_trace(events, options=base, nest=True) == format_trace(events, dedupe=True, nest=True)


@pytest.mark.parametrize(
    "bad", [{"max_length": -1}, {"truncate_buffer": 1}, {"tools_collapse_threshold": -1}]
)
def test_invalid_options_are_rejected(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        format_trace([], **bad)


def test_unknown_options_are_rejected() -> None:
    with pytest.raises(TypeError):
        format_trace([], colour=True)


def test_max_length_none_disables_sampling() -> None:
    events = agent_trace(steps=4)
    assert not format_trace(events, max_length=None).sampled
    assert not format_trace(events, max_length=0).sampled
    assert format_trace(events, max_length=3000).sampled


def test_non_ascii_is_escaped_like_the_original_unless_asked_not_to() -> None:
    events = [
        event(
            "g",
            "$ai_generation",
            1,
            **{
                "$ai_input": [
                    {
                        "role": "user",
                        "content": "x",
                        "tool_calls": [{"function": {"name": "f", "arguments": {"city": "Zürich"}}}],
                    }
                ]
            },
        )
    ]
    assert 'f(city="Z\\u00fcrich")' in format_trace(events).text
    assert 'f(city="Zürich")' in format_trace(events, escape_non_ascii=False).text


def test_lines_of_event_lists_an_events_lines() -> None:
    result = format_trace(agent_trace(steps=2))
    numbers = result.lines_of_event("gen00")
    assert numbers == sorted(numbers) and result.line_map[numbers[0]].section == "tree"


def test_dedupe_finds_a_tool_result_shown_before_as_a_span_state() -> None:
    rows = [{"day": f"2026-11-{day:02d}", "count": 4000 + day} for day in range(1, 8)]
    events = [
        event("span", "$ai_span", 1, **{"$ai_span_name": "tool:run_sql", "$ai_output_state": rows}),
        event(
            "gen",
            "$ai_generation",
            2,
            **{
                "$ai_input": [
                    {"role": "user", "content": "How many orders?"},
                    {
                        "role": "tool",
                        "tool_call_id": "c1",
                        "content": json.dumps(rows, separators=(",", ":")),
                    },
                ]
            },
        ),
    ]
    result = format_trace(events, dedupe=True)
    lines = content(result)
    tool_at = next(n for n, line in lines.items() if line.strip(" │") == "[2] TOOL")
    match = REFERENCE.search(lines[tool_at + 2])
    assert match is not None, lines[tool_at + 2]
    first, last = int(match.group(2)), int(match.group(3))
    assert result.line_map[first].event_uuid == "span" and result.line_map[first].section == "state_output"
    assert lines[first].strip(" │") == "[" and lines[last].strip(" │") == "]"


def test_nest_prefers_the_span_when_a_generation_carries_its_span_id() -> None:
    events = [
        event("g", "$ai_generation", 1, **{"$ai_span_id": "S", "$ai_parent_id": "S", "$ai_span_name": "llm"}),
        event("t", "$ai_span", 2, **{"$ai_span_id": "T", "$ai_parent_id": "S", "$ai_span_name": "tool"}),
        event("s", "$ai_span", 3, **{"$ai_span_id": "S", "$ai_span_name": "step"}),
    ]
    assert tree_lines(format_trace(events, nest=True)) == [
        "└─ [+] [SPAN] step",
        "   ├─ [+] [GEN] llm",
        "   └─ [+] [SPAN] tool",
    ]
