"""The summarize stage against the fake LLM's ordinary, unkind repertoire: what becomes of each answer shape.

Real models cite ranges and lists of lines, leave references empty or out, refuse, run into the answer's cap
and write far more than asked. The fake server answers each prompt in one of those shapes (chosen by a hash
of the prompt); here a partition holding at least one trace of every shape goes through the step's own code
(``summarize_partitions_sync``, rendering included), and each trace must end as the product promises: a
usable summary with canonical references and its figures, or a failure of that trace alone, with a reason.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from trace_summaries.defs.checks import reference_figures
from trace_summaries.defs.trace_summaries import summary_metadata
from trace_summaries.sample import SampledTrace, SamplingStats, TeamHourSample, TraceEvent
from trace_summaries.summarize import LLMSummarizer, SummaryMode, chat_messages
from trace_summaries.summarize.heuristic import notable_lines
from trace_summaries.summarize.partition import (
    PIPELINE_RENDERING,
    PartitionSummaries,
    TraceOutcome,
    render_trace,
    summarize_partitions_sync,
)
from trace_summaries.summarize.schema import ANSWER_LIMITS
from trace_summaries.summarize.steps import trace_name
from trace_summaries_harness.openai_server import (
    ANSWER_SHAPES,
    AnswerShape,
    Fault,
    OpenAICompatibleServer,
    answer_shape,
)
from trace_summaries_tests.support.fixtures_llm import fast_settings

HOUR = datetime(2026, 11, 20, 9, tzinfo=UTC)
TEAM = 4
MODE: SummaryMode = "detailed"
# Candidates for the partition: enough that every shape of the repertoire has a trace (each shape's share is
# at least 1/12, so 200 prompts miss one with a chance below 1e-6).
POOL = 200
ONE_REF = r"L[1-9]\d*(?:-L[1-9]\d*)?"
CANONICAL_REFS = re.compile(rf"{ONE_REF}(?:, {ONE_REF})*")


def trace(number: int) -> SampledTrace:
    """A small support-agent trace, different for every number: a generation, a tool span, an answer."""
    trace_id = f"trace-{number:03d}"
    start = HOUR + timedelta(minutes=number % 50)

    def event(index: int, name: str, **props: Any) -> TraceEvent:
        return TraceEvent(
            uuid=f"00000000-0000-0000-{number:04d}-{index:012d}",
            event=name,
            timestamp=start + timedelta(seconds=index),
            properties={"$ai_trace_id": trace_id, **props},
        )

    question = f"Where is my order {1000 + number}? It is {number % 7 + 1} days late."
    events = [
        event(0, "$ai_trace", **{"$ai_trace_name": f"Order assistant {number}"}),
        event(
            1,
            "$ai_generation",
            **{
                "$ai_span_name": "plan",
                "$ai_model": "gpt-4.1-mini",
                "$ai_input": [{"role": "user", "content": question}],
                "$ai_output_choices": [{"message": {"role": "assistant", "content": "Looking it up."}}],
                "$ai_latency": 0.5 + number / 100,
            },
        ),
        event(
            2,
            "$ai_span",
            **{
                "$ai_span_name": "lookup_order",
                "$ai_input_state": {"order_id": str(1000 + number)},
                "$ai_output_state": {"status": ["shipped", "lost", "delayed"][number % 3]},
            },
        ),
        event(
            3,
            "$ai_generation",
            **{
                "$ai_span_name": "answer",
                "$ai_model": "gpt-4.1-mini",
                "$ai_input": [{"role": "user", "content": question}],
                "$ai_output_choices": [
                    {"message": {"role": "assistant", "content": f"Order {1000 + number} is on its way."}}
                ],
            },
        ),
    ]
    return SampledTrace(
        trace_id=trace_id,
        first_timestamp=start,
        event_count=len(events),
        properties_chars=0,
        events=events,
    )


def user_message(sampled: SampledTrace) -> str:
    """The user message the step sends for this trace, rendered as the step renders it."""
    text = render_trace(sampled, PIPELINE_RENDERING)
    events = [event.model_dump() for event in sampled.events]
    return chat_messages(text.text, trace_name(events), MODE, notable_lines=notable_lines(text, events))[1][
        "content"
    ]


def one_trace_per_shape() -> dict[AnswerShape, SampledTrace]:
    """The first trace of the pool whose prompt gets each shape; fails if the repertoire stops giving one."""
    chosen: dict[AnswerShape, SampledTrace] = {}
    for number in range(POOL):
        candidate = trace(number)
        chosen.setdefault(answer_shape(user_message(candidate)), candidate)
    missing = [shape for shape in ANSWER_SHAPES if shape not in chosen]
    assert not missing, f"no prompt of {POOL} gets {missing}: the repertoire stopped giving them"
    return chosen


def sample(traces: list[SampledTrace]) -> TeamHourSample:
    return TeamHourSample(
        team_id=TEAM,
        window_start=HOUR,
        window_end=HOUR + timedelta(hours=1),
        traces=traces,
        stats=SamplingStats(),
    )


def summarize(server: OpenAICompatibleServer, traces: list[SampledTrace]) -> PartitionSummaries:
    """The step's code on one partition (rendering, batching, pacing, retries, events), not Dagster's."""
    key = f"2026-11-20-09:00|{TEAM}"
    summarized = summarize_partitions_sync(
        {key: sample(traces)},
        LLMSummarizer(fast_settings(server)),
        batch_size=4,
        mode=MODE,
        render=PIPELINE_RENDERING,
    )
    return summarized[key]


def items(outcome: TraceOutcome) -> list[tuple[str, str]]:
    assert outcome.event is not None
    props = outcome.event.properties
    return [(item.text, item.line_refs) for item in [*props.bullets, *props.interesting_notes]]


def served(server: OpenAICompatibleServer, sampled: SampledTrace) -> list[AnswerShape | None]:
    """The shapes the server answered this trace's calls with, in order (None: an error or other fault)."""
    prompt = user_message(sampled)
    return [request.shape for request in server.chat_requests() if request.message_text("user") == prompt]


