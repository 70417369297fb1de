"""Time partitions of any size (`TRACE_SUMMARIES_WINDOW_MINUTES`): keys, schedule, batch_run_id.

The partition set is declared when the code location loads, so a window size other than the suite's hour is
tried in processes of its own, as a deployment would load it: `dagster asset materialize` on a 30-minute
partition, with what it must write computed by SQL of its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from trace_summaries.config import ScheduleConfig, SettingError, load
from trace_summaries.demo import seed_store
from trace_summaries.partitions import TeamHour, window_containing, window_cron
from trace_summaries.scheduling.run_plan import last_complete_hour
from trace_summaries.store import TraceStore
from trace_summaries.write.event import batch_run_id
from trace_summaries_harness.dagster_cli import PROJECT, materialize_command
from trace_summaries_tests.support import clock
from trace_summaries_tests.support.environment import child_env
from trace_summaries_tests.support.expected_traces import expected_traces

TEAM = 1
HALF_HOUR = timedelta(minutes=30)


@pytest.mark.parametrize(
    ("minutes", "cron"),
    [
        (5, "0/5 * * * *"),
        (30, "15/30 * * * *"),
        (60, "15 * * * *"),
        (120, "15 */2 * * *"),
        (1440, "15 */24 * * *"),
    ],
)
def test_the_schedule_ticks_once_per_window_at_its_minute(minutes: int, cron: str) -> None:
    assert window_cron(minutes, 15) == cron


@pytest.mark.parametrize("minutes", ["45", "90", "7", "0", "2880"])
def test_a_window_no_cron_can_step_through_is_refused_naming_the_variable(minutes: str) -> None:
    with pytest.raises(SettingError, match="TRACE_SUMMARIES_WINDOW_MINUTES must be one of"):
        load(ScheduleConfig, environ={"TRACE_SUMMARIES_WINDOW_MINUTES": minutes})


def test_keys_windows_and_the_last_complete_window_follow_the_size() -> None:
    partition = TeamHour.parse(f"2026-11-20-09:30|{TEAM}", HALF_HOUR)
    assert (partition.window_start, partition.window_end) == (clock.hour(9) + HALF_HOUR, clock.hour(10))
    assert partition.key == f"2026-11-20-09:30|{TEAM}"
    assert window_containing(clock.hour(10) + timedelta(minutes=29), HALF_HOUR) == clock.hour(10)
    assert window_containing(clock.hour(10) + timedelta(minutes=44), HALF_HOUR) == clock.hour(10) + HALF_HOUR
    tick = clock.hour(10) + timedelta(minutes=15)
    assert last_complete_hour(tick, timedelta(0), HALF_HOUR) == clock.hour(9) + HALF_HOUR
    assert last_complete_hour(tick, timedelta(0)) == clock.hour(9)
    # The default hour keeps the original's batch_run_id; any other window names its end too.
    assert batch_run_id(TEAM, clock.hour(9), clock.hour(10)) == f"{TEAM}_2026-11-20T09:00:00+00:00"
    assert batch_run_id(TEAM, clock.hour(9), clock.hour(9) + HALF_HOUR) == (
        f"{TEAM}_2026-11-20T09:00:00+00:00_2026-11-20T09:30:00+00:00"
    )


@pytest.mark.slow
def test_with_30_minute_windows_a_run_of_one_window_writes_events_naming_it(tmp_path: Path) -> None:
    store = TraceStore(f"chdb://{tmp_path / 'clickhouse'}")
    seed_store(store, [TEAM], [clock.HOUR], 12, progress=False, oversized_fraction=0.0)
    start = clock.HOUR + HALF_HOUR
    wanted = {trace for _, _, trace in expected_traces(store, [TEAM], start, start + HALF_HOUR)}
    assert wanted
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = child_env(
        TRACE_SUMMARIES_WINDOW_MINUTES="30",
        DAGSTER_HOME=str(home),
        TRACE_SUMMARIES_CLICKHOUSE_DSN=store.dsn,
        TRACE_SUMMARIES_INTERMEDIATE_DIR=str(tmp_path / "intermediate"),
    )

    def run(command: list[str]) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(command, env=env, cwd=PROJECT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done

    shown = run(
        [
            sys.executable,
            "-c",
            "import json; from trace_summaries.defs.partition_sets import HOURS;"
            "from trace_summaries.defs.schedules import hourly_trace_summaries_schedule as s;"
            "print(json.dumps([HOURS.get_partition_keys()[:3], s.cron_schedule]))",
        ]
    )
    keys, cron = json.loads(shown.stdout.strip().splitlines()[-1])
    assert keys == ["2026-11-01-00:00", "2026-11-01-00:30", "2026-11-01-01:00"] and cron == "15/30 * * * *"

    run([str(Path(sys.executable).with_name("trace-summaries")), "register-teams", str(TEAM)])
    run(materialize_command("sampled_traces,trace_summaries", f"2026-11-20-09:30|{TEAM}"))

    with store.session() as client:
        rows = client.query(
            "SELECT JSONExtractString(properties, '$ai_trace_id'), JSONExtractString(properties,"
            " '$ai_batch_run_id'), timestamp FROM events WHERE event = '$ai_trace_summary'"
        ).result_rows
    assert {trace for trace, _, _ in rows} == wanted and len(rows) == len(wanted)
    assert {run_id for _, run_id, _ in rows} == {
        f"{TEAM}_2026-11-20T09:30:00+00:00_2026-11-20T10:00:00+00:00"
    }
    # A summary event is stamped with its window's end.
    assert {stamp.replace(tzinfo=UTC) for _, _, stamp in rows} == {datetime(2026, 11, 20, 10, tzinfo=UTC)}
