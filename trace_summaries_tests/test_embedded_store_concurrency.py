"""Several Dagster runs, each its own process, sharing one embedded chDB directory."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import dagster as dg

from trace_summaries.defs.io_managers import partition_object_name
from trace_summaries.store import TraceStore
from trace_summaries_harness.dagster_cli import PROJECT, materialize_command
from trace_summaries_tests.support import clock
from trace_summaries_tests.support.environment import child_env
from trace_summaries_tests.support.events import ai_event
from trace_summaries_tests.support.sample_files import sample_from_jsonl

HOUR = clock.HOUR
TEAMS = ["1", "2", "3"]


def test_three_team_partitions_run_at_once_on_one_embedded_store(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    home = tmp_path / "dagster_home"
    home.mkdir()
    store = TraceStore(f"chdb://{data_dir / 'clickhouse'}")
    store.insert_events(
        [
            ai_event(int(team), f"trace-{team}-{i}", HOUR + timedelta(minutes=i), index=j)
            for team in TEAMS
            for i in range(int(team) * 2)
            for j in range(3)
        ]
    )
    with dg.DagsterInstance.local_temp(str(home)) as instance:
        instance.add_dynamic_partitions("teams", TEAMS)

    env = child_env(DAGSTER_HOME=str(home), TRACE_SUMMARIES_DATA_DIR=str(data_dir))
    runs = [
        subprocess.Popen(
            materialize_command("sampled_traces", f"2026-11-20-09:00|{team}"),
            env=env,
            cwd=PROJECT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for team in TEAMS
    ]
    outputs = [run.communicate(timeout=240)[0] for run in runs]

    for run, output in zip(runs, outputs, strict=True):
        assert run.returncode == 0, output[-3000:]
        assert "RUN_SUCCESS" in output
    for team in TEAMS:
        path = data_dir / "intermediate" / partition_object_name("sampled_traces", f"2026-11-20-09:00|{team}")
        sample = sample_from_jsonl(path.read_bytes())
        assert sample.team_id == int(team)
        assert len(sample.traces) == int(team) * 2
        assert all(len(trace.events) == 3 for trace in sample.traces)
