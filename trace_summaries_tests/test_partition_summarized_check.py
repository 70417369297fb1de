"""The blocking check `partition_summarized`, through the assets: dropped references and references to
several lines are figures, a partition of summaries that cite nothing blocks its embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from trace_summaries.defs.checks import MAX_UNCITED_SHARE, partition_summarized
from trace_summaries.defs.embedding_requests import embedding_requests
from trace_summaries.defs.io_managers import SampleIOManager, SummaryEventsIOManager
from trace_summaries.defs.partition_sets import TEAMS
from trace_summaries.defs.resources import ClickHouseResource, KafkaResource, LLMResource
from trace_summaries.defs.sampled_traces import sampled_traces
from trace_summaries.defs.trace_summaries import trace_summaries
from trace_summaries.demo import seed_store
from trace_summaries.store import TraceStore
from trace_summaries_harness.openai_server import Fault, OpenAICompatibleServer
from trace_summaries_tests.support import clock
from trace_summaries_tests.support.fixtures_llm import TEST_API_KEY

HOUR = clock.HOUR
TEAM = 7
KEY = f"{clock.HOUR_KEY}|{TEAM}"
TRACES = 4


def answer(*refs: str) -> Fault:
    """A summary whose bullets cite ``refs`` as the model wrote them (a real model's mistakes included)."""
    bullets = [{"text": f"Step {n}", "line_refs": ref} for n, ref in enumerate(refs)]
    content = {
        "title": "A trace",
        "flow_diagram": "Question\n    ↓\nAnswer",
        "summary_bullets": bullets,
        "interesting_notes": [{"text": "Nothing unusual", "line_refs": ""}],
    }
    return Fault.with_content(json.dumps(content))


def materialize(
    store: TraceStore, instance: dg.DagsterInstance, tmp_path: Path, server: OpenAICompatibleServer
) -> dg.ExecuteInProcessResult:
    seed_store(store, [TEAM], [HOUR], TRACES, progress=False, oversized_fraction=0.0)
    instance.add_dynamic_partitions(TEAMS.name, [str(TEAM)])
    clickhouse = ClickHouseResource(dsn=store.dsn)
    defs = dg.Definitions(
        assets=[sampled_traces, trace_summaries, embedding_requests],
        asset_checks=[partition_summarized],
        resources={
            "clickhouse": clickhouse,
            "llm": LLMResource(api_key=TEST_API_KEY, base_url=server.base_url, timeout_s=10.0),
            "kafka": KafkaResource(),  # not configured: requests are counted as skipped
            "sample_io_manager": SampleIOManager(base_dir=str(tmp_path / "intermediate")),
            "summary_events_io_manager": SummaryEventsIOManager(clickhouse=clickhouse),
        },
    )
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(instance=instance, partition_key=KEY, raise_on_error=False)


def check_result(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def embedded(result: dg.ExecuteInProcessResult) -> bool:
    return dg.AssetKey("embedding_requests") in {
        e.asset_key for e in result.get_asset_materialization_events()
    }


@pytest.mark.parametrize("store", ["chdb"], indirect=True)
def test_dropped_references_and_lists_of_lines_are_figures_not_a_failed_run(
    store: TraceStore, instance: dg.DagsterInstance, tmp_path: Path, llm_server: OpenAICompatibleServer
) -> None:
    # Every trace: one good reference, one to a line that does not exist, one list of two lines.
    llm_server.enqueue_faults([answer("L1", "L999", "L2, L3") for _ in range(TRACES)])

    result = materialize(store, instance, tmp_path, llm_server)

    assert result.success
    evaluation = check_result(result)
    assert evaluation.passed
    figures = {key: value.value for key, value in evaluation.metadata.items()}
    assert figures["summaries"] == TRACES
    assert figures["references_dropped"] == TRACES
    assert figures["items_citing_several_lines"] == TRACES
    assert figures["items_without_reference"] == 2 * TRACES  # the dropped one and the note
    assert figures["summaries_citing_no_line"] == 0
    assert embedded(result)


@pytest.mark.parametrize("store", ["chdb"], indirect=True)
def test_a_partition_whose_summaries_mostly_cite_nothing_blocks_its_embeddings(
    store: TraceStore, instance: dg.DagsterInstance, tmp_path: Path, llm_server: OpenAICompatibleServer
) -> None:
    uncited = int(TRACES * MAX_UNCITED_SHARE) + 1  # just over the threshold
    faults = [answer("L998", "see above") for _ in range(uncited)] + [answer("L1")] * (TRACES - uncited)
    llm_server.enqueue_faults(faults)

    result = materialize(store, instance, tmp_path, llm_server)

    evaluation = check_result(result)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.metadata["summaries_citing_no_line"].value == uncited
    assert "cite no line" in json.dumps(evaluation.metadata["unusable_partitions"].value)
    assert not embedded(result)