def test_every_shape_of_the_repertoire_ends_as_the_product_promises(
    llm_server: OpenAICompatibleServer,
) -> None:
    by_shape = one_trace_per_shape()
    result = summarize(llm_server, list(by_shape.values()))

    # Every shape was really served, by the repertoire itself (no scripted fault here).
    assert set(llm_server.served_shapes()) == set(ANSWER_SHAPES)
    outcomes = {outcome.trace_id: outcome for outcome in result.outcomes}
    # Nothing in the repertoire costs a trace: the unusable answers came on a first call, and were retried.
    assert result.counts() == {"generated": len(by_shape)}, result.reasons("failed")
    for shape, sampled in by_shape.items():
        outcome = outcomes[sampled.trace_id]
        expected_calls = (
            [shape, answer_shape(user_message(sampled), 2)] if shape in ("refusal", "cut_off") else [shape]
        )
        assert served(llm_server, sampled) == expected_calls, shape
        assert outcome.attempts == len(expected_calls), shape
        # Whatever the shape, what is stored is canonical, cites only lines the text has, and something.
        text = render_trace(sampled, PIPELINE_RENDERING)
        refs = [refs for _, refs in items(outcome)]
        assert all(not ref or CANONICAL_REFS.fullmatch(ref) for ref in refs), (shape, refs)
        cited = [int(n) for ref in refs for n in re.findall(r"\d+", ref)]
        assert cited and all(text.has_line(n) for n in cited), (shape, refs)

    def outcome_of(shape: AnswerShape) -> TraceOutcome:
        return outcomes[by_shape[shape].trace_id]

    # Ranges and lists become valid citations, nothing dropped.
    for shape, pattern in (("range", r"^L\d+-L\d+$"), ("list", r"^L\d+(-L\d+)?, L\d+")):
        assert any(re.match(pattern, ref) for _, ref in items(outcome_of(shape))), shape
        assert outcome_of(shape).line_refs_invalid == 0, shape
    # An empty reference is allowed by the schema: an item without reference, nothing dropped. A missing one
    # is given an empty reference and counted as dropped: a figure, never a failure.
    for shape, dropped in (("empty_ref", 0), ("missing_ref_key", 1)):
        assert [refs for _, refs in items(outcome_of(shape))].count("") == 1, shape
        assert outcome_of(shape).line_refs_invalid == dropped, shape
    # The oversized answer is cut to the answer limits, and says so on the event.
    oversized = outcome_of("oversized")
    assert oversized.event is not None
    props = oversized.event.properties
    assert len(props.bullets) == ANSWER_LIMITS["summary_bullets"]
    assert len(props.interesting_notes) == ANSWER_LIMITS["interesting_notes"]
    assert (
        len(props.title) <= ANSWER_LIMITS["title"]
        and len(props.flow_diagram) <= ANSWER_LIMITS["flow_diagram"]
    )
    assert all(len(text) <= ANSWER_LIMITS["text"] and text.endswith("…") for text, _ in items(oversized))
    assert oversized.warnings == len(props.warnings) >= 3 and all("cut" in w for w in props.warnings)
    # The others were within the limits: no warning.
    assert [o.trace_id for o in result.outcomes if o.warnings] == [oversized.trace_id]

    # The partition's figures: references dropped, items without one, items citing several lines.
    # The answers stored are the last ones served: a refused or cut-off trace's retry has a shape of its own.
    stored = Counter(served(llm_server, sampled)[-1] for sampled in by_shape.values())
    metadata = summary_metadata([result])
    assert (metadata["generated"], metadata["failed"]) == (len(by_shape), 0)
    dropped = stored["missing_ref_key"]
    assert metadata["line_refs_invalid"] == dropped and metadata["summary_warnings"] == oversized.warnings
    figures = reference_figures(result.events)
    assert figures["references_dropped"] == dropped >= 1
    assert figures["items_without_reference"] == stored["empty_ref"] + stored["missing_ref_key"]
    assert figures["items_citing_several_lines"] >= 1
    assert figures["summaries_citing_no_line"] == 0


@pytest.mark.parametrize(
    ("fault", "reason", "error"),
    [
        (Fault.refusal(), "refused", "the model refused"),
        (Fault.cut_off(), "invalid_json", "cut off at the output cap"),
    ],
)
def test_a_trace_refused_or_cut_off_every_time_fails_alone_with_its_reason(
    llm_server: OpenAICompatibleServer, fault: Fault, reason: str, error: str
) -> None:
    traces = [trace(number) for number in range(5)]
    # The marker is in the second trace's text only ("order 1001").
    llm_server.add_fault_rule("order 1001", [fault], repeat=True)

    result = summarize(llm_server, traces)

    outcomes = {outcome.trace_id: outcome for outcome in result.outcomes}
    unlucky = outcomes[traces[1].trace_id]
    # Retried once, like any unusable answer, then failed with a reason that says what happened.
    assert (unlucky.status, unlucky.reason, unlucky.attempts) == ("failed", reason, 2)
    assert unlucky.error is not None and error in unlucky.error
    assert unlucky.event is None
    # The others are summarized, and the partition is not a systemic failure: the run goes on.
    assert result.counts() == {"generated": 4, "failed": 1}
    assert result.systemic_failure() is None
    assert Counter(summary_metadata([result])["failed_by_reason"].data) == {reason: 1}
