"""`make dev` end to end: seeds, registers teams and serves the Dagster UI with the asset graph."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from trace_summaries.store import TraceStore
from trace_summaries_harness.dagster_stack import (
    LAUNCH_RUN_MUTATION,
    LOCATION,
    REPOSITORY,
    RUN_DONE,
    RUNS_QUERY,
)
from trace_summaries_harness.ports import free_port, wait_until
from trace_summaries_tests.support.environment import base

PROJECT = Path(__file__).parents[1]
DEMO_START = (datetime.now(UTC) - timedelta(hours=3)).strftime("%Y-%m-%dT%H:00")
ASSETS_QUERY = """
{ assetNodes { assetKey { path } partitionKeysByDimension { name partitionKeys } } }
"""


def make(target: str, data: Path, port: int, **extra: str) -> list[str]:
    args = {
        "VENV": sys.prefix,
        "DATA": str(data),
        "PORT": str(port),
        "DEMO_TEAMS": "3",
        "DEMO_HOURS": "2",
        "DEMO_TRACES_PER_HOUR": "12",
        # A fixed range: "the last hours" would move if the clock crossed an hour between the two seeds.
        "DEMO_START": DEMO_START,
        "KAFKA_PORT": str(free_port()),
        **extra,
    }
    return [
        "make",
        "--no-print-directory",
        "-C",
        str(PROJECT),
        target,
        *(f"{k}={v}" for k, v in args.items()),
    ]


def demo_event_count(data: Path) -> int:
    with TraceStore(f"chdb://{data / 'clickhouse'}").session() as client:
        return int(client.command("SELECT count() FROM events"))


@pytest.fixture
def make_dev(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    data, port = tmp_path / "data", free_port()
    # Without a start date of its own: `make dev` writes one on its first run.
    env = {
        k: v
        for k, v in base().items()
        if not k.startswith(("DAGSTER_HOME", "TRACE_SUMMARIES_DATA", "TRACE_SUMMARIES_START_DATE"))
    }
    env.pop("TRACE_SUMMARIES_CLICKHOUSE_DSN", None)
    log_path = tmp_path / "make-dev.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        make("dev", data, port), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            assert process.poll() is None, f"make dev exited with {process.returncode}"
            return requests.get(f"{url}/server_info", timeout=2).ok

        wait_until(up, timeout_s=240, what="dagster dev", log=lambda: log_path.read_text()[-4000:])
        yield url, data
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
        if process.returncode not in (0, -signal.SIGTERM, -signal.SIGKILL, 143, 137):
            print((tmp_path / "make-dev.log").read_text()[-3000:])


@pytest.mark.slow
def test_make_dev_serves_the_asset_graph_with_team_partitions(make_dev: tuple[str, Path]) -> None:
    url, data = make_dev
    info = requests.get(f"{url}/server_info", timeout=5).json()
    assert "dagster_webserver_version" in info

    response = requests.post(f"{url}/graphql", json={"query": ASSETS_QUERY}, timeout=60)
    response.raise_for_status()
    nodes = {tuple(node["assetKey"]["path"]): node for node in response.json()["data"]["assetNodes"]}
    assert ("sampled_traces",) in nodes
    dimensions = {
        d["name"]: d["partitionKeys"] for d in nodes[("sampled_traces",)]["partitionKeysByDimension"]
    }
    assert dimensions["team"] == ["1", "2", "3"]
    # The hour partitions start at the date `make dev` wrote on its first run, a week back, and stay there.
    start_date = (data / "start_date").read_text().strip()
    week_ago = {(datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%d") for days in (7, 8)}
    assert start_date in week_ago  # 8: the clock may cross midnight during the test
    assert dimensions["hour"][0] == f"{start_date}-00:00"
    target = str(data / "start_date")
    again = subprocess.run(make(target, data, 0), capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and (data / "start_date").read_text().strip() == start_date

    seeded = demo_event_count(data)
    assert seeded > 0
    # A second `make dev` seeds the same demo data again: nothing may be duplicated.
    rerun = subprocess.run(make("seed", data, 0), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert demo_event_count(data) == seeded

    # Materializing partitions, as the UI's launchpad does, ends in `document_embeddings` with no key: the
    # worker `make dev` started beside the UI embeds with the local model.
    hours = [datetime.fromisoformat(DEMO_START).replace(tzinfo=UTC) + timedelta(hours=h) for h in range(2)]
    run_ids = [
        launch_run(url, "trace_summaries_job", {"dagster/partition": f"{hour:%Y-%m-%d-%H:%M}|1"})
        for hour in hours
    ]
    wait_until(
        lambda: all(run_status(url, run_id) in RUN_DONE for run_id in run_ids),
        timeout_s=300,
        what="the materializations",
        interval_s=1.0,
    )
    assert [run_status(url, run_id) for run_id in run_ids] == ["SUCCESS", "SUCCESS"]
    summarized = summary_count(data)
    assert summarized >= 20  # enough for clusters
    worker_log = data / "embedding-worker.log"
    wait_until(
        lambda: embedded_documents(data) == summarized,
        timeout_s=240,
        what="embeddings from the make dev worker",
        interval_s=1.0,
        log=worker_log.read_text,
    )
    search = subprocess.run(
        [
            str(Path(sys.prefix) / "bin" / "trace-summaries"),
            "search",
            "--team",
            "1",
            "--json",
            "a user request",
        ],
        env={**base(), "TRACE_SUMMARIES_CLICKHOUSE_DSN": f"chdb://{data / 'clickhouse'}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert search.returncode == 0, search.stderr[-2000:]
    hits = json.loads(search.stdout)
    assert hits and {hit["window_start"] for hit in hits} <= {hour.isoformat() for hour in hours}
    assert embedded_models(data) == {"multilingual-e5-small-384"}

    # A day of clusters, offline: the plot and the table with names in the materialization's metadata.
    day = hours[-1].date().isoformat()
    clusters_run = launch_run(url, "trace_clusters_job", {"dagster/partition": f"{day}|1"})
    wait_until(
        lambda: run_status(url, clusters_run) in RUN_DONE, timeout_s=300, what="the clusters", interval_s=1.0
    )
    assert run_status(url, clusters_run) == "SUCCESS"
    shown = latest_metadata(url, "trace_clusters")
    assert shown["plot"].startswith("![clusters](data:image/png;base64,")
    table = shown["table"].splitlines()
    assert table[0].startswith("| id | name | size |") and len(table) >= 3, shown["table"]
    names = [row.split("|")[2].strip() for row in table[2:]]
    assert all(names), table


def graphql(url: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(f"{url}/graphql", json={"query": query, "variables": variables}, timeout=60)
    response.raise_for_status()
    body = response.json()
    assert not body.get("errors"), body["errors"]
    return dict(body["data"])


def launch_run(url: str, job_name: str, tags: dict[str, str]) -> str:
    variables = {
        "executionParams": {
            "selector": {
                "repositoryLocationName": LOCATION,
                "repositoryName": REPOSITORY,
                "jobName": job_name,
            },
            "runConfigData": {},
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
        }
    }
    response = requests.post(
        f"{url}/graphql", json={"query": LAUNCH_RUN_MUTATION, "variables": variables}, timeout=60
    )
    response.raise_for_status()
    result = response.json()["data"]["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return str(result["run"]["runId"])


def run_status(url: str, run_id: str) -> str:
    response = requests.post(
        f"{url}/graphql", json={"query": RUNS_QUERY, "variables": {"ids": [run_id]}}, timeout=60
    )
    response.raise_for_status()
    [run] = response.json()["data"]["runsOrError"]["results"]
    return str(run["status"])


ASSET_METADATA_QUERY = """
query Latest($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset {
      assetMaterializations(limit: 1) {
        metadataEntries { label ... on MarkdownMetadataEntry { mdStr } }
      }
    }
  }
}
"""


def latest_metadata(url: str, asset: str) -> dict[str, str]:
    """The Markdown metadata of the asset's latest materialization, as the UI shows it."""
    [materialization] = graphql(url, ASSET_METADATA_QUERY, {"path": [asset]})["assetOrError"][
        "assetMaterializations"
    ]
    return {
        entry["label"]: entry["mdStr"] for entry in materialization["metadataEntries"] if "mdStr" in entry
    }


def summary_count(data: Path) -> int:
    with TraceStore(f"chdb://{data / 'clickhouse'}").session() as client:
        return int(
            client.command("SELECT count() FROM events WHERE event = '$ai_trace_summary' AND team_id = 1")
        )


def embedded_documents(data: Path) -> int:
    with TraceStore(f"chdb://{data / 'clickhouse'}").session() as client:
        if not client.command("EXISTS TABLE document_embeddings"):
            return 0
        return int(client.command("SELECT count() FROM document_embeddings FINAL WHERE team_id = 1"))


def embedded_models(data: Path) -> set[str]:
    with TraceStore(f"chdb://{data / 'clickhouse'}").session() as client:
        return {
            row[0] for row in client.query("SELECT DISTINCT model_name FROM document_embeddings").result_rows
        }
