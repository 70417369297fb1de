"""A real PostgreSQL for tests of Dagster's run, event-log and schedule storage, on a free loopback port.

Production Dagster keeps its instance in PostgreSQL, and its storage layer (SQLAlchemy 2.1, alembic
migrations, dagster-postgres) only shows its problems against the real server: the sqlite instance of the
unit tests hides them. Debian's PostgreSQL 15 binaries run here without systemd: ``initdb`` and ``pg_ctl``
from ``/usr/lib/postgresql/15/bin``. PostgreSQL refuses to run as root, so when the tests run as root the
server runs as the ``postgres`` OS user, in a fresh directory under the system temp dir (pytest's own tmp
dirs are ``0700 root`` and not traversable by that user). Password authentication over TCP, so DSNs carry a
password exactly as in production; the local socket (in the same temp dir) trusts the OS user.

The generated ``dagster.yaml`` sets ``scheme: postgresql+psycopg2``: SQLAlchemy 2.1 maps a bare
``postgresql://`` to psycopg 3, which dagster-postgres does not install.

Missing binaries skip the test locally but fail it under CI (``CI`` set): a CI image without PostgreSQL is a
broken image, not a reason to go green. CI needs ``apt-get install -y postgresql`` (Debian 12: version 15).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from trace_summaries_harness.ports import PortTaken, address_in_use, start_on_free_port, wait_until

_PG_ROOT = Path("/usr/lib/postgresql")
_PREFERRED_MAJOR = "15"
_OS_USER = "postgres"
APT_INSTALL = "apt-get update && apt-get install -y postgresql"


@dataclass(frozen=True)
class PostgresInfo:
    """How to reach the test database; ``dagster_yaml`` is a complete instance config for it."""

    host: str
    port: int
    user: str
    password: str
    database: str
    data_dir: Path
    log_path: Path

    @property
    def dsn(self) -> str:
        """A libpq URI (psycopg2.connect accepts it)."""
        return (
            f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@{self.host}:{self.port}/{quote(self.database, safe='')}"
        )

    @property
    def sqlalchemy_url(self) -> str:
        """The SQLAlchemy URL with the driver pinned (see the module docstring)."""
        return self.dsn.replace("postgresql://", "postgresql+psycopg2://", 1)

    def connect_kwargs(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "dbname": self.database,
        }

    def instance_env(self, home: Path) -> dict[str, str]:
        """What deploy/dagster.yaml reads: ``DAGSTER_HOME`` and the ``DAGSTER_PG_*`` credentials."""
        return {
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_USERNAME": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_DB": self.database,
            "DAGSTER_PG_PORT": str(self.port),
        }

    @property
    def dagster_yaml(self) -> str:
        """``storage: postgres:`` for runs, event logs and schedules; values JSON-quoted (valid YAML)."""
        return (
            "storage:\n"
            "  postgres:\n"
            "    postgres_db:\n"
            f"      username: {json.dumps(self.user)}\n"
            f"      password: {json.dumps(self.password)}\n"
            f"      hostname: {json.dumps(self.host)}\n"
            f"      db_name: {json.dumps(self.database)}\n"
            f"      port: {self.port}\n"
            "      scheme: postgresql+psycopg2\n"
        )


def postgres_bin_dir() -> Path | None:
    """``POSTGRES_BIN_DIR`` if set, else Debian's version 15 directory, else the newest one installed."""
    if override := os.environ.get("POSTGRES_BIN_DIR"):
        return Path(override) if (Path(override) / "initdb").exists() else None
    candidates = [_PG_ROOT / _PREFERRED_MAJOR / "bin"]
    if _PG_ROOT.is_dir():
        majors = sorted((p for p in _PG_ROOT.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        candidates += [p / "bin" for p in reversed(majors)]
    return next((c for c in candidates if (c / "initdb").exists() and (c / "pg_ctl").exists()), None)


def require_postgres_bin_dir() -> Path:
    """The binaries, or a skip (locally) / a hard failure (under CI) saying how to install them."""
    bin_dir = postgres_bin_dir()
    if bin_dir is not None:
        return bin_dir
    message = f"PostgreSQL server binaries not found under {_PG_ROOT} (install: {APT_INSTALL})"
    if os.environ.get("CI"):
        raise RuntimeError(message + "; CI must provide them")
    pytest.skip(message)


class _PostgresProcess:
    """initdb/pg_ctl invocations, as the ``postgres`` OS user when we are root."""

    def __init__(self, bin_dir: Path, base: Path) -> None:
        self.bin_dir = bin_dir
        self.base = base
        self.data_dir = base / "data"
        self.log_path = base / "postgres.log"
        self._as_other_user = os.geteuid() == 0
        if self._as_other_user:
            entry = pwd.getpwnam(_OS_USER)  # KeyError here means the postgresql package is half-installed
            self._uid, self._gid = entry.pw_uid, entry.pw_gid
            os.chown(base, self._uid, self._gid)
        base.chmod(0o700)

    def own(self, path: Path) -> None:
        if self._as_other_user:
            os.chown(path, self._uid, self._gid)

    def run(self, *args: str, timeout_s: float = 60.0) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        user_args: dict[str, Any] = (
            {"user": self._uid, "group": self._gid, "extra_groups": []} if self._as_other_user else {}
        )
        result = subprocess.run(
            command,
            cwd=self.base,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"},
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            **user_args,
        )
        if result.returncode != 0:
            log = self.log_path.read_text() if self.log_path.exists() else ""
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n{log}"
            )

    def stop(self) -> None:
        """Fast shutdown, immediate if that fails; a cluster that is not running is already stopped."""
        for mode in ("fast", "immediate"):
            try:
                self.run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "30")
                return
            except (RuntimeError, subprocess.TimeoutExpired):
                if not (self.data_dir / "postmaster.pid").exists():
                    return
        raise RuntimeError(f"PostgreSQL in {self.data_dir} did not stop; see {self.log_path}")


