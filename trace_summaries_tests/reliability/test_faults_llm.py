"""Faults of the LLM endpoint, whole run: a partition whose every call is rate-limited for a while.

The endpoint is the OpenAI-compatible test server (real HTTP, real SDK), answering 429 with ``Retry-After``;
the run is a real Dagster run of the pipeline on an on-disk instance and the embedded store.

What they prove:
- a rate limit that lifts within the retry budget costs time, not summaries: the partition completes, every
  trace is summarized exactly once (one successful call, one event), no call came sooner than the server
  asked, and no trace used more than ``max_attempts`` calls;
- a rate limit that outlasts the budget fails the partition with a message naming the cause, writes
  nothing, and the next materialization (the limit lifted) writes exactly one event per trace.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path

import dagster as dg

from trace_summaries_harness.openai_server import Fault, OpenAICompatibleServer, RecordedRequest
from trace_summaries_tests.reliability.fault_support import (
    HOUR,
    Pipeline,
    embedded_store,
    partition_key,
    record_outcome,
    seed,
    step_failure_messages,
    tally,
)
from trace_summaries_tests.support.expected_traces import summary_count_and_distinct

TEAM = 21
KEY = partition_key(TEAM)
TRACES = 6
RETRY_AFTER_S = 1.0
# Scheduling slack when comparing a retry's arrival with the Retry-After it honoured.
CLOCK_SLACK_S = 0.05


def calls_by_trace(requests: list[RecordedRequest]) -> dict[str, list[RecordedRequest]]:
    """Chat calls grouped by their user message: the rendered trace, the same on every retry."""
    grouped: dict[str, list[RecordedRequest]] = defaultdict(list)
    for request in requests:
        grouped[request.message_text("user")].append(request)
    return grouped


def test_a_partition_rate_limited_for_a_while_completes_once_the_limit_lifts(
    tmp_path: Path, instance: dg.DagsterInstance, llm_server: OpenAICompatibleServer
) -> None:
    store = embedded_store(tmp_path / "clickhouse")
    expected = seed(store, [TEAM], [HOUR], TRACES)
    assert len(expected) == TRACES
    pipeline = Pipeline(instance, store, tmp_path / "intermediate", llm_base_url=llm_server.base_url)
    pipeline.register([TEAM])
    # Every trace in flight at once; the first two rounds of calls (every call for about two seconds) are
    # refused with 429 and Retry-After, then the limit lifts.
    llm_server.enqueue_faults([Fault.rate_limit(f"{RETRY_AFTER_S:g}")] * (2 * TRACES))

    result = pipeline.materialize(KEY, summary_config={"batch_size": TRACES, "max_attempts": 4})

    outcome = tally(store, expected)
    record_outcome("llm: every call rate-limited, then the limit lifts", ran=result.success, events=outcome)
    assert result.success, step_failure_messages(result)
    assert outcome.exact, outcome
    assert summary_count_and_distinct(store) == (TRACES, TRACES)

    calls = calls_by_trace(llm_server.chat_requests())
    assert len(calls) == TRACES, "each trace renders to its own prompt"
    assert sum(call.status == 429 for trace in calls.values() for call in trace) == 2 * TRACES
    for trace_calls in calls.values():
        statuses = [call.status for call in trace_calls]
        assert statuses.count(200) == 1 and statuses[-1] == 200, statuses  # summarized once, then done
        assert len(statuses) <= 4, statuses  # within the retry budget
        for refused, retry in itertools.pairwise(trace_calls):
            assert refused.answered_at is not None
            assert retry.arrived_at - refused.answered_at >= RETRY_AFTER_S - CLOCK_SLACK_S
    [materialization] = result.asset_materializations_for_node("trace_summaries")
    assert materialization.metadata["generated"].value == TRACES
    assert materialization.metadata["failed"].value == 0


def test_a_rate_limit_beyond_the_retry_budget_fails_clearly_and_the_next_run_summarizes_each_trace_once(
    tmp_path: Path, instance: dg.DagsterInstance, llm_server: OpenAICompatibleServer
) -> None:
    store = embedded_store(tmp_path / "clickhouse")
    expected = seed(store, [TEAM], [HOUR], TRACES)
    pipeline = Pipeline(instance, store, tmp_path / "intermediate", llm_base_url=llm_server.base_url)
    pipeline.register([TEAM])
    llm_server.add_fault_rule("", [Fault.rate_limit("0.2")], repeat=True)  # every call, until cleared

    limited = pipeline.materialize(KEY, summary_config={"batch_size": TRACES, "max_attempts": 2})

    assert not limited.success
    assert any("failed with 'rate_limited'" in message for message in step_failure_messages(limited))
    assert len(llm_server.chat_requests()) == 2 * TRACES  # max_attempts calls per trace, no more
    assert summary_count_and_distinct(store) == (0, 0)  # nothing half-written
    assert not limited.asset_materializations_for_node("trace_summaries")

    llm_server.clear_faults()
    llm_server.reset_stats()
    lifted = pipeline.materialize(KEY, summary_config={"batch_size": TRACES, "max_attempts": 2})

    outcome = tally(store, expected)
    record_outcome("llm: rate limit beyond the retry budget, then lifted", ran=lifted.success, events=outcome)
    assert lifted.success, step_failure_messages(lifted)
    assert outcome.exact, outcome
    assert [call.status for call in llm_server.chat_requests()] == [200] * TRACES
