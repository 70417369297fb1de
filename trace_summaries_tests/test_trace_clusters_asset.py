"""The `trace_clusters` asset on the embedded store: the `$ai_trace_clusters` event field by field, exact
re-materialization, lineage from one day to the next (continuing, and a new scenario), the too-few-items skip,
and the plot and table in the metadata.

Embeddings are written straight into `document_embeddings` (as the worker writes them): three scenarios of
25 traces, each a tight group around its own direction, with texts whose words tell the scenarios apart, and
`$ai_generation` events for the metrics. The clustering and naming themselves are tested in
`test_cluster_core.py`; this is the Dagster side and the stored contract.
"""

from __future__ import annotations

import json
import math
import random
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from trace_summaries.cluster.clusters_event import CLUSTERS_EVENT
from trace_summaries.config import LOCAL_EMBEDDING_MODEL
from trace_summaries.defs.partition_sets import TEAMS
from trace_summaries.defs.resources import ClickHouseResource, LLMResource
from trace_summaries.defs.trace_clusters import daily_trace_clusters_schedule, trace_clusters
from trace_summaries.queue.request import PRODUCT, SummaryDocument, document_type_for_mode, embedding_content
from trace_summaries.store import TraceStore
from trace_summaries.worker.document_embeddings import (
    EmbeddingRow,
    ensure_embeddings_table,
    insert_embeddings,
)
from trace_summaries_harness.llama_server import running_llama_server
from trace_summaries_harness.openai_server import Fault, openai_server
from trace_summaries_tests.support.schedule_ticks import evaluate

TEAM = 7
DAY = date(2026, 11, 20)
DIMENSIONS = 384
SCENARIOS = {
    "refund": ("Refund for a broken order", "customer asked for a refund of a damaged order"),
    "sql": ("Revenue by country query", "analyst ran a SQL query on the revenue table"),
    "translate": ("Translate a meeting note", "assistant translated the meeting note into French"),
}
NEW_SCENARIO = {"outage": ("Payment gateway outage", "checkout failed because the payment gateway timed out")}


def key(day: date, team: int = TEAM) -> str:
    return dg.MultiPartitionKey({"day": day.isoformat(), "team": str(team)})


def direction(name: str) -> list[float]:
    rng = random.Random(name)
    vector = [rng.gauss(0, 1) for _ in range(DIMENSIONS)]
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector]


def write_scenarios(
    store: TraceStore, scenarios: dict[str, tuple[str, str]], *, day: date, per_scenario: int = 25
) -> list[str]:
    """``per_scenario`` embedded summaries (and one generation event each) per scenario, within ``day``."""
    ensure_embeddings_table(store)
    rows, events, trace_ids = [], [], []
    for name, (title, bullet) in scenarios.items():
        center = direction(name)
        rng = random.Random(f"{name}-{day}")
        for index in range(per_scenario):
            trace_id = f"{name}-{day:%m%d}-{index:03d}"
            window_end = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(hours=1 + index % 23)
            vector = [c + rng.gauss(0, 0.02) for c in center]
            content = embedding_content(
                SummaryDocument(
                    team_id=TEAM,
                    trace_id=trace_id,
                    mode="detailed",
                    batch_run_id=f"{TEAM}_{(window_end - timedelta(hours=1)).isoformat()}",
                    timestamp=window_end,
                    title=f"{title} #{index}",
                    bullets=[bullet, f"step {index} took {index % 7} seconds"],
                )
            )
            rows.append(
                EmbeddingRow(
                    TEAM,
                    PRODUCT,
                    document_type_for_mode("detailed"),
                    LOCAL_EMBEDDING_MODEL,
                    f"{TEAM}_{(window_end - timedelta(hours=1)).isoformat()}",
                    trace_id,
                    window_end,
                    content,
                    vector,
                )
            )
            properties = {
                "$ai_trace_id": trace_id,
                "$ai_total_cost_usd": 0.001,
                "$ai_input_tokens": 100,
                "$ai_output_tokens": 20,
            }
            if name == "sql" and index % 5 == 0:
                properties |= {"$ai_is_error": True, "$ai_error": "timeout"}
            event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, trace_id))
            started = window_end - timedelta(minutes=30)
            events.append((event_id, "$ai_generation", json.dumps(properties), started, TEAM, "user"))
            trace_ids.append(trace_id)
    insert_embeddings(store, rows)
    with store.session() as client:
        client.insert(
            "events",
            events,
            column_names=["uuid", "event", "properties", "timestamp", "team_id", "distinct_id"],
        )
    return trace_ids


def materialize(
    store: TraceStore,
    instance: dg.DagsterInstance,
    day: date,
    config: dict[str, Any] | None = None,
    llm: LLMResource | None = None,
) -> dg.ExecuteInProcessResult:
    instance.add_dynamic_partitions(str(TEAMS.name), [str(TEAM)])
    return dg.materialize(
        [trace_clusters],
        instance=instance,
        partition_key=key(day),
        resources={"clickhouse": ClickHouseResource(dsn=store.dsn), "llm": llm or LLMResource()},
        run_config={"ops": {"trace_clusters": {"config": config}}} if config else None,
    )


def metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    [materialization] = result.asset_materializations_for_node("trace_clusters")
    return {name: value.value for name, value in materialization.metadata.items()}


def cluster_events(store: TraceStore) -> list[tuple[str, datetime, dict[str, Any]]]:
    with store.session() as client:
        rows = client.query(
            "SELECT toString(uuid), timestamp, properties FROM events"
            " WHERE event = {event:String} ORDER BY timestamp",
            parameters={"event": CLUSTERS_EVENT},
        ).result_rows
    return [(row[0], row[1].replace(tzinfo=UTC), json.loads(row[2])) for row in rows]


def by_scenario(clusters: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each real cluster keyed by the scenario all its members share (asserting that they do)."""
    keyed = {}
    for cluster in clusters:
        if cluster["label"] == -1:
            continue
        scenarios = {member["trace_id"].split("-")[0] for member in cluster["members"]}
        assert len(scenarios) == 1, f"cluster {cluster['id']} mixes {scenarios}"
        keyed[scenarios.pop()] = cluster
    return keyed


@pytest.mark.parametrize("store", ["chdb"], indirect=True)
def test_one_event_per_day_with_the_contract_fields_and_the_ui_metadata(
    store: TraceStore, instance: dg.DagsterInstance
) -> None:
    traces = write_scenarios(store, SCENARIOS, day=DAY)
    result = materialize(store, instance, DAY)
    assert result.success

    [(event_uuid, timestamp, properties)] = cluster_events(store)
    window_end = datetime(2026, 11, 21, tzinfo=UTC)
    assert timestamp == window_end
    assert properties["$ai_clustering_run_id"] == f"{TEAM}_trace_20261121_000000"
    assert properties["$ai_clustering_level"] == "trace"
    assert properties["$ai_window_start"] == (window_end - timedelta(days=7)).isoformat()
    assert properties["$ai_window_end"] == window_end.isoformat()
    assert properties["$ai_total_items_analyzed"] == len(traces) == 75
    assert properties["$ai_clustering_params"]["min_items"] == 20
    assert properties["$ai_clustering_params"]["embedding_model"] == LOCAL_EMBEDDING_MODEL
    assert properties["$ai_clusters_gone"] == []

    clusters = by_scenario(properties["$ai_clusters"])
    assert set(clusters) == set(SCENARIOS)
    members = [m["trace_id"] for c in properties["$ai_clusters"] for m in c["members"]]
    assert sorted(members) == sorted(traces)  # every analyzed trace is a member of exactly one cluster
    for scenario, cluster in clusters.items():
        assert cluster["size"] == len(cluster["members"]) == 25
        assert cluster["lineage"]["state"] == "new" and cluster["id"].startswith("20261120-")
        assert [m["rank"] for m in cluster["members"]] == list(range(1, 26))
        distances = [m["distance"] for m in cluster["members"]]
        assert distances == sorted(distances)
        assert set(cluster["members"][0]) == {"trace_id", "distance", "rank", "x", "y", "timestamp"}
        assert len(cluster["centroid"]) == DIMENSIONS
        assert cluster["title"] and cluster["description"]
        assert cluster["metrics"]["traces_with_events"] == 25
        assert cluster["metrics"]["total_cost_usd"] == pytest.approx(0.025)
        assert cluster["metrics"]["total_tokens"] == 25 * 120
        assert cluster["metrics"]["error_rate"] == (0.2 if scenario == "sql" else 0.0)
    # The offline names come from the words that set a cluster apart.
    assert (
        "refund" in clusters["refund"]["title"].lower()
        or "refund" in clusters["refund"]["description"].lower()
    )

    shown = metadata(result)
    assert shown["clusters"] == 3 and shown["items_analyzed"] == 75 and shown["items_available"] == 75
    assert shown["plot"].startswith("![clusters](data:image/png;base64,iVBOR")  # a PNG
    table = shown["table"].splitlines()
    assert table[0].startswith("| id | name | size | since yesterday | error rate |")
    assert len([line for line in table[2:] if line.startswith("| 2026")]) == 3
    assert any("20%" in line for line in table)  # the SQL cluster's error rate

    again = materialize(store, instance, DAY)
    assert again.success
    assert cluster_events(store) == [(event_uuid, timestamp, properties)]  # replaced, identical


@pytest.mark.parametrize("store", ["chdb"], indirect=True)
def test_clusters_keep_their_ids_the_next_day_and_a_new_scenario_is_new(
    store: TraceStore, instance: dg.DagsterInstance
) -> None:
    write_scenarios(store, SCENARIOS, day=DAY)
    assert materialize(store, instance, DAY).success
    first = by_scenario(cluster_events(store)[0][2]["$ai_clusters"])

    # The next day: no new traces; the lookback still holds the same ones, so every cluster continues.
    assert materialize(store, instance, DAY + timedelta(days=1)).success
    second = by_scenario(cluster_events(store)[1][2]["$ai_clusters"])
    for scenario in SCENARIOS:
        assert second[scenario]["id"] == first[scenario]["id"]
        assert second[scenario]["lineage"] == {
            "state": "continuing",
            "previous_ids": [first[scenario]["id"]],
            "size_change": 0,
            "merged_from": [],
            "split_from": None,
        }

    # A day later a new failure mode appears: it is a new cluster, the others carry on.
    write_scenarios(store, NEW_SCENARIO, day=DAY + timedelta(days=2))
    result = materialize(store, instance, DAY + timedelta(days=2))
    assert result.success
    third = by_scenario(cluster_events(store)[2][2]["$ai_clusters"])
    assert third["outage"]["lineage"]["state"] == "new" and third["outage"]["id"].startswith("20261122-")
    assert {s: third[s]["lineage"]["state"] for s in SCENARIOS} == dict.fromkeys(SCENARIOS, "continuing")
    assert metadata(result)["lineage"] == {"continuing": 3, "new": 1, "gone": []}


@pytest.mark.parametrize("store", ["chdb"], indirect=True)
def test_too_few_summaries_skip_with_a_reason_and_leave_no_event(
    store: TraceStore, instance: dg.DagsterInstance
) -> None:
    write_scenarios(store, {"refund": SCENARIOS["refund"]}, day=DAY, per_scenario=12)
    result = materialize(store, instance, DAY)
    assert result.success
    shown = metadata(result)
    assert shown["clusters"] == 0 and shown["items_analyzed"] == 12
    assert "12" in shown["skipped"] and "20" in shown["skipped"]
    assert cluster_events(store) == []


@pytest.mark.parametrize("store", ["chdb"], indirect=True)
def test_the_daily_schedule_clusters_yesterday_for_every_scheduled_team(
    store: TraceStore, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACE_SUMMARIES_ALLOWED_TEAM_IDS", "7,8,9")
    instance.add_dynamic_partitions(str(TEAMS.name), ["7", "8"])  # team 9 is not registered yet
    tick = datetime(2026, 11, 21, 1, 30, tzinfo=UTC)
    result = evaluate(daily_trace_clusters_schedule, instance, store, tick)
    assert [(r.run_key, r.partition_key) for r in result] == [
        ("2026-11-20|7", "2026-11-20|7"),
        ("2026-11-20|8", "2026-11-20|8"),
    ]
    assert daily_trace_clusters_schedule.job_name == "trace_clusters_job"


@pytest.mark.parametrize("store", ["chdb"], indirect=True)
def test_with_an_endpoint_each_cluster_is_named_by_one_call_and_a_failed_call_keeps_the_offline_name(
    store: TraceStore, instance: dg.DagsterInstance
) -> None:
    write_scenarios(store, SCENARIOS, day=DAY)
    with openai_server() as server:
        answer = {"title": "Customers asking for refunds", "description": "Orders that arrived broken."}
        # Rules on the group's own first line (as the JSON body spells it): other clusters' prompts list
        # these titles as contrast.
        named = [Fault.with_content(json.dumps(answer))]
        server.add_fault_rule(r"Traces in the group:\n- Refund for a broken order", named, repeat=True)
        server.add_fault_rule(
            r"Traces in the group:\n- Revenue by country", [Fault.server_error(500)], repeat=True
        )
        llm = LLMResource(base_url=server.base_url, model="namer", max_attempts=1)
        result = materialize(store, instance, DAY, llm=llm)
        requests = server.chat_requests()
    assert result.success
    clusters = by_scenario(cluster_events(store)[0][2]["$ai_clusters"])
    # One prompt per real cluster (asked again once if the answer was unusable, as real models' can be).
    assert len({request.body["messages"][1]["content"] for request in requests}) == 3
    first = requests[0].body
    assert first["response_format"]["json_schema"]["strict"] is True
    assert "not in the group" in first["messages"][1]["content"]  # nearest non-members, for contrast
    assert (clusters["refund"]["title"], clusters["refund"]["description"]) == (
        answer["title"],
        answer["description"],
    )
    assert "revenue" in clusters["sql"]["title"].lower()  # the failed call: the offline name
    shown = metadata(result)
    assert shown["naming"] == "llm: 2 of 3 clusters named"
    assert shown["naming_tokens"] > 0


@pytest.mark.parametrize("store", ["chdb"], indirect=True)
def test_a_real_local_model_names_the_clusters(
    store: TraceStore, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    """SmolLM2 on llama.cpp's server, as `make dev LLM=local` runs it: every cluster gets a usable name from
    the model (valid JSON under the grammar, a non-empty title), and the calls are counted in tokens."""
    write_scenarios(store, SCENARIOS, day=DAY)
    with running_llama_server("smollm2", log_path=tmp_path / "llama-server.log") as server:
        llm = LLMResource(base_url=server.base_url, model=server.model)
        result = materialize(store, instance, DAY, llm=llm)
    assert result.success
    shown = metadata(result)
    assert shown["naming"] == "llm: 3 of 3 clusters named", shown
    assert shown["naming_tokens"] > 0
    titles = [c["title"] for c in cluster_events(store)[0][2]["$ai_clusters"] if c["label"] != -1]
    assert len(titles) == 3 and all(0 < len(title) <= 160 for title in titles), titles
