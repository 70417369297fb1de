"""The parameters of scheduled runs: TRACE_SUMMARIES_MAX_TRACES, TRACE_SUMMARIES_SUMMARY_MODES and the
per-team overrides file, as the run config of every run the hourly schedule requests (evaluated against a
real on-disk instance and store), and what a bad overrides file does at load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from trace_summaries.config import SettingError
from trace_summaries.defs.partition_sets import TEAMS
from trace_summaries.defs.schedules import MODE_TAG
from trace_summaries.demo import seed_store
from trace_summaries.scheduling.team_overrides import load_team_overrides
from trace_summaries.store import TraceStore
from trace_summaries_tests.support import clock
from trace_summaries_tests.support.pipeline_defs import pipeline_definitions
from trace_summaries_tests.support.schedule_ticks import tick
from trace_summaries_tests.test_configuration import load_definitions

HOUR_KEY = clock.HOUR_KEY
TICK = clock.TICK


def run_config(mode: str, max_traces: int, model: str, batch_size: int = 5) -> dict[str, Any]:
    return {
        "ops": {
            "sampled_traces": {"config": {"max_traces": max_traces}},
            "trace_summaries": {"config": {"mode": mode, "model": model, "batch_size": batch_size}},
        }
    }


def scope(request: dg.RunRequest) -> str:
    if request.partition_key:
        return str(request.partition_key)
    tags = request.tags
    return f"{tags['dagster/asset_partition_range_start']}...{tags['dagster/asset_partition_range_end']}"


@pytest.fixture
def embedded(tmp_path: Path) -> TraceStore:
    store = TraceStore(f"chdb://{tmp_path / 'clickhouse'}")
    store.ensure_schema()
    return store


def test_every_scheduled_run_carries_max_traces_mode_and_model_with_a_run_per_mode_and_team_overrides(
    embedded: TraceStore, instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text("2:\n  max_traces: 7\n  modes: [minimal]\n  model: big-model\n")
    instance.add_dynamic_partitions(TEAMS.name, ["1", "2", "3"])
    monkeypatch.setenv("TRACE_SUMMARIES_ALLOWED_TEAM_IDS", "1,2,3")
    monkeypatch.setenv("TRACE_SUMMARIES_MAX_TRACES", "40")
    monkeypatch.setenv("TRACE_SUMMARIES_SUMMARY_MODES", "minimal,detailed")
    monkeypatch.setenv("TRACE_SUMMARIES_LLM_MODEL", "small-model")
    monkeypatch.setenv("TRACE_SUMMARIES_TEAM_OVERRIDES", str(overrides))

    requests = tick(instance, embedded)

    got = [(scope(r), r.run_key, r.tags[MODE_TAG], r.run_config) for r in requests]
    assert got == [
        (f"{HOUR_KEY}|1", f"{HOUR_KEY}|1:minimal", "minimal", run_config("minimal", 40, "small-model")),
        (f"{HOUR_KEY}|2", f"{HOUR_KEY}|2:minimal", "minimal", run_config("minimal", 7, "big-model")),
        (f"{HOUR_KEY}|3", f"{HOUR_KEY}|3:minimal", "minimal", run_config("minimal", 40, "small-model")),
        # Team 2 asked for minimal only.
        (f"{HOUR_KEY}|1", f"{HOUR_KEY}|1:detailed", "detailed", run_config("detailed", 40, "small-model")),
        (f"{HOUR_KEY}|3", f"{HOUR_KEY}|3:detailed", "detailed", run_config("detailed", 40, "small-model")),
    ]
    assert len({r.run_key for r in requests}) == len(requests)
    assert tick(instance, embedded) == requests  # the same tick again: the same run keys


def test_a_sharded_tick_gives_a_team_with_different_overrides_its_own_run_and_cuts_the_shards_around_it(
    embedded: TraceStore, instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = tmp_path / "overrides.json"
    # Team 3 differs (max traces); team 5 names the default modes and model again: it stays in its shard.
    overrides.write_text(
        json.dumps({"3": {"max_traces": 7}, "5": {"modes": ["detailed"], "model": "gpt-4.1-nano"}})
    )
    instance.add_dynamic_partitions(TEAMS.name, ["1", "2", "3", "4", "5"])
    monkeypatch.setenv("TRACE_SUMMARIES_ALLOWED_TEAM_IDS", "1,2,3,4,5")
    monkeypatch.setenv("TRACE_SUMMARIES_SCHEDULE_MODE", "sharded")
    monkeypatch.setenv("TRACE_SUMMARIES_SHARD_SIZE", "10")
    monkeypatch.setenv("TRACE_SUMMARIES_TEAM_OVERRIDES", str(overrides))

    requests = tick(instance, embedded)

    default = run_config("detailed", 100, "gpt-4.1-nano")
    assert [(scope(r), r.run_key, r.run_config) for r in requests] == [
        (f"{HOUR_KEY}|1...{HOUR_KEY}|2", f"{HOUR_KEY}|1...2:detailed", default),
        (f"{HOUR_KEY}|3", f"{HOUR_KEY}|3:detailed", run_config("detailed", 7, "gpt-4.1-nano")),
        (f"{HOUR_KEY}|4...{HOUR_KEY}|5", f"{HOUR_KEY}|4...5:detailed", default),
    ]


def test_a_scheduled_run_executes_with_its_run_config_and_keeps_it_on_the_run(
    embedded: TraceStore, instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_store(embedded, [4], [clock.HOUR], 6, progress=False, oversized_fraction=0.0)
    instance.add_dynamic_partitions(TEAMS.name, ["4"])
    monkeypatch.setenv("TRACE_SUMMARIES_ALLOWED_TEAM_IDS", "4")
    monkeypatch.setenv("TRACE_SUMMARIES_MAX_TRACES", "3")
    monkeypatch.setenv("TRACE_SUMMARIES_SUMMARY_MODES", "minimal")
    [request] = tick(instance, embedded)
    job = pipeline_definitions(embedded, tmp_path).resolve_job_def("trace_summaries_job")

    result = job.execute_in_process(
        instance=instance,
        partition_key=request.partition_key,
        run_config=request.run_config,
        tags=request.tags,
    )

    assert result.success
    run = instance.get_run_by_id(result.run_id)
    assert run is not None and run.run_config == request.run_config  # what the UI's config view shows
    with embedded.session() as client:
        rows = client.query(
            "SELECT JSONExtractString(properties, '$ai_summary_mode'), count() FROM events"
            " WHERE event = '$ai_trace_summary' GROUP BY 1"
        ).result_rows
    assert rows == [("minimal", 3)]  # three of the six traces, summarized in minimal mode


BAD_OVERRIDES = [
    pytest.param("overrides.yaml", "12:\n  max_traces: 0\n", "team 12: max_traces", id="max-traces-zero"),
    pytest.param("overrides.yaml", "7:\n  modes: [short]\n", "team 7: modes", id="unknown-mode"),
    pytest.param("overrides.yaml", "9:\n  max_trace: 10\n", "team 9: max_trace", id="misspelled-field"),
    pytest.param("overrides.yaml", "8:\n  model: ''\n", "team 8: model", id="empty-model"),
    pytest.param("overrides.yaml", "team-a:\n  max_traces: 5\n", "team 'team-a'", id="team-not-an-id"),
    pytest.param("overrides.json", '{"5": {"max_traces": "many"}}', "team 5: max_traces", id="json-type"),
    pytest.param("overrides.json", '{"5": ', "not valid JSON", id="json-syntax"),
    pytest.param("overrides.yaml", "- 5\n", "expected a mapping", id="not-a-mapping"),
]


@pytest.mark.parametrize(("name", "content", "expected"), BAD_OVERRIDES)
def test_a_bad_overrides_file_is_refused_naming_the_team(
    tmp_path: Path, name: str, content: str, expected: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(SettingError) as error:
        load_team_overrides(path)
    message = str(error.value)
    assert "TRACE_SUMMARIES_TEAM_OVERRIDES" in message and str(path) in message
    assert expected in message, message


def test_a_bad_overrides_file_fails_loading_the_code_location(tmp_path: Path) -> None:
    path = tmp_path / "overrides.yaml"
    path.write_text("1:\n  max_traces: 10\n12:\n  max_traces: -3\n")

    result = load_definitions(tmp_path, {"TRACE_SUMMARIES_TEAM_OVERRIDES": str(path)})

    assert result.returncode != 0, "loaded despite a bad overrides file"
    errors = [line for line in result.stderr.splitlines() if "SettingError" in line]
    assert errors and "team 12: max_traces" in errors[-1], result.stderr[-3000:]


def test_a_missing_overrides_file_or_bad_modes_fail_naming_the_variable(tmp_path: Path) -> None:
    result = load_definitions(
        tmp_path,
        {
            "TRACE_SUMMARIES_TEAM_OVERRIDES": str(tmp_path / "absent.yaml"),
            "TRACE_SUMMARIES_SUMMARY_MODES": "detailed,short",
        },
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "SettingError" in line]
    assert errors and "TRACE_SUMMARIES_TEAM_OVERRIDES" in errors[-1], result.stderr[-3000:]
    assert "TRACE_SUMMARIES_SUMMARY_MODES" in errors[-1]
