"""The run process killed (SIGKILL) at each stage, then a re-run: it converges, nothing duplicated.

The killed run is a real ``dagster asset materialize`` process (all three assets, one partition) on the
test's Dagster instance, with the settings a deployment uses: the ClickHouse HTTP front (production client
path), the OpenAI-compatible test server, a Kafka-protocol broker. Each stage is caught in the act by
holding what it waits on and watching for it, never by sleeping:

- ``sampling``: the sampling query is held by the ClickHouse front (``delay`` fault);
- ``summarizing``: LLM calls are in flight (the server answers after minutes);
- ``writing``: the IO manager's DELETE has run and its INSERT is held by the front, so the kill leaves the
  partition half-written (its events deleted, the new ones not inserted);
- ``queueing``: the broker is down and the ``embedding_requests`` step has started.

Before the kill the partition was materialized once, so the events table and the topic already hold a
generation that the killed run and the re-run must not duplicate; the embedding worker then consumes every
message of both generations.

What each case proves, after the kill and then a clean re-run (in-process, same instance and settings):
- the killed run is not a success and recorded no materialization for the stage it was killed in (nor
  later ones): Dagster shows that partition in progress, never as completed by the killed run;
- the events table holds exactly one summary per expected trace (``count() == uniqExact(uuid)``), with the
  deterministic uuids;
- the topic, read whole (each partition to its high watermark) right after the kill, holds exactly the first
  run's generation: each expected key once, nothing from the killed run; after the re-run, each key exactly
  twice (first run, re-run) and no other key. The embedding worker stores every message and
  ``document_embeddings FINAL`` has exactly one row per summary;
- the ``sampled_traces`` object on disk is whole: it parses, with every selected trace.

What the killed run may have sent: nothing, in every case, so the topic is asserted exactly-once per
successful run. Killed while sampling, summarizing or writing, it never started `embedding_requests`
(checked: no such step in its event log), and its producer sends only from that step. Killed while
queueing, its broker was stopped before the process started and is restarted only once the process is
dead, so nothing it produced could reach a broker: what librdkafka held died with the process. (A run
killed while a live broker acknowledges part of its requests would leave those on the topic, and its
re-run sends them again under the same keys: the product promises convergence of the stored embeddings
there, not a count per key on the topic; no case here reaches that moment.) The topic read right after the
kill shows what the killed run left; the ledger row counts any message beyond the two generations as a
duplicate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import dagster as dg
import pytest

from trace_summaries.defs.io_managers import partition_object_name
from trace_summaries_harness.clickhouse_http import ClickHouseHTTPServer
from trace_summaries_harness.kafka_broker import KafkaBroker, running_kafka_broker
from trace_summaries_harness.openai_server import OpenAICompatibleServer
from trace_summaries_harness.ports import wait_until
from trace_summaries_tests.reliability.fault_support import (
    EVENTS_INSERT_MARKER,
    HOUR,
    SAMPLING_QUERY_MARKER,
    CliRun,
    Expected,
    Pipeline,
    clickhouse_front,
    describe,
    drain,
    embedding_tally,
    embedding_worker,
    fault_cleared,
    fresh_database,
    key_tally,
    materializations,
    partition_key,
    partition_status,
    record_outcome,
    run_status,
    seed,
    started_steps,
    step_failure_messages,
    summary_rows,
    tally,
    topic_keys,
)
from trace_summaries_tests.support.expected_traces import summary_count_and_distinct
from trace_summaries_tests.support.kafka_topics import key_difference
from trace_summaries_tests.support.sample_files import sample_from_jsonl

Stage = Literal["sampling", "summarizing", "writing", "queueing"]
TEAM = 41
KEY = partition_key(TEAM)
TRACES = 4
HELD_S = 300.0  # longer than any test: the kill, not the timeout, ends the stage
STAGE_TIMEOUT_S = 180.0  # process start and code load on a busy 2-core machine
# What the killed run completed before the stage it was killed in.
COMPLETED_BEFORE: dict[Stage, set[str]] = {
    "sampling": set(),
    "summarizing": {"sampled_traces"},
    "writing": {"sampled_traces"},
    "queueing": {"sampled_traces", "trace_summaries"},
}
KILLED_ASSET: dict[Stage, str] = {
    "sampling": "sampled_traces",
    "summarizing": "trace_summaries",
    "writing": "trace_summaries",
    "queueing": "embedding_requests",
}


def generations(expected: Expected, runs: int) -> Counter[str]:
    """The complete content of the topic after ``runs`` successful sends of the partition: each key that
    many times."""
    return Counter({key: count * runs for key, count in expected.message_keys().items()})


@pytest.fixture(scope="module")
def module_front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseHTTPServer]:
    with clickhouse_front(tmp_path_factory.mktemp("faults-kill") / "data") as front:
        yield front


@pytest.fixture
def front(module_front: ClickHouseHTTPServer) -> Iterator[ClickHouseHTTPServer]:
    with fault_cleared(module_front) as cleared:
        yield cleared


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    with running_kafka_broker(tmp_path / "kafka") as kafka:
        yield kafka


def arm(
    stage: Stage, front: ClickHouseHTTPServer, llm: OpenAICompatibleServer, broker: KafkaBroker, run: CliRun
) -> Callable[[], bool]:
    """Sets up the stage's hold; returns the condition that says the run is inside that stage."""
    if stage == "sampling":
        front.set_fault("delay", match=SAMPLING_QUERY_MARKER, seconds=HELD_S)
        return lambda: front.fault_state()["held"] > 0
    if stage == "summarizing":
        llm.latency_s = HELD_S
        return lambda: llm.in_flight > 0
    if stage == "writing":
        front.set_fault("delay", match=EVENTS_INSERT_MARKER, seconds=HELD_S)
        return lambda: front.fault_state()["held"] > 0
    broker.stop()
    return lambda: run.step_started("embedding_requests")


