"""Serialises use of an embedded chDB directory across threads and processes.

chDB lets one process at a time open a data directory ("Cannot lock file ... status"), while Dagster runs
every run in its own process. Rather than a long-lived connection per process, each unit of work opens a
short session under an exclusive ``flock``; opening a session costs ~40 ms, a small price next to an LLM call,
and it lets any number of runs share one store. A thread lock makes it safe within a process too, and the
lock is re-entrant so nested sessions reuse the open client.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

# chDB keeps one global engine per process, so sessions on *different* directories must not overlap in a
# process either: one process-wide lock, not one per directory.
_PROCESS_LOCK = threading.RLock()


class DirectoryLock:
    """Exclusive, re-entrant (per thread) lock on a data directory, held across processes via flock."""

    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir.parent / f".{data_dir.name}.lock"
        self._depth = 0
        self._fd: int | None = None

    def __enter__(self) -> bool:
        """Returns True when this is the outermost acquisition (the caller must open the session)."""
        _PROCESS_LOCK.acquire()
        self._depth += 1
        if self._depth == 1:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self._depth == 1

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        _PROCESS_LOCK.release()
