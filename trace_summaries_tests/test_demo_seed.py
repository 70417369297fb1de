"""The demo/benchmark trace generator: determinism, event shapes, guards, noise, idempotent seeding."""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from trace_summaries.demo import (
    NEIGHBOUR_TEAM_OFFSET,
    default_demo_hours,
    generate_hour,
    hour_range,
    parse_hour,
    seed_store,
    to_event_rows,
)
from trace_summaries.demo.command import add_seed_arguments, run_seed
from trace_summaries.demo.identity import SEED_NAMESPACE, event_uuid
from trace_summaries.demo.scenarios import FEEDBACK_STRONG
from trace_summaries.demo.writer import plan_chunks
from trace_summaries.store import TraceStore
from trace_summaries_tests.support import clock
from trace_summaries_tests.support.environment import child_env

HOUR = clock.HOUR
SEED = 7
AI_EVENTS = {"$ai_trace", "$ai_span", "$ai_generation", "$ai_embedding", "$ai_metric", "$ai_feedback"}
MAX_TRACE_EVENTS = 50
MAX_TRACE_PROPERTIES_CHARS = 2_000_000

Event = dict[str, Any]


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def traces_of(events: Iterable[Event]) -> dict[str, list[Event]]:
    traces: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        if event["event"] in AI_EVENTS:
            traces[event["properties"]["$ai_trace_id"]].append(event)
    return traces


@pytest.fixture(scope="module")
def sample_events() -> list[Event]:
    """Two teams x three hours at 40 traces per hour: enough for every shape to occur."""
    return [
        event
        for team in (1, 2)
        for hour in hour_range(HOUR, 3)
        for event in generate_hour(team, hour, 40, SEED)
    ]


@pytest.fixture(scope="module")
def generations(sample_events: list[Event]) -> list[Event]:
    return [e for e in sample_events if e["event"] == "$ai_generation"]


# --- determinism -----------------------------------------------------------------------------------------


def test_same_chunk_key_gives_the_same_events() -> None:
    first = generate_hour(3, HOUR, 30, SEED)
    second = generate_hour(3, HOUR, 30, SEED)
    assert first == second
    assert [e["uuid"] for e in first] == [
        str(uuid.uuid5(SEED_NAMESPACE, f"{SEED}/3/2026-11-20T09:00:00Z/{i}")) for i in range(len(first))
    ]
    assert first[0]["uuid"] == event_uuid(SEED, 3, HOUR, 0)
    # Another seed, team or hour is another chunk.
    other_uuids = {e["uuid"] for e in generate_hour(3, HOUR, 30, SEED + 1)}
    other_uuids |= {e["uuid"] for e in generate_hour(4, HOUR, 30, SEED)}
    other_uuids |= {e["uuid"] for e in generate_hour(3, HOUR + timedelta(hours=1), 30, SEED)}
    assert not other_uuids & {e["uuid"] for e in first}


def _digest(team: int, hour: datetime, traces: int, seed: int) -> str:
    events = generate_hour(team, hour, traces, seed)
    rows = [(e["uuid"], e["event"], e["timestamp"].isoformat(), compact(e["properties"])) for e in events]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def test_generation_does_not_depend_on_the_process() -> None:
    """Python's salted ``hash()`` must not leak in: a process with another hash seed yields the same."""
    code = (
        "from datetime import datetime, UTC\n"
        "from trace_summaries_tests.test_demo_seed import _digest\n"
        "print(_digest(5, datetime(2026, 11, 20, 9, tzinfo=UTC), 25, 7))\n"
    )
    env = child_env(PYTHONHASHSEED="12345")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == _digest(5, HOUR, 25, SEED)


def test_generate_hour_rejects_naive_or_unaligned_hours() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        generate_hour(1, datetime(2026, 11, 20, 9), 5, SEED)
    with pytest.raises(ValueError, match="start of an hour"):
        generate_hour(1, HOUR + timedelta(minutes=5), 5, SEED)
    # Another zone naming the same instant is the same chunk.
    plus_one = HOUR.astimezone(datetime.fromisoformat("2026-11-20T10:00+01:00").tzinfo)
    assert generate_hour(1, plus_one, 5, SEED) == generate_hour(1, HOUR, 5, SEED)


