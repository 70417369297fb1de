"""The environment the suite runs in: the shell's, minus every setting of ours or of a service we talk to,
plus what the tests need, set outright.

A shell with ``TRACE_SUMMARIES_START_DATE``, ``TRACE_SUMMARIES_LLM_MAX_ATTEMPTS``, a sharded schedule mode,
``OPENAI_API_KEY``, ``KAFKA_*`` or ``AWS_*`` exported must not bend a test, nor send a test's intermediates
to a real bucket: the suite clears those prefixes before anything of ours is imported (the partition set is
declared at import) and an autouse, session-scoped fixture keeps it so for the session. Subprocesses get
``child_env()``: that clean base and the test's own additions.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from trace_summaries_tests.support.clock import PARTITIONS_START

CLEARED_PREFIXES = ("TRACE_SUMMARIES_", "OPENAI_", "KAFKA_", "AWS_", "DAGSTER_HOME")
# Where nothing of a test may go by default: the developer's `.data` (the Makefile exports both).
_SCRATCH = Path(tempfile.gettempdir())


def pinned(scratch: Path) -> dict[str, str]:
    """What every test process runs with: the pinned partition start, and a data dir and Dagster home of
    the session's own (the Makefile points both at the developer's `.data`)."""
    home = scratch / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return {
        "TRACE_SUMMARIES_START_DATE": PARTITIONS_START.isoformat(),
        "TRACE_SUMMARIES_DATA_DIR": str(scratch / "data"),
        "DAGSTER_HOME": str(home),
    }


def cleared(environ: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in environ.items() if not name.startswith(CLEARED_PREFIXES)}


_base: dict[str, str] | None = None


def apply(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Makes ``environ`` the clean base (once per process; again, it restores the same base); returns what
    it was before."""
    global _base
    before = dict(environ)
    if _base is None:
        _base = cleared(environ) | pinned(Path(tempfile.mkdtemp(prefix="ts-tests-env-", dir=_SCRATCH)))
    environ.clear()
    environ.update(_base)
    return before


def base() -> dict[str, str]:
    assert _base is not None, "environment.apply() runs in the suite's conftest"
    return dict(_base)


def child_env(overrides: Mapping[str, str] | None = None, **more: str) -> dict[str, str]:
    """The environment of a process a test starts: the clean base, then the test's settings."""
    return base() | dict(overrides or {}) | more
