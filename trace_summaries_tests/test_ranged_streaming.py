"""A ranged run streams its samples: the summarizing step holds a few partitions' samples at a time, never
the range's, keeps the step's LLM calls shared across partitions, and writes what one run per partition
writes.

The samples alive are counted where the step spends its time, at every LLM call and every read: the real
local-disk sample store reports each sample it reads to a census that holds it weakly (the sample and each
of its traces), and the real summarizer of the ``llm`` resource (the OpenAI client against the fake
OpenAI-compatible server) asks the census to count the partitions with anything still alive before each
call.
"""

from __future__ import annotations

import gc
import json
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from trace_summaries.defs.io_managers import SampleIOManager, SummaryEventsIOManager
from trace_summaries.defs.partition_sets import TEAMS
from trace_summaries.defs.resources import ClickHouseResource, LLMResource
from trace_summaries.defs.sampled_traces import sampled_traces
from trace_summaries.defs.trace_summaries import trace_summaries
from trace_summaries.demo import seed_store
from trace_summaries.sample import TeamHourSample
from trace_summaries.store import TraceStore
from trace_summaries.summarize import Summarizer, SummaryMode, TraceSummaryResult
from trace_summaries.text_repr import TraceText
from trace_summaries_harness.openai_server import OpenAICompatibleServer, openai_server
from trace_summaries_tests.support import clock

HOUR_KEY = clock.HOUR_KEY
TEAM_IDS = list(range(21, 29))  # 8 partitions in one range
TRACES = 2  # per partition: a partition alone cannot fill the step's calls
BATCH = 3
# Open partitions each hold a trace still to summarize, so there are at most BATCH of them, plus the one being
# read; the range has more than that, and the eager step held them all.
MAX_LIVE_SAMPLES = BATCH + 1


class SampleCensus:
    """The samples the step read from the sample store, held weakly, the sample and each of its traces: the
    most partitions with anything of theirs alive at once, at any LLM call or read, and how many calls were
    counted."""

    def __init__(self) -> None:
        self._read: list[list[weakref.ref[Any]]] = []
        self.max_live = 0
        self.calls = 0

    def reset(self) -> None:
        self._read.clear()
        self.max_live = self.calls = 0

    def track(self, sample: TeamHourSample) -> None:
        self._read.append([weakref.ref(sample), *(weakref.ref(trace) for trace in sample.traces)])
        self._count()

    def call(self) -> None:
        self.calls += 1
        self._count()

    def _count(self) -> None:
        live = self._live()
        if live > MAX_LIVE_SAMPLES:
            gc.collect()  # what only an unreachable cycle still holds is not held: count again
            live = self._live()
        self.max_live = max(self.max_live, live)

    def _live(self) -> int:
        return sum(1 for refs in self._read if any(ref() is not None for ref in refs))


CENSUS = SampleCensus()


class CensusSampleIOManager(SampleIOManager):
    """The local-disk sample store; every sample it reads is reported to ``CENSUS``."""

    def _read(self, name: str, *, traces: bool = True) -> TeamHourSample | None:
        sample = super()._read(name, traces=traces)
        if sample is not None and traces:
            CENSUS.track(sample)
        return sample


class _CountingSummarizer:
    """The resource's own summarizer, counting the samples alive before each of its calls."""

    def __init__(self, inner: Summarizer) -> None:
        self._inner = inner
        self.provider = inner.provider
        self.model = inner.model

    async def summarize(
        self, trace_text: TraceText, events: Sequence[Any], mode: SummaryMode
    ) -> TraceSummaryResult:
        CENSUS.call()
        return await self._inner.summarize(trace_text, events, mode)

    async def aclose(self) -> None:
        await self._inner.aclose()


class CensusLLMResource(LLMResource):
    """The production LLM resource; its summarizer reports to ``CENSUS`` before each call."""

    def summarizer(
        self, *, model: str | None, max_attempts: int | None, bounded_output: bool = False
    ) -> Summarizer:
        inner = super().summarizer(model=model, max_attempts=max_attempts, bounded_output=bounded_output)
        return _CountingSummarizer(inner)