# --- shapes ----------------------------------------------------------------------------------------------


def test_every_event_has_the_row_shape(sample_events: list[Event]) -> None:
    assert len({e["uuid"] for e in sample_events}) == len(sample_events)
    for event in sample_events:
        assert set(event) == {"uuid", "event", "timestamp", "properties", "team_id", "distinct_id"}
        assert event["timestamp"].tzinfo is not None and event["timestamp"].utcoffset() == timedelta(0)
        assert isinstance(event["properties"], dict) and event["distinct_id"]
        if event["event"] in AI_EVENTS:
            assert event["properties"]["$ai_trace_id"]
    assert {e["event"] for e in sample_events} >= AI_EVENTS


def test_trace_ids_are_unique_uuid_strings_across_teams_and_hours(sample_events: list[Event]) -> None:
    per_chunk: dict[str, set[tuple[int, datetime]]] = defaultdict(set)
    for trace_id, events in traces_of(sample_events).items():
        uuid.UUID(trace_id)
        first = min(e["timestamp"] for e in events)
        per_chunk[trace_id].add((events[0]["team_id"], first.replace(minute=0, second=0, microsecond=0)))
    assert all(len(chunks) == 1 for chunks in per_chunk.values())
    assert len(per_chunk) == 2 * 3 * 40


