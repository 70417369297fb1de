"""3. End to end: one partition of 100 traces, wall time by stage, with a 300 ms LLM.

The stages are the pipeline's own functions, run one after the other in one process as a run of the two
assets does (Dagster's own run overhead is benchmark 4, not this one):

1. sample: ``sampling.sample_team_hour`` on the seeded >= 1M-event store (embedded chDB, the default), in a
   fresh ``TraceStore.session()`` as the ``sampled_traces`` asset opens one;
2. hand-off: the sample written and read back by the real ``SampleIOManager`` (JSON lines streamed to a
   file, renamed into place, read line by line);
3. render, LLM, build events: ``summarize.partition.summarize_partition`` with the shipped
   ``LLMSummarizer`` against the OpenAI-compatible test server (300 ms per call, own process, TCP_NODELAY)
   at the asset's default ``batch_size`` (5). A wrapper around the summarizer timestamps the first call
   and the last answer, which splits the function's wall time into render (before the first call), LLM
   (first call to last answer) and event building (after the last answer);
4. write events: what ``SummaryEventsIOManager.handle_output`` does: a fresh session,
   ``replace_partitions``;
5. read back: in the same session, ``read_partitions``: that read-back is what the run's downstream steps
   (the asset check, ``embedding_requests``) receive with the in-process executor;
6. Kafka: one ``EmbeddingRequest`` per summary (``embeddings.summary_documents``) sent to a real
   Kafka-protocol broker (``kafka_broker.py``), every delivery acknowledged, by the producer that
   ``KafkaResource`` starts when the run's resources are initialized (before sampling).

The Kafka rows after the target show the same requests sent by a producer created only when the step sends,
with the shipped settings and two librdkafka variants: an idempotent producer cannot send before it holds a
producer id, which librdkafka asks for on a 500 ms timer (twice with the shipped settings), so ~1 s that
starting the producer with the run hides behind sampling and the LLM.

The partition runs once to warm up, then ``repeats`` times; each stage's figure is its median. The target
is on the share of everything but the LLM in the total. The same partition is also run at
``batch_size=20`` for information (the LLM stage then shrinks four-fold, so the rest weighs more).

Run standalone: ``python bench/bench_end_to_end.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from _common import FULL_STORE, QUICK_STORE, START, Row, print_rows, row, seeded_store
from _servers import OpenAIServerProcess

from trace_summaries.queue import build_embedding_request
from trace_summaries.queue.producer import EmbeddingRequestProducer
from trace_summaries.queue.summary_documents import summary_document
from trace_summaries.sample import SamplingConfig, TeamHourSample, sample_team_hour
from trace_summaries.store import TraceStore
from trace_summaries.summarize import LLMSettings, LLMSummarizer
from trace_summaries.summarize import partition as partition_summaries
from trace_summaries.summarize.partition import summarize_partition
from trace_summaries.text_repr import RenderOptions
from trace_summaries.write.rows import SummaryWindow, read_partitions, replace_partitions

LATENCY_S = 0.3
TOPIC = "document_embeddings_input"
TARGET_NON_LLM_SHARE = 0.10
TEAM = 3
# What the trace_summaries asset renders with by default ("compact").
RENDERING = getattr(partition_summaries, "PIPELINE_RENDERING", None) or RenderOptions(nest=True, dedupe=True)
# A producer created when the step sends (not started with the run), as shipped and with librdkafka
# variants, measured on the same requests: what starting it with the resource saves.
PRODUCER_VARIANTS: dict[str, dict[str, Any]] = {
    "shipped settings": {},
    "enable.sparse.connections=false": {"enable.sparse.connections": False},
    "enable.idempotence=false (acks=all)": {"enable.idempotence": False},
}


class VariantProducer(EmbeddingRequestProducer):
    def __init__(self, kafka_config: dict[str, Any], topic: str, overrides: dict[str, Any]) -> None:
        super().__init__(kafka_config, topic, flush_timeout_s=30)
        self._config.update(overrides)


class StampedSummarizer:
    """Delegates to the real summarizer; remembers when the first call started and the last one ended."""

    def __init__(self, inner: LLMSummarizer) -> None:
        self.inner = inner
        self.first_start: float | None = None
        self.last_end = 0.0

    @property
    def provider(self) -> Any:
        return self.inner.provider

    @property
    def model(self) -> str:
        return self.inner.model

    async def summarize(self, trace_text: Any, events: Any, mode: Any) -> Any:
        if self.first_start is None:
            self.first_start = time.perf_counter()
        try:
            return await self.inner.summarize(trace_text, events, mode)
        finally:
            self.last_end = time.perf_counter()

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class Breakdown:
    sample: float
    handoff: float
    render: float
    llm: float
    build: float
    write: float
    read_back: float
    kafka: float
    traces: int
    generated: int
    delivered: int

    @property
    def total(self) -> float:
        return (
            self.sample
            + self.handoff
            + self.render
            + self.llm
            + self.build
            + self.write
            + self.read_back
            + self.kafka
        )


async def _summarize(sample: TeamHourSample, summarizer: StampedSummarizer, batch_size: int) -> Any:
    try:
        return await summarize_partition(
            sample,
            summarizer,
            mode="detailed",
            batch_size=batch_size,
            render=RENDERING,  # type: ignore[arg-type]
        )
    finally:
        await summarizer.inner.aclose()


def partition_run(
    store: TraceStore,
    team: int,
    hour: datetime,
    base_url: str,
    kafka_config: dict[str, Any],
    batch_size: int,
    tmp: Path,
) -> Breakdown:
    import dagster as dg

    from trace_summaries.defs.io_managers import SampleIOManager

    end = hour + timedelta(hours=1)
    key = f"{hour:%Y-%m-%d-%H:%M}|{team}"
    partition = {
        "asset_key": dg.AssetKey("sampled_traces"),
        "partition_key": key,
        "asset_partitions_def": dg.StaticPartitionsDefinition([key]),
    }
    handoff = SampleIOManager(base_dir=str(tmp / "intermediate"))

    # The run starts: KafkaResource.setup_for_execution starts the producer (in-process executor).
    producer = EmbeddingRequestProducer(kafka_config, TOPIC, flush_timeout_s=30)
    producer.connect()

    started = time.perf_counter()
    with store.session() as client:
        sample = sample_team_hour(client, team, hour, end, SamplingConfig())
    sampled = time.perf_counter()
    if not sample.traces:
        raise RuntimeError(f"no traces in team {team}, hour {hour:%Y-%m-%d %H:00}: is the store seeded?")

    handoff.handle_output(dg.build_output_context(**partition), {key: sample})
    sample = handoff.load_input(dg.build_input_context(**partition))[key]
    handed = time.perf_counter()

    summarizer = StampedSummarizer(
        LLMSummarizer(LLMSettings(api_key="k", base_url=base_url, model="gpt-4.1-nano"))
    )
    result = asyncio.run(_summarize(sample, summarizer, batch_size))
    summarized = time.perf_counter()
    assert summarizer.first_start is not None

    # SummaryEventsIOManager.handle_output: replace, then read back in the same session; the read-back is
    # what the run's downstream steps (asset check, embedding_requests) receive.
    window = SummaryWindow(result.team_id, result.window_start, result.window_end)
    with store.session() as client:
        replace_partitions(client, [result])
        written = time.perf_counter()
        events = read_partitions(client, [window])[window]
    read_back = time.perf_counter()

    requests = [build_embedding_request(summary_document(event)) for event in events]
    with producer:
        report = producer.send(requests)
    queued = time.perf_counter()

    return Breakdown(
        sample=sampled - started,
        handoff=handed - sampled,
        render=summarizer.first_start - handed,
        llm=summarizer.last_end - summarizer.first_start,
        build=summarized - summarizer.last_end,
        write=written - summarized,
        read_back=read_back - written,
        kafka=queued - read_back,
        traces=len(sample.traces),
        generated=len(result.events),
        delivered=report.succeeded,
    )


def kafka_variants(
    kafka_config: dict[str, Any], store: TraceStore, team: int, hour: datetime
) -> dict[str, float]:
    """Seconds to send the partition's requests with a producer created just then, per setting."""
    window = SummaryWindow(team, hour, hour + timedelta(hours=1))
    with store.session() as client:
        events = read_partitions(client, [window])[window]
    requests = [build_embedding_request(summary_document(event)) for event in events]
    seconds: dict[str, float] = {}
    for name, overrides in PRODUCER_VARIANTS.items():
        started = time.perf_counter()
        with VariantProducer(kafka_config, TOPIC, overrides) as producer:
            report = producer.send(requests)
        seconds[name] = time.perf_counter() - started
        if report.succeeded != len(requests):
            raise AssertionError(f"{name}: {report}")
    return seconds


