"""Trace selection for one team-hour against a real embedded ClickHouse."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

from trace_summaries.sample import jsonl_lines
from trace_summaries.sample.query import (
    SamplingConfig,
    TeamHourSample,
    _fetch_chunks,
    sample_team_hour,
)
from trace_summaries.store import TraceStore
from trace_summaries_tests.support import clock
from trace_summaries_tests.support.events import ai_event
from trace_summaries_tests.support.sample_files import sample_from_jsonl, sample_to_jsonl

HOUR = clock.HOUR
END = HOUR + timedelta(hours=1)
TEAM = 7


def sample(store: TraceStore, config: SamplingConfig | None = None, team: int = TEAM) -> TeamHourSample:
    with store.session() as client:
        return sample_team_hour(client, team, HOUR, END, config)


def test_window_includes_hour_start_and_excludes_hour_end(store: TraceStore) -> None:
    store.insert_events(
        [
            ai_event(TEAM, "at-start", HOUR),
            ai_event(TEAM, "inside", HOUR + timedelta(minutes=30)),
            ai_event(TEAM, "last-microsecond", END - timedelta(microseconds=1)),
            ai_event(TEAM, "at-end", END),
            ai_event(TEAM, "before", HOUR - timedelta(microseconds=1)),
        ]
    )
    result = sample(store)
    assert {trace.trace_id for trace in result.traces} == {"at-start", "inside", "last-microsecond"}
    assert result.stats.traces_in_window == 3


def test_trace_belongs_to_the_hour_of_its_first_event(store: TraceStore) -> None:
    store.insert_events(
        [
            # Started in the previous hour, continues into ours: not ours.
            ai_event(TEAM, "from-previous-hour", HOUR - timedelta(minutes=5)),
            ai_event(TEAM, "from-previous-hour", HOUR + timedelta(minutes=5), index=1),
            # Starts in ours, runs past the end: ours, with every event.
            ai_event(TEAM, "runs-over", END - timedelta(minutes=1)),
            ai_event(TEAM, "runs-over", END + timedelta(minutes=10), index=1),
        ]
    )
    result = sample(store)
    assert [trace.trace_id for trace in result.traces] == ["runs-over"]
    assert len(result.traces[0].events) == 2
    assert result.traces[0].first_timestamp == END - timedelta(minutes=1)


def test_guards_exclude_empty_ids_long_traces_and_large_traces(store: TraceStore) -> None:
    at = HOUR + timedelta(minutes=1)
    rows = [ai_event(TEAM, "ok", at)]
    rows += [ai_event(TEAM, "fifty-events", at, index=i) for i in range(50)]
    rows += [ai_event(TEAM, "fifty-one-events", at, index=i) for i in range(51)]
    rows += [ai_event(TEAM, "", at, index=i) for i in range(3)]
    rows += [ai_event(TEAM, "huge", at, index=i, blob="x" * 700_000) for i in range(3)]
    store.insert_events(rows)

    result = sample(store)

    assert {trace.trace_id for trace in result.traces} == {"ok", "fifty-events"}
    assert result.stats.traces_excluded == {"too_many_events": 1, "too_large": 1}
    assert result.stats.excluded_examples == {"too_many_events": ["fifty-one-events"], "too_large": ["huge"]}
    assert result.stats.events_without_trace_id == 3
    assert result.stats.traces_in_window == 4
    assert result.stats.events_fetched == 51


def test_guards_follow_the_config(store: TraceStore) -> None:
    at = HOUR + timedelta(minutes=1)
    store.insert_events([ai_event(TEAM, "three", at, index=i) for i in range(3)])
    assert sample(store, SamplingConfig(max_trace_events=2)).traces == []
    assert (
        sample(store, SamplingConfig(max_trace_properties_chars=10)).stats.traces_excluded["too_large"] == 1
    )


def test_cap_is_deterministic_and_independent_of_insert_order(tmp_path) -> None:
    trace_ids = [f"trace-{i:03d}" for i in range(40)]
    picks = []
    for name, order in (("forward", trace_ids), ("reverse", trace_ids[::-1])):
        store = TraceStore(f"chdb://{tmp_path / name}")
        store.insert_events([ai_event(TEAM, tid, HOUR + timedelta(seconds=i)) for i, tid in enumerate(order)])
        first = [trace.trace_id for trace in sample(store, SamplingConfig(max_traces=10)).traces]
        again = [trace.trace_id for trace in sample(store, SamplingConfig(max_traces=10)).traces]
        assert first == again
        picks.append(first)
    assert picks[0] == picks[1]
    assert len(picks[0]) == 10
    # Hash order, not time order: the sample is not simply the first or last traces of the hour.
    assert picks[0] != trace_ids[:10] and picks[0] != trace_ids[-10:]


def test_other_teams_and_non_ai_events_are_never_read(store: TraceStore) -> None:
    at = HOUR + timedelta(minutes=2)
    store.insert_events(
        [
            ai_event(TEAM, "mine", at),
            ai_event(TEAM + 1, "neighbour", at),
            ai_event(TEAM + 1, "mine", at, index=1, secret="other team's row with the same trace id"),
            ai_event(TEAM, "mine", at, event="$pageview", index=2),
            ai_event(TEAM, "pageviews-only", at, event="$pageview"),
        ]
    )
    result = sample(store)
    assert [trace.trace_id for trace in result.traces] == ["mine"]
    assert [event.event for event in result.traces[0].events] == ["$ai_generation"]
    assert "secret" not in json.dumps([e.properties for e in result.traces[0].events])


def test_malformed_properties_are_reported_and_the_rest_sampled(store: TraceStore) -> None:
    at = HOUR + timedelta(minutes=3)
    bad = ai_event(TEAM, "mixed", at, index=1, raw_properties='{"$ai_trace_id": "mixed", "$ai_input": [')
    store.insert_events(
        [
            ai_event(TEAM, "mixed", at),
            bad,
            ai_event(TEAM, "clean", at),
            ai_event(TEAM, "", at, index=2, raw_properties="not json at all"),
        ]
    )
    result = sample(store)
    traces = {trace.trace_id: trace for trace in result.traces}
    assert set(traces) == {"mixed", "clean"}
    assert traces["mixed"].malformed_event_uuids == [bad.uuid]
    assert len(traces["mixed"].events) == 1
    assert result.stats.malformed_rows == 2
    assert result.stats.malformed_event_uuids == [bad.uuid]


def test_duplicate_event_rows_are_fetched_once(store: TraceStore) -> None:
    event = ai_event(TEAM, "dup", HOUR + timedelta(minutes=4))
    store.insert_events([event, event])
    result = sample(store)
    assert len(result.traces[0].events) == 1
    assert result.stats.duplicate_events_dropped == 1


def test_non_finite_numbers_survive_a_round_trip(store: TraceStore) -> None:
    store.insert_events(
        [ai_event(TEAM, "nan", HOUR, raw_properties='{"$ai_trace_id": "nan", "$ai_latency": NaN}')]
    )
    result = sample(store)
    restored = sample_from_jsonl(sample_to_jsonl(result))
    assert restored.traces[0].events[0].properties["$ai_latency"] == "nan"
    assert restored == result


def test_a_sample_fetched_in_chunks_is_the_sample_of_one_fetch(store: TraceStore) -> None:
    at = HOUR + timedelta(minutes=5)
    rows = []
    for i in range(12):
        trace_id = f"chunk-{i:02d}"
        blob = "x" * (2_000 * (1 + i % 4))
        rows += [ai_event(TEAM, trace_id, at + timedelta(seconds=i), index=j, blob=blob) for j in range(3)]
    # A trace larger than the whole budget: fetched on its own.
    rows += [ai_event(TEAM, "chunk-big", at, index=j, blob="y" * 30_000) for j in range(2)]
    # Rows whose outcome spans chunks, in traces whose hash order (the selection's) is not their id order
    # (one query's): malformed and too-deep rows, reported in id order; an event inserted twice; one uuid
    # carrying two trace ids, kept in the first trace id's copy.
    for trace_id in ("chunk-04", "chunk-07"):
        rows.append(
            ai_event(TEAM, trace_id, at, index=7, raw_properties=f'{{"$ai_trace_id": "{trace_id}", "x": [')
        )
        deep = "[" * 80 + "]" * 80
        rows.append(
            ai_event(
                TEAM, trace_id, at, index=8, raw_properties=f'{{"$ai_trace_id": "{trace_id}", "d": {deep}}}'
            )
        )
    rows.append(rows[0])
    shared = ai_event(TEAM, "chunk-03", at, index=9)
    rows += [shared, replace(shared, properties=json.dumps({"$ai_trace_id": "chunk-06"}))]
    store.insert_events(rows)

    budget = 16_000
    whole = sample(store, SamplingConfig(fetch_chunk_properties_chars=10**12))
    chunked = sample(store, SamplingConfig(fetch_chunk_properties_chars=budget))

    runs = list(_fetch_chunks(whole.traces, budget))
    assert len(runs) > 3 and ["chunk-big"] in runs
    timings = {"stats": {"select_query_seconds", "fetch_query_seconds"}}
    assert chunked.model_dump(exclude=timings) == whole.model_dump(exclude=timings)
    # The cases above did occur, so the comparison covers them.
    assert len(whole.traces) == 13
    assert len(whole.stats.malformed_event_uuids) == len(whole.stats.too_deep_event_uuids) == 2
    assert whole.stats.duplicate_events_dropped == 2
    assert shared.uuid in [
        event.uuid for trace in whole.traces if trace.trace_id == "chunk-03" for event in trace.events
    ]


def test_json_lines_read_from_chunks_of_any_size_give_the_sample_back(store: TraceStore) -> None:
    at = HOUR + timedelta(minutes=6)
    text = "a\u2028b\u2029c\u0085d\r\n漢🙂 " * 50
    store.insert_events([ai_event(TEAM, f"lines-{i}", at, text=text) for i in range(3)])
    result = sample(store)
    data = sample_to_jsonl(result)
    for size in (1, 3, 7, 4096, len(data)):
        chunks = (data[start : start + size] for start in range(0, len(data), size))
        lines = list(jsonl_lines(chunks))
        assert lines == data.split(b"\n")[:-1]
        assert TeamHourSample.read_jsonl(lines) == result
