"""The seeder's ground truth (`demo/truth.py`): each fact names exactly the events that show it."""

from __future__ import annotations

from datetime import timedelta

from trace_summaries.demo import DEFAULT_SEED
from trace_summaries.demo.scenarios import FEEDBACK_CALM, FEEDBACK_STRONG
from trace_summaries.demo.truth import FEEDBACK_SENTIMENT, hour_truths
from trace_summaries_tests.support import clock


def test_truth_names_the_failed_events_tools_feedback_and_extreme_steps() -> None:
    events, truths = [], {}
    for hour in range(6):
        chunk, chunk_truths = hour_truths(1, clock.HOUR + timedelta(hours=hour), 20, DEFAULT_SEED)
        events += chunk
        truths |= chunk_truths
    assert len(truths) == 120
    by_uuid = {event["uuid"]: event for event in events}
    failed = {e["uuid"] for e in events if e["properties"].get("$ai_is_error")}
    assert set().union(*(t.error_events for t in truths.values())) == failed
    assert any(t.failed_tools for t in truths.values()) and any(t.has_error for t in truths.values())
    for truth in truths.values():
        for uuid in truth.error_events | truth.failed_tool_events:
            assert by_uuid[uuid]["properties"]["$ai_trace_id"] == truth.trace_id
        assert {by_uuid[u]["properties"]["$ai_span_name"] for u in truth.failed_tool_events} == {
            f"tool:{name}" for name in truth.failed_tools
        }
        if truth.feedback_event is not None:
            feedback = by_uuid[truth.feedback_event]
            assert feedback["event"] == "$ai_feedback"
            assert truth.feedback_sentiment == FEEDBACK_SENTIMENT[feedback["properties"]["$ai_feedback_text"]]
        steps = [
            e
            for e in events
            if e["properties"].get("$ai_trace_id") == truth.trace_id
            and e["event"] in ("$ai_generation", "$ai_span", "$ai_embedding")
        ]
        slowest = max(e["properties"].get("$ai_latency", 0) for e in steps)
        assert by_uuid[truth.slowest_event]["properties"]["$ai_latency"] == slowest


def test_every_seeded_feedback_text_has_a_sentiment() -> None:
    assert set(FEEDBACK_SENTIMENT) == {*FEEDBACK_CALM, *FEEDBACK_STRONG}
    assert (
        FEEDBACK_SENTIMENT[
            "I'm furious. The bot promised a refund and nothing happened. Cancelling my subscription."
        ]
        == "negative"
    )
    assert FEEDBACK_SENTIMENT["Helpful, thanks."] == "positive"
