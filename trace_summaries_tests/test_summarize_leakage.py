"""Leakage from the prompt: summary items that repeat the prompt's example text are flagged, others are not.

The detector reads its examples from the prompt files we ship, so these tests take the example summaries out
of the v1 prompt files too (their JSON blocks) rather than retyping them.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from trace_summaries.defs.io_managers import SampleIOManager, SummaryEventsIOManager
from trace_summaries.defs.partition_sets import TEAMS
from trace_summaries.defs.resources import ClickHouseResource, LLMResource
from trace_summaries.defs.sampled_traces import sampled_traces
from trace_summaries.defs.trace_summaries import trace_summaries
from trace_summaries.demo import generate_hour, seed_store
from trace_summaries.store import TraceStore
from trace_summaries.summarize import (
    SUMMARY_MODES,
    HeuristicSummarizer,
    SummarizationResponse,
    SummaryItem,
    find_prompt_leaks,
    leakage_warnings,
)
from trace_summaries.summarize.leakage import example_phrases, split_prompt
from trace_summaries.summarize.partition import PIPELINE_RENDERING
from trace_summaries.summarize.prompts import load_prompt, shipped_prompts
from trace_summaries.text_repr import format_trace
from trace_summaries_harness.openai_server import Fault, OpenAICompatibleServer
from trace_summaries_tests.support import clock
from trace_summaries_tests.support.fixtures_llm import TEST_API_KEY

V1_TITLES = ("Refund Request Routed to Billing Tool", "Search Agent Fails on Expired API Key")

# A trace about something else entirely: a SQL question, no billing, invoice or order anywhere.
SQL_TRACE = """\
L001: sql-analyst
L002: TRACE HIERARCHY:
L003: └─ [+] [SPAN] sql-analyst (3.10s)
L004:   [1] USER
L005:   Which countries brought in the most revenue in the last 30 days?
L006:    ├─ [+] [GEN] openai.chat (0.84s, $0.0004, gpt-4.1)
L007:   Tool calls: 1
L008:     - run_query(sql="SELECT country, sum(amount) FROM payments GROUP BY 1 ORDER BY 2 DESC LIMIT 5")
L009:    ├─ [+] [SPAN] tool:run_query (0.31s)
L010:   [2] ASSISTANT
L011:   Germany leads with 41% of revenue, followed by France and Spain.
"""


def v1_example(mode: str) -> SummarizationResponse:
    """The example answer of a v1 system prompt: the JSON block that ends the file."""
    text = load_prompt(f"system_{mode}", "v1")
    return SummarizationResponse.model_validate(json.loads(text[text.index("\n{\n") :]))


def summary(title: str, *bullets: str, notes: tuple[str, ...] = ()) -> SummarizationResponse:
    return SummarizationResponse(
        title=title,
        flow_diagram="Start\n    ↓\nEnd",
        summary_bullets=[SummaryItem(text=text, line_refs="L001") for text in bullets],
        interesting_notes=[SummaryItem(text=text, line_refs="L001") for text in notes],
    )


def seeded_trace_texts(hours: int = 3, traces_per_hour: int = 20) -> list[tuple[str, list[dict[str, Any]]]]:
    """``(rendered text, events)`` of the seeder's traces, rendered as the pipeline renders them."""
    traces: list[tuple[str, list[dict[str, Any]]]] = []
    for hour in range(hours):
        start = datetime(2026, 11, 20, 9 + hour, tzinfo=UTC)
        by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for event in generate_hour(
            1, start, traces_per_hour, 42, oversized_fraction=0.0, include_non_ai=False
        ):
            by_trace[event["properties"]["$ai_trace_id"]].append(event)
        traces += [
            (format_trace(events, options=PIPELINE_RENDERING).text, events) for events in by_trace.values()
        ]
    return traces


@pytest.mark.parametrize("mode", SUMMARY_MODES)
def test_the_v1_example_answer_is_flagged_item_by_item_on_a_trace_about_something_else(mode: str) -> None:
    example = v1_example(mode)
    items = 1 + len(example.summary_bullets) + len(example.interesting_notes)

    leaks = find_prompt_leaks(example, SQL_TRACE)

    assert len(leaks) == items
    assert leaks[0].item == "title" and leaks[0].phrase == example.title
    assert [leak.item for leak in leaks[1:]] == [
        *(f"summary_bullets[{i}]" for i in range(len(example.summary_bullets))),
        *(f"interesting_notes[{i}]" for i in range(len(example.interesting_notes))),
    ]


def test_the_v1_inline_titles_and_a_partial_copy_are_flagged_with_the_repeated_words() -> None:
    leaked = summary(
        V1_TITLES[0],
        "Revenue query answered; invoice 2219 was charged twice",
        "Germany leads the revenue ranking",
        notes=(V1_TITLES[1],),
    )

    warnings = leakage_warnings(leaked, SQL_TRACE)

    assert warnings == [
        f'title repeats prompt example text "{V1_TITLES[0]}"',
        'summary_bullets[0] repeats prompt example text "invoice 2219 was charged twice"',
        f'interesting_notes[0] repeats prompt example text "{V1_TITLES[1]}"',
    ]