def run(quick: bool = False) -> list[Row]:
    from trace_summaries_harness.kafka_broker import running_kafka_broker

    spec = QUICK_STORE if quick else FULL_STORE
    repeats = 1 if quick else 3
    hour = START + timedelta(hours=min(7, spec.hours - 2))
    team = min(TEAM, spec.teams)
    data_dir, _ = seeded_store(spec)
    store = TraceStore(f"chdb://{data_dir}")
    rows: list[Row] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp,
        OpenAIServerProcess(latency_s=LATENCY_S) as server,
        running_kafka_broker(Path(tmp) / "kafka") as broker,
    ):
        broker.create_topic(TOPIC)
        kafka_config = broker.client_config()
        url, work = server.base_url, Path(tmp)
        partition_run(store, team, hour, url, kafka_config, 5, work)  # warm-up: imports, caches
        runs = [partition_run(store, team, hour, url, kafka_config, 5, work) for _ in range(repeats)]
        wide = partition_run(store, team, hour, url, kafka_config, 20, work)
        variants = kafka_variants(kafka_config, store, team, hour)

    for one in runs:
        if one.generated != one.traces or one.delivered != one.generated:
            raise AssertionError(f"{one.traces} traces, {one.generated} summaries, {one.delivered} delivered")
    b = Breakdown(
        **{
            name: statistics.median(getattr(one, name) for one in runs)
            for name in Breakdown.__dataclass_fields__
        }
    )
    total = b.total
    for stage, seconds in (
        ("sample (embedded chDB session + queries)", b.sample),
        ("hand-off between assets (SampleIOManager, JSON lines)", b.handoff),
        ("render (pipeline rendering, before the first call)", b.render),
        ("LLM (300 ms/call, batch_size 5)", b.llm),
        ("build summary events", b.build),
        ("write events (session + replace)", b.write),
        ("read summaries back (same session)", b.read_back),
        ("Kafka embedding requests (producer started with the run, acked)", b.kafka),
    ):
        rows.append(
            row(f"stage: {stage}", seconds, "s", note=f"{seconds / total:.1%} of total; median of {repeats}")
        )
    non_llm = total - b.llm
    rows.append(
        row(
            "total wall time, one partition (sum of stage medians)",
            total,
            "s",
            note=f"{b.traces} traces, {b.generated} summaries, {b.delivered} requests delivered",
        )
    )
    rows.append(
        row(
            "everything but the LLM, share of total",
            non_llm,
            "s",
            baseline=total,
            target=f"ratio < {TARGET_NON_LLM_SHARE:.2f}",
            met=non_llm / total < TARGET_NON_LLM_SHARE,
            note=f"ideal LLM time {b.traces / 5 * LATENCY_S:.1f} s (traces / batch_size x latency)",
        )
    )
    for name, seconds in variants.items():
        share = (non_llm - b.kafka + seconds) / (total - b.kafka + seconds)
        rows.append(
            row(
                f"Kafka with a producer created at send time: {name}",
                seconds,
                "s",
                baseline=b.kafka,
                note=f"non-LLM share would be {share:.1%}",
            )
        )
    rows.append(
        row(
            "same at batch_size 20: non-LLM share",
            wide.total - wide.llm,
            "s",
            baseline=wide.total,
            note=f"LLM {wide.llm:.2f} s of {wide.total:.2f} s; for information",
        )
    )
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print_rows(run(quick=parser.parse_args().quick))
