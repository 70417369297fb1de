"""Tenant isolation and parameterized SQL, asserted on every statement the ClickHouse server received.

Six teams (and the seeder's neighbour teams) write traces into the same hours, some with the very same trace
ids; one team's partition runs through the whole pipeline over ClickHouse's HTTP interface. The test front's
query log holds each statement with its bound parameters, so the assertions cover every query the run
issued, not just the ones a test thought of.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import pytest

from trace_summaries.defs.io_managers import SampleIOManager, SummaryEventsIOManager
from trace_summaries.defs.partition_sets import TEAMS
from trace_summaries.defs.resources import ClickHouseResource, KafkaResource, LLMResource
from trace_summaries.demo import neighbour_team, seed_store
from trace_summaries.sample import SamplingStats, TeamHourSample
from trace_summaries.store import TraceStore
from trace_summaries_harness.clickhouse_http import ClickHouseHTTPServer
from trace_summaries_harness.openai_server import OpenAICompatibleServer
from trace_summaries_tests.reliability.ledger import record
from trace_summaries_tests.support import clock
from trace_summaries_tests.support.events import ai_event
from trace_summaries_tests.support.fixtures_llm import TEST_API_KEY
from trace_summaries_tests.support.pipeline_defs import run_production_job

HOUR = clock.HOUR
END = HOUR + timedelta(hours=1)
HOUR_KEY = clock.HOUR_KEY
# Ids that no timestamp, limit or size of a run can contain as a number of their own.
TEAM = 7_301
OTHERS = [7_302, 7_303, 7_304, 7_305, 7_306]
ALL_TEAMS = [TEAM, *OTHERS]
KEY = f"{HOUR_KEY}|{TEAM}"
# Trace ids that every team uses, and ones that look like SQL or like our own parameter syntax.
SHARED_TRACE_IDS = ["shared-trace", "x' OR team_id != 0 --", "{team_id:Int64} OR 1"]
FOREIGN_MARKER = "FOREIGN-TEAM-DATA"

# `team_id = {p:Int64}`, or `team_id IN {p:Array(Int64)}` where a statement covers many partitions.
_TEAM_FILTER = re.compile(r"\bteam_id\s*(?:=\s*\{(\w+):Int64\}|IN\s*\{(\w+):Array\(Int64\)\})")
_EVENTS_TABLE = re.compile(r"\bevents\b")
# Statements the driver and the schema set-up send on their own: never built from run input.
_DRIVER_PROBES = re.compile(
    r"^\s*(SELECT\s+version\(\)|SELECT\s+.*\bFROM\s+system\.|CREATE\s+TABLE\b|DESCRIBE\s+TABLE\b)",
    re.I | re.S,
)


def seed_interleaved(store: TraceStore) -> None:
    """Every team, and each one's neighbour, in the hour before, the hour and the hour after."""
    hours = [HOUR - timedelta(hours=1), HOUR, END]
    seed_store(store, ALL_TEAMS, hours, 4, progress=False, oversized_fraction=0.0)
    rows = []
    for team in ALL_TEAMS + [neighbour_team(t) for t in ALL_TEAMS]:
        own = team == TEAM
        for index, trace_id in enumerate(SHARED_TRACE_IDS):
            at = HOUR + timedelta(minutes=10 + index, seconds=team % 60)
            content = f"question of team {team}" if own else f"{FOREIGN_MARKER} of team {team}"
            rows.append(ai_event(team, trace_id, at, **{"$ai_input": [{"role": "user", "content": content}]}))
    store.insert_events(rows)


def trace_ids_of(store: TraceStore, team: int) -> set[str]:
    with store.session() as client:
        rows = client.query(
            "SELECT DISTINCT ai_trace_id FROM events WHERE team_id = {team:Int64} AND event LIKE '$ai_%'",
            parameters={"team": team},
        ).result_rows
    return {trace_id for (trace_id,) in rows}


