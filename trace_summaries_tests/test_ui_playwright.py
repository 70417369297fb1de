"""The Dagster UI itself, in headless Chromium: materialize one (hour, team) partition and watch it succeed.

This is the README's flow (Assets -> sampled_traces -> Materialize, pick an hour and a team, watch the run)
against the real webserver and daemon. It proves the asset page of a time x dynamic-teams asset works in the
browser: the partition dialog offers the registered teams, one hour and one team make a single run (not a
backfill), the daemon launches it from the queue, it succeeds, and it wrote that partition's sample.

Needs Debian's ``chromium`` (``apt-get install -y chromium``) and the ``playwright`` Python package (only the
package: ``playwright install`` downloads its own browsers and is not used). Without them the test skips
locally and fails under CI (``CI`` set), where their absence is a broken image.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import Any

import pytest

from trace_summaries.defs.io_managers import partition_object_name
from trace_summaries.demo import seed_store
from trace_summaries.store import TraceStore
from trace_summaries_harness.dagster_stack import Stack, dagster_stack
from trace_summaries_tests.support import clock
from trace_summaries_tests.support.sample_files import sample_from_jsonl

CHROMIUM = Path(os.environ.get("CHROMIUM_EXECUTABLE") or "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]
INSTALL = "apt-get install -y chromium && pip install playwright (never `playwright install`)"

HOUR = clock.HOUR
HOUR_KEY = clock.HOUR_KEY
TEAMS = ["1", "2"]
TEAM = "1"
TRACES_PER_HOUR = 2
UI_TIMEOUT_MS = 60_000  # one page interaction; the machine may be loaded by other suites
RUN_TIMEOUT_MS = 300_000  # queued, launched by the daemon, executed


def require_browser() -> None:
    missing = []
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright Python package")
    if not CHROMIUM.exists():
        missing.append(f"chromium at {CHROMIUM}")
    if not missing:
        return
    message = f"missing {' and '.join(missing)} (install: {INSTALL})"
    if os.environ.get("CI"):
        pytest.fail(message + "; CI must provide them")
    pytest.skip(message)


RUN_QUERY = """
query Run($id: ID!) {
  runOrError(runId: $id) { __typename ... on Run { runId status tags { key value } } }
}
"""


def run_by_id(stack: Stack, run_id: str) -> dict[str, Any]:
    run = stack.graphql(RUN_QUERY, {"id": run_id})["runOrError"]
    assert run["__typename"] == "Run", run
    return run


@pytest.mark.slow
def test_materialize_one_team_hour_from_the_asset_page_and_see_the_run_succeed(tmp_path: Path) -> None:
    require_browser()
    from playwright.sync_api import sync_playwright

    store = TraceStore(f"chdb://{tmp_path / 'data' / 'clickhouse'}")
    store.ensure_schema()
    teams = [int(team) for team in TEAMS]
    seed_store(store, teams, [HOUR], TRACES_PER_HOUR, progress=False, oversized_fraction=0.0)

    with dagster_stack(tmp_path) as stack, sync_playwright() as playwright:
        stack.add_dynamic_partitions("teams", TEAMS)
        # What "Skip" on the first-visit community dialog does, so the dialog never covers the page.
        stack.graphql("mutation { setNuxSeen }")
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(UI_TIMEOUT_MS)
        try:
            page.goto(f"{stack.url}/assets/sampled_traces", timeout=UI_TIMEOUT_MS)
            page.get_by_role("button", name="Materialize…").click()

            dialog = page.get_by_role("dialog")
            dialog.get_by_text("Launch runs to materialize sampled_traces").wait_for()
            hour = dialog.get_by_placeholder(re.compile(r"^ex: "))
            hour.fill(HOUR_KEY)
            hour.press("Enter")
            dialog.get_by_text("Select a partition or create one").click()
            # Each team is a checkbox menu item; its label is rendered twice (text + truncation tooltip).
            page.get_by_role("menuitem").filter(has_text=re.compile(rf"^({TEAM})(\1)?$")).click()
            page.keyboard.press("Escape")

            # One hour x one team: a single run, not a backfill.
            dialog.get_by_role("button", name="Launch 1 run", exact=True).click()
            toast = page.get_by_text(re.compile(r"^Launched run [0-9a-f]{8}$"))
            short_id = toast.inner_text().split()[-1]
            page.get_by_role("link", name="View", exact=True).click()
            page.wait_for_url(re.compile(rf"/runs/{short_id}[0-9a-f-]{{28}}$"))
            run_id = page.url.rsplit("/", 1)[-1]

            status = page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$")).first
            status.wait_for(timeout=RUN_TIMEOUT_MS)
            assert status.inner_text() == "Success", f"run {run_id} ended {status.inner_text()}"
            page.get_by_text(f"partition: {HOUR_KEY}|{TEAM}").first.wait_for()
        except BaseException:
            page.screenshot(path=str(tmp_path / "ui-failure.png"), full_page=True)
            print(f"screenshot of the page: {tmp_path / 'ui-failure.png'} ({page.url})")
            raise
        finally:
            browser.close()

        run = run_by_id(stack, run_id)
        tags = {tag["key"]: tag["value"] for tag in run["tags"]}
        assert run["status"] == "SUCCESS"
        assert tags["dagster/partition"] == f"{HOUR_KEY}|{TEAM}"
        assert tags.get("dagster/from_ui") == "true"
        assert "dagster/backfill" not in tags

    written = stack.data_dir / "intermediate" / partition_object_name("sampled_traces", f"{HOUR_KEY}|{TEAM}")
    sample = sample_from_jsonl(written.read_bytes())
    assert sample.team_id == int(TEAM)
    assert len(sample.traces) == TRACES_PER_HOUR
    other_team = stack.data_dir / "intermediate" / partition_object_name("sampled_traces", f"{HOUR_KEY}|2")
    assert not other_team.exists()  # only the chosen partition ran
