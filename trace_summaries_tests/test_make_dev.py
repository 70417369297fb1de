"""`make dev` end to end: seeds, registers teams and serves the Dagster UI with the asset graph."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from trace_summaries.store import TraceStore
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
        "DEMO_TRACES_PER_HOUR": "4",
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
