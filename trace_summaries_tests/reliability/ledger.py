"""The reliability ledger: what each reliability test tried, and what it observed.

A test calls ``record`` once it has *observed* its figures (rows read back from the store, messages read to
the topic's high watermark, the run's status, the places a secret was searched for): every count is an
argument, none has a default. ``record`` only holds the row for the running test; the conftest's
``pytest_runtest_makereport`` hook commits it with the test's outcome, so a test that fails after recording
(or between two records) counts as not survived whatever it recorded, and a test never commits a row before
its assertions ran. Several records of one name in one test (Hypothesis examples) merge: ``tried`` counts
distinct inputs when the test passes ``inputs``.

The table printed at the end of ``make test`` sums the committed rows per category and says, per category,
how its figures were observed (``HOW_OBSERVED``). Any row with ``lost`` or ``duplicates`` above 0 fails the
test run (``pytest_sessionfinish``). The ledger lives in the pytest process (one fresh ledger per run) and is
also written, for reading after the run, to ``reliability-ledger.jsonl`` in the run's base temp directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

CATEGORIES = ("fault", "bad_input", "security")

HOW_OBSERVED = {
    "fault": (
        "one per fault scenario; survived = the run after the fault succeeded, the events table holds "
        "exactly the expected summaries (uuids from SQL over the raw events) and, where Kafka is in the "
        "scenario, the topic read to its high watermark holds each expected key exactly as often as the "
        "successful runs sent it; lost/duplicates counted in those rows and messages"
    ),
    "bad_input": (
        "bad rows fed through a partition (not parser unit checks); tried = distinct bad rows, survived = "
        "rows whose partition kept every good trace and stored each summary once, read back from the store; "
        "lost = good traces without a stored summary, duplicates = summaries stored more than once"
    ),
    "security": (
        "what could leak, each searched for everywhere it must not be: secret forms in run logs, errors, "
        "files, stored rows and a process's output; PII values in LLM requests; foreign rows and team ids "
        "in SQL parameters, samples, written events and prompts; input values formatted into SQL "
        "statements; survived = those found nowhere"
    ),
}


@dataclass
class Row:
    category: str
    name: str
    tried: int
    survived: int
    lost: int
    duplicates: int
    test: str = ""
    outcome: str = ""  # passed, failed, skipped: set when the hook commits the row
    inputs: set[Hashable] = field(default_factory=set)

    def as_json(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "name": self.name,
            "tried": self.tried,
            "survived": self.survived,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "test": self.test,
            "outcome": self.outcome,
        }


# Rows recorded by the running test, not yet committed; and the committed rows of this run.
_pending: dict[tuple[str, str], Row] = {}
_committed: list[Row] = []


def record(
    category: str,
    name: str,
    *,
    tried: int,
    survived: int,
    lost: int,
    duplicates: int,
    inputs: Iterable[Hashable] | None = None,
) -> None:
    """One observed row for the running test: ``tried`` instances, of which ``survived`` came through
    whole, ``lost`` items that should exist and do not, ``duplicates`` that exist more than once.

    ``inputs`` (optional): the distinct inputs behind ``tried``; a name recorded again in the same test
    (Hypothesis examples, shrinking) then counts each input once, however often it was generated.
    """
    if category not in CATEGORIES:
        raise ValueError(f"unknown ledger category {category!r} (one of {CATEGORIES})")
    if min(tried, survived, lost, duplicates) < 0:
        raise ValueError(f"{name}: counts are >= 0 (tried={tried} survived={survived} lost={lost})")
    if survived > tried:
        raise ValueError(f"{name}: survived ({survived}) is more than tried ({tried})")
    if survived and (lost or duplicates):
        raise ValueError(f"{name}: nothing survived that lost or duplicated something; pass survived=0")
    new = Row(category, name, tried, survived, lost, duplicates, inputs=set(inputs or ()))
    key = (category, name)
    old = _pending.get(key)
    if old is None:
        _pending[key] = new
        return
    if new.inputs:
        # Only inputs not seen before in this test add to tried (and survived, when nothing went wrong).
        fresh = len(new.inputs - old.inputs)
        ok = new.survived == new.tried
        old.inputs |= new.inputs
        new = replace(new, tried=fresh, survived=fresh if ok else 0)
    old.tried += new.tried
    old.survived += new.survived
    old.lost += new.lost
    old.duplicates += new.duplicates


def commit(test: str, outcome: str) -> list[Row]:
    """The hook's side: the running test's rows, committed with its outcome; a failed test survives none."""
    rows = list(_pending.values())
    _pending.clear()
    for row in rows:
        row.test, row.outcome = test, outcome
        if outcome != "passed":
            row.survived = 0
        _committed.append(row)
    return rows


def discard() -> None:
    """Rows of a test that never reached its call phase (a setup error) are not observations."""
    _pending.clear()


def committed() -> list[Row]:
    return list(_committed)


def totals(rows: Iterable[Row]) -> dict[str, dict[str, int]]:
    """Per category: tried, survived, lost, duplicates, summed."""
    table: dict[str, dict[str, int]] = {}
    for row in rows:
        sums = table.setdefault(row.category, {"tried": 0, "survived": 0, "lost": 0, "duplicates": 0})
        sums["tried"] += row.tried
        sums["survived"] += row.survived
        sums["lost"] += row.lost
        sums["duplicates"] += row.duplicates
    return table


def failures(rows: Iterable[Row]) -> list[Row]:
    """Rows that break the promise whatever their test said: something lost or duplicated."""
    return [row for row in rows if row.lost or row.duplicates]


def table_lines(rows: list[Row]) -> list[str]:
    """The table printed at the end of the run, with how each category's figures were observed."""
    table = totals(rows)
    lines = [f"{'category':<12} {'tried':>7} {'survived':>9} {'lost':>6} {'duplicates':>11}"]
    for category, sums in sorted(table.items()):
        figures = f"{sums['tried']:>7} {sums['survived']:>9} {sums['lost']:>6} {sums['duplicates']:>11}"
        lines.append(f"{category:<12} {figures}")
    lines.append("how observed:")
    lines += [f"  {category}: {HOW_OBSERVED[category]}" for category in sorted(table)]
    for row in failures(rows):
        lines.append(
            f"FAILED {row.category} {row.name!r} ({row.test}): lost {row.lost}, duplicates {row.duplicates}"
        )
    return lines


def write(rows: list[Row], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row.as_json(), sort_keys=True) + "\n" for row in rows))


def current_test() -> str:
    return os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]