def materialize_team(
    store: TraceStore, instance: dg.DagsterInstance, tmp_path: Path, llm_server: OpenAICompatibleServer
) -> dg.ExecuteInProcessResult:
    clickhouse = ClickHouseResource(dsn=store.dsn)
    result = run_production_job(
        {
            "clickhouse": clickhouse,
            "llm": LLMResource(api_key=TEST_API_KEY, base_url=llm_server.base_url, timeout_s=5.0),
            "kafka": KafkaResource(),
            "sample_io_manager": SampleIOManager(base_dir=str(tmp_path / "intermediate")),
            "summary_events_io_manager": SummaryEventsIOManager(clickhouse=clickhouse),
        },
        instance=instance,
        partition_key=KEY,
    )
    assert result.success
    return result


@pytest.fixture
def isolated_run(
    http_store: TraceStore,
    clickhouse_http: ClickHouseHTTPServer,
    instance: dg.DagsterInstance,
    tmp_path: Path,
    llm_server: OpenAICompatibleServer,
) -> tuple[dg.ExecuteInProcessResult, list[dict[str, Any]]]:
    """Seeds the interleaved teams, then runs the pipeline for TEAM with an empty query log."""
    seed_interleaved(http_store)
    instance.add_dynamic_partitions(TEAMS.name, [str(team) for team in ALL_TEAMS])
    clickhouse_http.clear_queries()
    result = materialize_team(http_store, instance, tmp_path, llm_server)
    queries = clickhouse_http.queries()
    assert queries, "the front recorded no query"
    return result, queries


def test_a_partition_reads_and_writes_only_its_own_team(
    isolated_run: tuple[dg.ExecuteInProcessResult, list[dict[str, Any]]],
    http_store: TraceStore,
    llm_server: OpenAICompatibleServer,
) -> None:
    result, queries = isolated_run
    other_ids = {str(team) for team in OTHERS} | {str(neighbour_team(team)) for team in ALL_TEAMS}

    on_events = [
        q for q in queries if _EVENTS_TABLE.search(q["query"]) and not _DRIVER_PROBES.match(q["query"])
    ]
    reads_and_deletes = [q for q in on_events if not q["query"].lstrip().upper().startswith("INSERT")]
    assert reads_and_deletes, "no statement on the events table was recorded"
    own_traces = trace_ids_of(http_store, TEAM)
    sample: TeamHourSample = result.output_for_node("sampled_traces")[KEY]
    sampled = {trace.trace_id for trace in sample.traces}
    with http_store.session() as client:
        written = client.query(
            "SELECT team_id, JSONExtractString(properties, '$ai_trace_id') FROM events"
            " WHERE event = '$ai_trace_summary'"
        ).result_rows
    prompts = [request.message_text("user") for request in llm_server.chat_requests()]

    # Every place a foreign row or id could show, each checked: (what, clean).
    places: list[tuple[str, bool]] = []
    for query in reads_and_deletes:
        # Every statement on the events table filters on the team, bound to exactly this team.
        filters = [one or many for one, many in _TEAM_FILTER.findall(query["query"])]
        bound = [re.findall(r"-?\d+", query["params"].get(name, "")) for name in filters]
        places.append((f"team filter of {query}", bool(filters) and all(v == [str(TEAM)] for v in bound)))
    for query in queries:
        # No other team's id anywhere in any parameter of any statement (as a whole token).
        tokens = {t for value in query["params"].values() for t in re.findall(r"[0-9A-Za-z]+", str(value))}
        places.append((f"parameters of {query}", not tokens & other_ids))
    # Outputs: the sample, the written events, what the LLM saw.
    for trace in sample.traces:
        for event in trace.events:
            places.append((f"sampled event {event.uuid}", FOREIGN_MARKER not in str(event.properties)))
    for team, trace_id in written:
        places.append((f"written summary of {trace_id!r}", team == TEAM and trace_id in sampled))
    for index, prompt in enumerate(prompts):
        places.append((f"prompt {index}", FOREIGN_MARKER not in prompt))
    foreign = [what for what, clean in places if not clean]
    record(
        "security",
        "tenant_isolation:queries_and_outputs",
        tried=len(places),
        survived=len(places) - len(foreign),
        lost=0,
        duplicates=0,
    )
    assert foreign == []

    assert sampled and sampled <= own_traces and set(SHARED_TRACE_IDS) <= sampled
    assert len(next(t for t in sample.traces if t.trace_id == "shared-trace").events) == 1
    assert written and {trace_id for _, trace_id in written} == sampled
    # One prompt per sampled trace, and again for an answer that was retried (a refusal, a cut-off answer).
    assert len(prompts) >= len(sampled)
    [queued] = result.asset_materializations_for_node("embedding_requests")
    assert queued.metadata["embedding_requests"].value == len(sampled)