@pytest.fixture
def server() -> Iterator[OpenAICompatibleServer]:
    # Clean answers: each prompt gets the same answer whichever run sends it. 0.2 s a call, so calls overlap
    # and the pacer's latency tolerance is far above this machine's noise.
    with openai_server(latency_s=0.2, repertoire="clean") as served:
        yield served


def resources(store: TraceStore, tmp_path: Path, server: OpenAICompatibleServer) -> dict[str, Any]:
    clickhouse = ClickHouseResource(dsn=store.dsn)
    return {
        "clickhouse": clickhouse,
        "llm": CensusLLMResource(api_key="sk-census", base_url=server.base_url, timeout_s=10.0),
        "sample_io_manager": CensusSampleIOManager(base_dir=str(tmp_path / "intermediate")),
        "summary_events_io_manager": SummaryEventsIOManager(clickhouse=clickhouse),
    }


def stored_summaries(store: TraceStore) -> dict[str, dict[str, Any]]:
    """Every summary event in the store, by event uuid: its team, trace and properties."""
    with store.session() as client:
        rows = client.query(
            "SELECT toString(uuid), team_id, properties FROM events WHERE event = '$ai_trace_summary'"
        ).result_rows
    return {uuid: {"team": team, **json.loads(properties)} for uuid, team, properties in rows}


@pytest.mark.parametrize("store", ["chdb"], indirect=True)
def test_a_ranged_run_holds_a_few_samples_at_a_time_and_writes_what_single_runs_write(
    store: TraceStore, instance: dg.DagsterInstance, tmp_path: Path, server: OpenAICompatibleServer
) -> None:
    seed_store(store, TEAM_IDS, [clock.HOUR], TRACES, progress=False, oversized_fraction=0.0)
    instance.add_dynamic_partitions(TEAMS.name, [str(team) for team in TEAM_IDS])
    config = {"ops": {"trace_summaries": {"config": {"batch_size": BATCH, "mode": "detailed"}}}}
    CENSUS.reset()

    ranged = dg.materialize(
        [sampled_traces, trace_summaries],
        instance=instance,
        resources=resources(store, tmp_path, server),
        run_config=config,
        tags={
            "dagster/asset_partition_range_start": f"{HOUR_KEY}|{TEAM_IDS[0]}",
            "dagster/asset_partition_range_end": f"{HOUR_KEY}|{TEAM_IDS[-1]}",
        },
    )

    assert ranged.success
    assert CENSUS.calls == len(TEAM_IDS) * TRACES
    # Bounded: never the whole range's samples at once...
    assert 1 <= CENSUS.max_live <= MAX_LIVE_SAMPLES < len(TEAM_IDS)
    # ... yet the partitions share the step's calls: more were in flight at once than one partition has.
    assert server.max_in_flight > TRACES
    from_range = stored_summaries(store)
    assert sorted({event["team"] for event in from_range.values()}) == TEAM_IDS
    assert len(from_range) == len(TEAM_IDS) * TRACES
    summarizing = ranged.asset_materializations_for_node("trace_summaries")[0].metadata
    assert summarizing["generated"].value == len(TEAM_IDS) * TRACES
    sampling = ranged.asset_materializations_for_node("sampled_traces")[0].metadata
    assert sampling["objects_written"].value == len(TEAM_IDS)
    assert sampling["traces_selected"].value == len(TEAM_IDS) * TRACES

    # One run per partition replaces each partition's summaries: the same events, property for property.
    for team in TEAM_IDS:
        single = dg.materialize(
            [sampled_traces, trace_summaries],
            instance=instance,
            resources=resources(store, tmp_path, server),
            run_config=config,
            partition_key=f"{HOUR_KEY}|{team}",
        )
        assert single.success
    assert stored_summaries(store) == from_range
