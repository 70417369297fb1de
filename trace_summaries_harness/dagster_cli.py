"""The `dagster` command line as users run it, for tests that need a run in its own process."""

from __future__ import annotations

import sys
from pathlib import Path

PROJECT = Path(__file__).parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))


def materialize_command(select: str, partition: str) -> list[str]:
    """``dagster asset materialize`` for one partition of the project's definitions (run from PROJECT)."""
    return [
        DAGSTER, "asset", "materialize", "-m", "trace_summaries.definitions",
        "--select", select, "--partition", partition,
    ]  # fmt: skip
