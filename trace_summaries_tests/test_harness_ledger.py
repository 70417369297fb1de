"""Harness tests: the suite's own tooling (the reliability ledger's hooks, ``wait_until``), not the
product. They prove the tooling can fail: a lost row fails the run, a dead process fails a wait at once."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from trace_summaries_harness.ports import wait_until

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.harness

REPO_ROOT = Path(__file__).resolve().parent.parent

# A throwaway suite using the real conftest hooks (its own process: the ledger is per process).
CONFTEST = """
from trace_summaries_tests.conftest import (
    pytest_runtest_makereport, pytest_sessionfinish, pytest_terminal_summary,
)
"""
TESTS = """
from trace_summaries_tests.reliability.ledger import record

def test_passes_but_lost_a_row():
    record("fault", "lost one", tried=1, survived=0, lost=1, duplicates=0)

def test_recorded_then_failed():
    record("fault", "asserted after", tried=1, survived=1, lost=0, duplicates=0)
    assert False, "the run after the fault did not succeed"

def test_clean():
    record("bad_input", "clean", tried=2, survived=2, lost=0, duplicates=0, inputs=["a", "b"])
    record("bad_input", "clean", tried=2, survived=2, lost=0, duplicates=0, inputs=["b", "c"])
"""


def run_throwaway_suite(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tests: str
) -> pytest.RunResult:
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_throwaway=tests)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider")


def test_a_lost_row_fails_the_run_and_a_failed_test_survives_nothing(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_throwaway_suite(pytester, monkeypatch, TESTS)

    result.assert_outcomes(passed=2, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    output = result.stdout.str()
    # The row of the test that passed but lost something fails the run, by name.
    assert "FAILED fault 'lost one'" in output
    # fault: two tried, none survived (one lost a row, one failed after recording survived=1).
    assert any(line.split() == ["fault", "2", "0", "1", "0"] for line in result.stdout.lines), output
    # bad_input: the same input recorded twice counts once (a, b, c).
    assert any(line.split() == ["bad_input", "3", "3", "0", "0"] for line in result.stdout.lines), output
    assert "how observed:" in output


def test_a_clean_ledger_passes(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    tests = (
        TESTS.split("def test_passes_but_lost_a_row")[0] + "def test_clean" + TESTS.split("def test_clean")[1]
    )
    result = run_throwaway_suite(pytester, monkeypatch, tests)
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK


def test_a_process_that_dies_fails_the_wait_at_once_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", "import sys; print('bind: address already in use'); sys.exit(3)"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    process.wait(timeout=30)

    def up() -> bool:
        assert process.poll() is None, f"the service exited with {process.returncode}"
        return False

    started = time.monotonic()
    with pytest.raises(AssertionError, match="exited with 3") as raised:
        wait_until(up, timeout_s=120, what="the service", log=log.read_text)
    assert time.monotonic() - started < 5  # not after the 120 s timeout
    assert "address already in use" in "".join(raised.value.__notes__)


def test_a_service_not_up_yet_is_retried_until_the_timeout() -> None:
    def refused() -> bool:
        raise ConnectionRefusedError("nothing listens")

    with pytest.raises(TimeoutError, match="ConnectionRefusedError: nothing listens"):
        wait_until(refused, timeout_s=0.3, what="the service", interval_s=0.05)