def test_traces_spread_over_the_hour_and_some_cross_into_the_next(sample_events: list[Event]) -> None:
    crossing = 0
    starts: list[float] = []
    for events in traces_of(sample_events).values():
        first, last = min(e["timestamp"] for e in events), max(e["timestamp"] for e in events)
        hour = first.replace(minute=0, second=0, microsecond=0)
        assert last - first < timedelta(minutes=10)
        starts.append((first - hour).total_seconds())
        crossing += last >= hour + timedelta(hours=1)
    assert crossing >= 6  # at least one per team-hour, and still rare
    assert crossing < len(starts) / 10
    quarters = Counter(int(start // 900) for start in starts)
    assert sorted(quarters) == [0, 1, 2, 3] and min(quarters.values()) > len(starts) / 8


def test_openai_generations_have_openai_shapes(generations: list[Event]) -> None:
    openai = [g["properties"] for g in generations if g["properties"]["$ai_provider"] == "openai"]
    with_tools = [p for p in openai if "$ai_tools" in p]
    assert with_tools
    for tool in with_tools[0]["$ai_tools"]:
        assert tool["type"] == "function" and set(tool["function"]) == {"name", "description", "parameters"}
    calls_seen = results_seen = 0
    for props in with_tools:
        assert props["$ai_input"][0]["role"] == "system"
        called: set[str] = set()
        for message in props["$ai_input"]:
            for call in message.get("tool_calls") or ():
                assert call["type"] == "function" and call["id"].startswith("call_")
                assert isinstance(json.loads(call["function"]["arguments"]), dict)
                called.add(call["id"])
                calls_seen += 1
            if message["role"] == "tool":
                assert message["tool_call_id"] in called  # results answer an earlier call
                results_seen += 1
    assert calls_seen and results_seen
    # Outputs come both as bare messages and as raw API choices.
    outputs = [p["$ai_output_choices"][0] for p in openai if "$ai_output_choices" in p]
    assert any("message" in choice for choice in outputs) and any("role" in choice for choice in outputs)
    assert any(
        c.get("type") == "image_url"
        for p in openai
        for m in p["$ai_input"]
        if isinstance(m["content"], list)
        for c in m["content"]
    )


def test_anthropic_generations_have_anthropic_shapes(generations: list[Event]) -> None:
    anthropic = [g["properties"] for g in generations if g["properties"]["$ai_provider"] == "anthropic"]
    with_tools = [p for p in anthropic if "$ai_tools" in p]
    assert with_tools
    for tool in with_tools[0]["$ai_tools"]:
        assert set(tool) == {"name", "description", "input_schema"}
    blocks = Counter()
    for props in with_tools:
        used: set[str] = set()
        for message in props["$ai_input"]:
            if not isinstance(message["content"], list):
                continue
            for block in message["content"]:
                blocks[block["type"]] += 1
                if block["type"] == "tool_use":
                    assert message["role"] == "assistant" and block["id"].startswith("toolu_")
                    used.add(block["id"])
                if block["type"] == "tool_result":
                    assert message["role"] == "user" and block["tool_use_id"] in used
                if block["type"] == "image":
                    assert block["source"]["media_type"] == "image/png" and block["source"]["data"]
    assert blocks["tool_use"] and blocks["tool_result"] and blocks["text"] and blocks["image"]
    outputs = [p["$ai_output_choices"] for p in with_tools if "$ai_output_choices" in p]
    assert any(block["type"] == "tool_use" for out in outputs for block in out[0]["content"])


def test_generations_carry_usage_cost_latency_and_model(generations: list[Event]) -> None:
    for generation in generations:
        props = generation["properties"]
        assert props["$ai_model"] and props["$ai_provider"] in {"openai", "anthropic"}
        assert props["$ai_input_tokens"] > 0 and props["$ai_latency"] > 0 and props["$ai_span_id"]
        if props.get("$ai_is_error"):
            assert props["$ai_output_tokens"] == 0 and "$ai_output_choices" not in props
        else:
            assert props["$ai_output_tokens"] > 0 and props["$ai_total_cost_usd"] > 0
            assert props["$ai_total_cost_usd"] == pytest.approx(
                props["$ai_input_cost_usd"] + props["$ai_output_cost_usd"]
            )
    assert sum(1 for g in generations if "$ai_session_id" in g["properties"]) > len(generations) / 2


def test_about_five_percent_of_generations_fail_with_string_and_dict_errors(generations: list[Event]) -> None:
    errors = [g["properties"] for g in generations if g["properties"].get("$ai_is_error")]
    assert 0.02 < len(errors) / len(generations) < 0.12
    assert any(isinstance(e["$ai_error"], str) for e in errors)
    assert any(isinstance(e["$ai_error"], dict) for e in errors)


def test_agents_repeat_prompt_and_tools_over_three_to_eight_generations(sample_events: list[Event]) -> None:
    agents = 0
    for events in traces_of(sample_events).values():
        gens = [e["properties"] for e in events if e["event"] == "$ai_generation"]
        if not gens or "$ai_tools" not in gens[0]:
            continue
        agents += 1
        assert 3 <= len(gens) <= 8
        assert all(g["$ai_tools"] == gens[0]["$ai_tools"] for g in gens)
        assert all(g["$ai_input"][0] == gens[0]["$ai_input"][0] for g in gens)
        # The history grows: each call sees at least the previous call's input.
        assert all(len(a["$ai_input"]) <= len(b["$ai_input"]) for a, b in itertools.pairwise(gens))
    assert agents > 30


def test_parent_ids_resolve_to_spans_of_the_same_trace(sample_events: list[Event]) -> None:
    max_depth = 0
    for trace_id, events in traces_of(sample_events).items():
        spans = {
            e["properties"]["$ai_span_id"]: e["properties"].get("$ai_parent_id")
            for e in events
            if e["event"] == "$ai_span"
        }
        for event in events:
            parent = event["properties"].get("$ai_parent_id")
            assert parent is None or parent in spans or parent == trace_id
        for span_id in spans:
            depth, node = 1, spans[span_id]
            while node in spans:
                depth, node = depth + 1, spans[node]
            max_depth = max(max_depth, depth)
    assert max_depth == 3


def test_embeddings_metrics_feedback_and_trace_events(sample_events: list[Event]) -> None:
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in sample_events:
        by_type[event["event"]].append(event["properties"])
    assert all(
        p["$ai_model"].startswith("text-embedding") and p["$ai_input"] for p in by_type["$ai_embedding"]
    )
    assert all(
        isinstance(p["$ai_metric_value"], float) and p["$ai_metric_name"] for p in by_type["$ai_metric"]
    )
    feedback = [p["$ai_feedback_text"] for p in by_type["$ai_feedback"]]
    assert feedback and any(text in FEEDBACK_STRONG for text in feedback)
    for props in by_type["$ai_trace"]:
        assert props["$ai_span_name"] and "$ai_input_state" in props and "$ai_output_state" in props
    assert len(by_type["$ai_trace"]) == 2 * 3 * 6  # 15% of 40 traces, per team-hour


# --- oversized traces ------------------------------------------------------------------------------------


def test_oversized_traces_exceed_the_guards_in_every_hour(sample_events: list[Event]) -> None:
    per_chunk: dict[tuple[int, datetime], Counter[str]] = defaultdict(Counter)
    for events in traces_of(sample_events).values():
        first = min(e["timestamp"] for e in events)
        chunk = (events[0]["team_id"], first.replace(minute=0, second=0, microsecond=0))
        chars = sum(len(compact(e["properties"])) for e in events)
        if len(events) > MAX_TRACE_EVENTS:
            per_chunk[chunk]["too_many_events"] += 1
        if chars > MAX_TRACE_PROPERTIES_CHARS:
            per_chunk[chunk]["too_large"] += 1
    assert len(per_chunk) == 6
    assert all(counts == {"too_many_events": 1, "too_large": 1} for counts in per_chunk.values())


def test_oversized_fraction_is_configurable() -> None:
    def oversized(events: list[Event]) -> int:
        return sum(
            len(trace) > MAX_TRACE_EVENTS or sum(len(compact(e["properties"])) for e in trace) > 2_000_000
            for trace in traces_of(events).values()
        )

    assert oversized(generate_hour(1, HOUR, 40, SEED, oversized_fraction=0)) == 0
    assert oversized(generate_hour(1, HOUR, 19, SEED)) == 0  # below 20 traces, only the fraction counts
    assert oversized(generate_hour(1, HOUR, 100, SEED, oversized_fraction=0.05)) == 10


# --- noise -----------------------------------------------------------------------------------------------


def test_non_ai_events_share_the_team_and_hour(sample_events: list[Event]) -> None:
    other = [e for e in sample_events if e["event"] not in AI_EVENTS]
    assert {"$pageview", "$autocapture"} <= {e["event"] for e in other}
    assert len(other) > len(sample_events) / 10
    assert all(HOUR <= e["timestamp"] < HOUR + timedelta(hours=3) for e in other)
    # Some name a trace without being AI events: only the event type tells them apart.
    assert any("$ai_trace_id" in e["properties"] for e in other)
    assert not [
        e for e in generate_hour(1, HOUR, 20, SEED, include_non_ai=False) if e["event"] not in AI_EVENTS
    ]


def test_neighbour_teams_are_planned_once_and_can_be_disabled() -> None:
    hours = hour_range(HOUR, 2)
    chunks = plan_chunks([1, 2], hours, 40)
    assert {(c.team_id, c.neighbour) for c in chunks} == {
        (1, False),
        (2, False),
        (1 + NEIGHBOUR_TEAM_OFFSET, True),
        (2 + NEIGHBOUR_TEAM_OFFSET, True),
    }
    assert all(c.traces_per_hour == 10 for c in chunks if c.neighbour)
    assert {c.team_id for c in plan_chunks([1, 2], hours, 40, neighbours=False)} == {1, 2}
    # Seeding a neighbour team explicitly seeds it once, as a regular team.
    explicit = plan_chunks([1, 1 + NEIGHBOUR_TEAM_OFFSET], hours, 40)
    assert len(explicit) == len({(c.team_id, c.hour) for c in explicit})
    assert not [c for c in explicit if c.team_id == 1 + NEIGHBOUR_TEAM_OFFSET and c.neighbour]


# --- writing to the store --------------------------------------------------------------------------------


def count_by_team(store: TraceStore) -> dict[int, int]:
    with store.session() as client:
        rows = client.query("SELECT team_id, count() FROM events GROUP BY team_id").result_rows
    return {int(team): int(count) for team, count in rows}


def test_seeding_writes_every_generated_event_with_its_properties(store: TraceStore) -> None:
    hours = hour_range(HOUR, 2)
    report = seed_store(store, [1], hours, 20, seed=SEED, progress=False)
    expected = [e for hour in hours for e in generate_hour(1, hour, 20, SEED)]
    neighbour = [e for hour in hours for e in generate_hour(1 + NEIGHBOUR_TEAM_OFFSET, hour, 5, SEED)]
    assert count_by_team(store) == {1: len(expected), 1 + NEIGHBOUR_TEAM_OFFSET: len(neighbour)}
    assert report.events_written == len(expected) + len(neighbour)
    assert (report.hours_written, report.hours_skipped, report.traces) == (4, 0, 2 * 20 + 2 * 5)

    with store.session() as client:
        rows = client.query(
            "SELECT toString(uuid), event, timestamp, properties, distinct_id, ai_trace_id FROM events "
            "WHERE team_id = {team:Int64}",
            parameters={"team": 1},
        ).result_rows
    stored = {row[0]: row for row in rows}
    for event in expected:
        _, name, timestamp, properties, distinct_id, trace_id = stored[event["uuid"]]
        assert (name, distinct_id) == (event["event"], event["distinct_id"])
        assert timestamp.replace(tzinfo=UTC) == event["timestamp"]
        assert json.loads(properties) == json.loads(compact(event["properties"]))
        assert trace_id == event["properties"].get("$ai_trace_id", "")


def test_guards_see_the_oversized_traces_in_the_store(store: TraceStore) -> None:
    seed_store(store, [1], [HOUR], 20, seed=SEED, progress=False, neighbours=False)
    with store.session() as client:
        rows = client.query(
            "SELECT ai_trace_id, count() AS n, sum(length(properties)) AS chars FROM events "
            "WHERE team_id = {team:Int64} AND event IN {types:Array(String)} GROUP BY ai_trace_id",
            parameters={"team": 1, "types": sorted(AI_EVENTS)},
        ).result_rows
    assert len(rows) == 20
    assert sum(n > MAX_TRACE_EVENTS for _, n, _ in rows) == 1
    assert sum(chars > MAX_TRACE_PROPERTIES_CHARS for _, _, chars in rows) == 1


def test_seeding_twice_writes_nothing_the_second_time(store: TraceStore) -> None:
    hours = hour_range(HOUR, 3)
    first = seed_store(store, [1, 2], hours, 20, seed=SEED, progress=False)
    counts = count_by_team(store)
    second = seed_store(store, [1, 2], hours, 20, seed=SEED, progress=False)
    assert count_by_team(store) == counts
    assert (second.events_written, second.hours_written, second.traces) == (0, 0, 0)
    assert second.hours_skipped == first.hours_written == 12
    assert second.events_skipped_existing == first.events_written
    with store.session() as client:
        (total, distinct), *_ = client.query("SELECT count(), uniqExact(uuid) FROM events").result_rows
    assert total == distinct == sum(counts.values())


def test_overlapping_hour_ranges_only_add_the_new_hours(store: TraceStore) -> None:
    early = seed_store(store, [1], hour_range(HOUR, 3), 10, seed=SEED, progress=False, neighbours=False)
    late = seed_store(
        store, [1], hour_range(HOUR + timedelta(hours=2), 3), 10, seed=SEED, progress=False, neighbours=False
    )
    assert (early.hours_written, late.hours_written, late.hours_skipped) == (3, 2, 1)
    expected = sum(len(generate_hour(1, hour, 10, SEED)) for hour in hour_range(HOUR, 5))
    assert count_by_team(store) == {1: expected}
    # A different seed is different data, not a duplicate.
    seed_store(store, [1], [HOUR], 10, seed=SEED + 1, progress=False, neighbours=False)
    assert count_by_team(store)[1] == expected + len(generate_hour(1, HOUR, 10, SEED + 1))


@pytest.mark.parametrize("stored", [slice(0, 25), slice(-25, None)], ids=["prefix", "suffix"])
def test_a_half_written_chunk_is_completed(store: TraceStore, stored: slice) -> None:
    """What an interrupted insert leaves behind: part of a chunk. Seeding adds exactly the rest."""
    events = generate_hour(1, HOUR, 20, SEED)
    store.insert_events(to_event_rows(events[stored]))
    report = seed_store(store, [1], [HOUR], 20, seed=SEED, progress=False, neighbours=False)
    assert (report.events_written, report.events_skipped_existing) == (len(events) - 25, 25)
    with store.session() as client:
        (total, distinct), *_ = client.query("SELECT count(), uniqExact(uuid) FROM events").result_rows
    assert total == distinct == len(events)


def test_throughput_smoke(store: TraceStore) -> None:
    report = seed_store(
        store, [1, 2, 3], hour_range(HOUR, 4), 50, seed=SEED, progress=False, batch_rows=2_000
    )
    assert report.events_written == sum(count_by_team(store).values()) > 5_000
    assert report.events_per_second > 0 and report.seconds > 0
    assert "events/s" in report.summary()


def test_event_rows_for_insert_events(store: TraceStore) -> None:
    events = generate_hour(9, HOUR, 5, SEED)
    assert store.insert_events(to_event_rows(events)) == len(events)
    assert count_by_team(store) == {9: len(events)}


# --- hours and the command -------------------------------------------------------------------------------


def test_default_demo_hours_are_the_last_complete_hours() -> None:
    now = datetime(2026, 11, 20, 9, 25, 13, tzinfo=UTC)
    assert default_demo_hours(now, 3) == [
        datetime(2026, 11, 20, 6, tzinfo=UTC),
        datetime(2026, 11, 20, 7, tzinfo=UTC),
        datetime(2026, 11, 20, 8, tzinfo=UTC),
    ]
    assert default_demo_hours(HOUR, 1) == [HOUR - timedelta(hours=1)]
    with pytest.raises(ValueError):
        default_demo_hours(datetime(2026, 11, 20, 9), 3)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-20T09:00",
        "2026-11-20T09:00:00Z",
        "2026-11-20T09",
        "2026-11-20-09:00",
        "2026-11-20T10:00+01:00",
    ],
)
def test_parse_hour_accepts_iso_hours_and_partition_keys(text: str) -> None:
    assert parse_hour(text) == HOUR


@pytest.mark.parametrize("text", ["2026-11-20T09:30", "yesterday", "2026-13-01T00:00"])
def test_parse_hour_rejects_other_text(text: str) -> None:
    with pytest.raises(ValueError):
        parse_hour(text)


def test_seed_command_seeds_the_configured_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dsn = f"chdb://{tmp_path / 'ch'}"
    monkeypatch.setenv("TRACE_SUMMARIES_CLICKHOUSE_DSN", dsn)
    parser = argparse.ArgumentParser()
    add_seed_arguments(parser)
    argv = ["--team-ids", "4,5", "--hours", "2", "--traces-per-hour", "5", "--start", "2026-11-20T09:00"]
    assert run_seed(parser.parse_args([*argv, "--no-neighbours"])) == 0
    store = TraceStore(dsn)
    counts = count_by_team(store)
    assert set(counts) == {4, 5}
    assert "events written" in capsys.readouterr().out
    assert run_seed(parser.parse_args([*argv, "--no-neighbours"])) == 0
    assert count_by_team(store) == counts
    with pytest.raises(SystemExit):
        parser.parse_args(["--start", "2026-11-20T09:30"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--traces-per-hour", "-1"])
