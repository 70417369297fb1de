"""The reliability ledger: what each reliability test tried, and what it cost.

Tests call ``record`` once per kind of fault or bad input they exercised; each call appends one JSON line to
the file named by ``TRACE_SUMMARIES_RELIABILITY_LEDGER`` (nothing happens when it is unset), and the table
printed at the end of ``make test`` sums them per category: tried, survived, lost (must be 0), duplicates
(must be 0). Appends are single ``write`` calls on an ``O_APPEND`` file, so concurrent test processes can
share one ledger.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LEDGER_ENV = "TRACE_SUMMARIES_RELIABILITY_LEDGER"


def ledger_path() -> Path | None:
    value = os.environ.get(LEDGER_ENV)
    return Path(value) if value else None


def record(
    category: str,
    name: str,
    *,
    tried: int = 1,
    survived: int | None = None,
    lost: int = 0,
    duplicates: int = 0,
) -> None:
    """One line: ``category`` ("fault", "bad_input", "security"), ``name`` (what was tried), ``tried``
    (how many instances), ``survived`` (default: all of them), ``lost`` events and ``duplicates`` seen."""
    path = ledger_path()
    if path is None:
        return
    if tried < 0 or lost < 0 or duplicates < 0:
        raise ValueError("tried, lost and duplicates are counts (>= 0)")
    entry: dict[str, Any] = {
        "category": category,
        "name": name,
        "tried": tried,
        "survived": tried if survived is None else survived,
        "lost": lost,
        "duplicates": duplicates,
        "test": os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0],
        "time": round(time.time(), 3),
    }
    line = (json.dumps(entry, sort_keys=True) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read(path: Path | None = None) -> Iterator[dict[str, Any]]:
    """Every entry of a ledger file (the default: the one in the environment), skipping torn lines."""
    path = path or ledger_path()
    if path is None or not path.exists():
        return
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            yield entry


def totals(entries: Iterator[dict[str, Any]] | list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per category: tried, survived, lost, duplicates, summed."""
    table: dict[str, dict[str, int]] = {}
    for entry in entries:
        row = table.setdefault(
            str(entry.get("category")), {"tried": 0, "survived": 0, "lost": 0, "duplicates": 0}
        )
        for field in row:
            row[field] += int(entry.get(field) or 0)
    return table