def _start_server(process: _PostgresProcess, port: int) -> int:
    """``pg_ctl start`` on ``port``; ``PortTaken`` if the server could not bind it (another process took it
    after ``free_port``: PostgreSQL logs ``Address already in use`` and exits, and ``pg_ctl -w`` fails)."""
    server_options = " ".join(
        [
            "-c listen_addresses=127.0.0.1",
            f"-c port={port}",
            f"-c unix_socket_directories={process.base}",
            "-c fsync=off",
            "-c synchronous_commit=off",
            "-c full_page_writes=off",
        ]
    )
    logged = process.log_path.stat().st_size if process.log_path.exists() else 0
    try:
        process.run(
            "pg_ctl", "start", "-D", str(process.data_dir), "-l", str(process.log_path),
            "-o", server_options, "-w", "-t", "60",
        )  # fmt: skip
    except RuntimeError as error:
        attempt_log = ""
        with contextlib.suppress(FileNotFoundError), process.log_path.open("rb") as log:
            log.seek(logged)  # this attempt's part of the log only
            attempt_log = log.read().decode(errors="replace")
        if address_in_use(attempt_log):
            raise PortTaken(f"PostgreSQL on 127.0.0.1:{port}: {attempt_log.strip()}") from error
        raise
    return port


def _can_connect(psycopg2: Any, **kwargs: Any) -> bool:
    psycopg2.connect(connect_timeout=2, **kwargs).close()
    return True


@contextmanager
def postgres_server(
    database: str = "dagster", user: str = "dagster", parent_dir: Path | None = None
) -> Iterator[PostgresInfo]:
    """A fresh PostgreSQL cluster with one database owned by a password-authenticated role.

    Stopped (fast shutdown, immediate if that hangs) and deleted on exit.
    """
    bin_dir = require_postgres_bin_dir()
    import psycopg2  # dagster-postgres' driver; imported late so a skip does not need it

    base = Path(tempfile.mkdtemp(prefix="pg-test-", dir=parent_dir))
    try:
        process = _PostgresProcess(bin_dir, base)
        superuser_password = secrets.token_urlsafe(16)
        password = secrets.token_urlsafe(16)
        pwfile = base / "pwfile"
        pwfile.write_text(superuser_password + "\n")
        process.own(pwfile)
        process.run(
            "initdb", "-D", str(process.data_dir), "-U", "postgres", f"--pwfile={pwfile}",
            "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C",
            "--no-sync", "--no-instructions",
        )  # fmt: skip
        pwfile.unlink()
        try:
            # PostgreSQL only takes a port number: a port lost between its choice and the bind is retried.
            port = start_on_free_port(lambda port: _start_server(process, port), what="PostgreSQL")
            superuser = {
                "host": "127.0.0.1",
                "port": port,
                "user": "postgres",
                "password": superuser_password,
            }
            wait_until(
                lambda: _can_connect(psycopg2, dbname="postgres", **superuser),
                timeout_s=30,
                what=f"PostgreSQL on 127.0.0.1:{port}",
                retry_on=(psycopg2.OperationalError,),  # what libpq says while the server starts
            )
            admin = psycopg2.connect(dbname="postgres", **superuser)
            try:
                admin.autocommit = True
                with admin.cursor() as cursor:
                    cursor.execute(f'CREATE ROLE "{user}" LOGIN PASSWORD %s', (password,))
                    cursor.execute(f'CREATE DATABASE "{database}" OWNER "{user}"')
            finally:
                admin.close()
            yield PostgresInfo(
                host="127.0.0.1",
                port=port,
                user=user,
                password=password,
                database=database,
                data_dir=process.data_dir,
                log_path=process.log_path,
            )
        finally:
            process.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


__all__ = ["APT_INSTALL", "PostgresInfo", "postgres_bin_dir", "postgres_server", "require_postgres_bin_dir"]