def sql_literals_from_input(store: TraceStore, sample: TeamHourSample) -> list[str]:
    """Every value a run takes from its input, in the forms it could take if formatted into SQL."""
    dsn = urlsplit(store.dsn)
    start, end = sample.window_start, sample.window_end
    values = [
        str(TEAM),
        *(trace.trace_id for trace in sample.traces),
        f"{TEAM}_{start.isoformat()}",  # batch_run_id
        HOUR_KEY,
        *(moment.strftime(fmt) for moment in (start, end) for fmt in ("%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M")),
        str(int(start.timestamp())),
        str(int(end.timestamp())),
        dsn.username or "",
        dsn.password or "",
        dsn.path.strip("/"),
    ]
    return [value for value in values if value]


def parameterization_violations(queries: list[dict[str, Any]], literals: list[str]) -> list[str]:
    violations = []
    for query in queries:
        text = query["query"]
        for literal in literals:
            pattern = rf"(?<![\w-]){re.escape(literal)}(?![\w-])" if literal.isdigit() else re.escape(literal)
            if re.search(pattern, text):
                violations.append(f"{literal!r} inside: {text[:200]}")
    return violations


def test_every_query_of_a_run_is_parameterized(
    isolated_run: tuple[dg.ExecuteInProcessResult, list[dict[str, Any]]], http_store: TraceStore
) -> None:
    result, queries = isolated_run
    sample: TeamHourSample = result.output_for_node("sampled_traces")[KEY]
    literals = sql_literals_from_input(http_store, sample)

    violations = parameterization_violations(queries, literals)

    # Counted per statement (one statement can hold several formatted values).
    formatted = [query for query in queries if parameterization_violations([query], literals)]
    record(
        "security",
        "parameterized_queries",
        tried=len(queries),
        survived=len(queries) - len(formatted),
        lost=0,
        duplicates=0,
    )
    assert violations == []
    # Input did reach the server, as bound parameters.
    bound = " ".join(str(value) for query in queries for value in query["params"].values())
    assert str(TEAM) in bound and "shared-trace" in bound and "OR team_id != 0 --" in bound


def test_the_parameterization_check_catches_a_formatted_query(http_store: TraceStore) -> None:
    """The detector itself: a statement built with an f-string is flagged, its parameterized twin is not."""
    sample = TeamHourSample(team_id=TEAM, window_start=HOUR, window_end=END, traces=[], stats=SamplingStats())
    literals = sql_literals_from_input(http_store, sample)
    formatted = {
        "query": f"SELECT count() FROM events WHERE team_id = {TEAM}"
        f" AND timestamp >= '{HOUR:%Y-%m-%d %H:%M}'",
        "params": {},
    }
    bound = {
        "query": "SELECT count() FROM events WHERE team_id = {team_id:Int64}",
        "params": {"team_id": str(TEAM)},
    }
    assert len(parameterization_violations([formatted], literals)) == 2
    assert parameterization_violations([bound], literals) == []