def release(
    stage: Stage, front: ClickHouseHTTPServer, llm: OpenAICompatibleServer, broker: KafkaBroker
) -> None:
    if stage in ("sampling", "writing"):
        # The front abandons a held statement whose client died (it is never run): wait for that, then
        # lift the fault.
        wait_until(
            lambda: front.fault_state()["held"] == 0, timeout_s=30, what="the held statement abandoned"
        )
        front.set_fault("off")
    elif stage == "summarizing":
        llm.latency_s = 0.0
    else:
        broker.start()


@pytest.mark.parametrize("stage", ["sampling", "summarizing", "writing", "queueing"])
def test_a_run_killed_at_each_stage_converges_on_rerun_without_duplicates(
    stage: Stage,
    front: ClickHouseHTTPServer,
    broker: KafkaBroker,
    llm_server: OpenAICompatibleServer,
    instance: dg.DagsterInstance,
    tmp_path: Path,
) -> None:
    topic = f"embedding-requests-{stage}"
    broker.create_topic(topic)
    pipeline = Pipeline(
        instance,
        fresh_database(front),
        tmp_path / "intermediate",
        llm_base_url=llm_server.base_url,
        kafka=broker,
        topic=topic,
    )
    pipeline.register([TEAM])
    expected = seed(pipeline.store, [TEAM], [HOUR], TRACES)
    first = pipeline.materialize(KEY)
    assert first.success, step_failure_messages(first)
    assert tally(pipeline.store, expected).exact

    # -- the kill -------------------------------------------------------------------------------------------
    run = CliRun(pipeline, KEY, tmp_path / f"killed-{stage}.log")
    try:
        in_stage = arm(stage, front, llm_server, broker, run)
        wait_until(
            lambda: run.check_alive() and in_stage(), timeout_s=STAGE_TIMEOUT_S, what=f"the {stage} stage"
        )
    finally:
        run.kill()
        release(stage, front, llm_server, broker)
    killed_id = run.run_id()
    # What the killed run left on the topic: the run is dead and (queueing) its broker back, so anything it
    # got accepted is below the high watermarks now.
    after_kill = topic_keys(broker, topic)

    assert run_status(instance, killed_id) != dg.DagsterRunStatus.SUCCESS
    recorded = {asset for asset, _ in materializations(instance, killed_id)}
    assert recorded == COMPLETED_BEFORE[stage], (recorded, run.log_tail())
    status = partition_status(instance, KILLED_ASSET[stage], KEY)
    assert "in_progress" in status, status  # not completed: the killed run still holds it
    if stage != "queueing":
        assert "embedding_requests" not in started_steps(instance, killed_id), "the killed run could send"
    if stage == "writing":
        assert summary_rows(pipeline.store, [TEAM]) == [], "the kill fell between the DELETE and the INSERT"
    else:
        assert tally(pipeline.store, expected).exact

    # -- the re-run -----------------------------------------------------------------------------------------
    again = pipeline.materialize(KEY)

    outcome = tally(pipeline.store, expected)
    keys = key_tally(broker, topic, generations(expected, 2))
    with embedding_worker(broker, topic, pipeline.store, llm_server.base_url, f"worker-{stage}") as worker:
        drain(worker, broker)
    embeddings = embedding_tally(pipeline.store, expected)
    record_outcome(
        f"run process SIGKILLed while {stage}",
        ran=again.success,
        events=outcome,
        embeddings=embeddings,
        topic=keys,
    )

    # Nothing from the killed run (see the module's docstring: it can have sent nothing).
    first_generation = generations(expected, 1)
    assert after_kill == first_generation, "after the kill: " + key_difference(after_kill, first_generation)
    assert again.success, step_failure_messages(again)
    [queued] = again.asset_materializations_for_node("embedding_requests")
    assert queued.metadata["embedding_requests_succeeded"].value == TRACES
    assert outcome.exact, outcome
    assert summary_count_and_distinct(pipeline.store) == (TRACES, TRACES)
    # Every key exactly twice on the topic (the first run's and the re-run's) and nothing else; downstream,
    # one row per summary.
    assert keys.exact, "after the re-run: " + describe(keys)
    assert embeddings.exact, embeddings
    assert partition_status(instance, KILLED_ASSET[stage], KEY) == {"materialized"}
    sample = sample_from_jsonl(
        (pipeline.intermediate_dir / partition_object_name("sampled_traces", KEY)).read_bytes()
    )
    assert len(sample.traces) == TRACES