def test_the_same_words_are_not_flagged_when_the_trace_itself_says_them() -> None:
    refund_trace = SQL_TRACE + (
        "L012:   [3] USER\n"
        "L013:   Why was invoice 2219 charged twice? My refund request was routed to the billing tool.\n"
        "L014:   [4] ASSISTANT\n"
        "L015:   I see the duplicate and confirm the refund; the search agent fails on an expired API key.\n"
    )
    example = summary(
        V1_TITLES[0],
        "User asks why invoice 2219 was charged twice",
        "Assistant explains the duplicate and confirms the refund",
        notes=(V1_TITLES[1],),
    )

    assert find_prompt_leaks(example, refund_trace) == []
    assert len(find_prompt_leaks(example, SQL_TRACE)) == 4


def test_a_copied_v2_placeholder_is_flagged() -> None:
    copied = summary(
        "<what this trace did or how it ended>",
        "<one fact about this trace>",
        "Germany leads the revenue ranking",
    )

    assert [leak.item for leak in find_prompt_leaks(copied, SQL_TRACE)] == ["title", "summary_bullets[0]"]


def test_ordinary_summaries_that_share_common_words_with_the_examples_are_not_flagged() -> None:
    ordinary = summary(
        "Revenue by Country Answered With One Query",
        "User asks which countries brought in the most revenue",
        "Assistant calls run_query on the payments table",
        "Whole trace takes 3.1 s, most of it in the model call",
        "Answer names Germany, France and Spain",
        notes=("The answer is given without a date range check",),
    )

    assert find_prompt_leaks(ordinary, SQL_TRACE) == []


def test_heuristic_summaries_of_the_seeded_traces_are_never_flagged() -> None:
    traces = seeded_trace_texts()
    summarizer = HeuristicSummarizer()
    flagged: list[str] = []
    for text, events in traces:
        for mode in SUMMARY_MODES:
            result = asyncio.run(
                summarizer.summarize(format_trace(events, options=PIPELINE_RENDERING), events, mode)
            )
            assert result.summary is not None
            flagged += leakage_warnings(result.summary, text)

    assert len(traces) >= 40
    assert flagged == []


def test_examples_are_read_from_every_shipped_prompt_version() -> None:
    versions = {name.rsplit(".", 1)[1] for name in shipped_prompts()}
    phrases = set(example_phrases())

    assert {"v1", "v2"} <= versions
    assert "refund request rout to bill tool" in phrases  # v1's title example, stemmed
    assert "one fact about this trac" in phrases  # v2's placeholder


def test_a_prompt_is_split_into_examples_and_rule_text() -> None:
    prompt = (
        'title: at most 10 words ("Alpha Beta Gamma").\n'
        "  Shape:\n"
        "  Delta step\n"
        "      ↓\n"
        "\n"
        'Return {"text": "<one fact, short>", "line_refs": "L<n>"}\n'
    )

    examples, rules = split_prompt(prompt)

    assert {"Alpha Beta Gamma", "  Delta step", "one fact, short", "one fact", " short"} <= set(examples)
    assert "Alpha" not in rules and "Delta" not in rules and "fact" not in rules
    assert "at most 10 words" in rules


# Through the asset: the LLM answers every trace with v1's example; the run succeeds and says so.

HOUR = clock.HOUR
TEAM = 5
KEY = f"{clock.HOUR_KEY}|{TEAM}"
TRACES = 4


def test_a_run_whose_model_copies_the_prompt_example_succeeds_with_warnings_on_events_and_in_metadata(
    store: TraceStore, instance: dg.DagsterInstance, tmp_path: Path, llm_server: OpenAICompatibleServer
) -> None:
    seed_store(store, [TEAM], [HOUR], TRACES, progress=False, oversized_fraction=0.0)
    instance.add_dynamic_partitions(TEAMS.name, [str(TEAM)])
    copied = v1_example("detailed").model_copy(update={"title": V1_TITLES[0]})
    llm_server.enqueue_faults([Fault.with_content(copied.model_dump_json())] * TRACES)
    clickhouse = ClickHouseResource(dsn=store.dsn)

    result = dg.materialize(
        [sampled_traces, trace_summaries],
        instance=instance,
        partition_key=KEY,
        resources={
            "clickhouse": clickhouse,
            "llm": LLMResource(api_key=TEST_API_KEY, base_url=llm_server.base_url, timeout_s=5.0),
            "sample_io_manager": SampleIOManager(base_dir=str(tmp_path / "intermediate")),
            "summary_events_io_manager": SummaryEventsIOManager(clickhouse=clickhouse),
        },
        raise_on_error=False,
    )

    assert result.success
    [materialization] = result.asset_materializations_for_node("trace_summaries")
    meta = {key: value.value for key, value in materialization.metadata.items()}
    assert meta["generated"] == TRACES and meta["failed"] == 0
    events = result.output_for_node("trace_summaries")[KEY].events
    assert len(events) == TRACES
    # A seeded trace may really be about a refund routed to billing: which items are flagged depends on the
    # trace, but every trace gets some, and the title is among them where the trace has nothing of the kind.
    assert all(event.properties.warnings for event in events)
    assert any(f'title repeats prompt example text "{V1_TITLES[0]}"' in e.properties.warnings for e in events)
    flagged = sum(len(event.properties.warnings) for event in events)
    assert meta["leaked_prompt_examples"] == meta["summary_warnings"] == flagged >= TRACES
    with store.session() as client:
        stored = client.query(
            "SELECT JSONExtractArrayRaw(properties, '$ai_summary_warnings') FROM events"
            " WHERE event = '$ai_trace_summary'"
        ).result_rows
    assert sorted(len(row[0]) for row in stored) == sorted(len(event.properties.warnings) for event in events)
