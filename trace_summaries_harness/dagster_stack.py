"""The real local Dagster stack for end-to-end tests: ``dagster-webserver`` and ``dagster-daemon``.

Both processes run from the repository's ``workspace.yaml`` with ``DAGSTER_HOME`` in a temporary directory
(holding a copy of the repository's ``dagster.yaml``: the same run queue, concurrency limits and pools as
``make dev``) and the embedded trace store under ``<tmp>/data``.

Each process starts in its own session, so stopping it signals exactly its process group: the process, its
code server and the run workers the daemon launched. SIGINT/SIGTERM are reset to their defaults in the
children, since a shell that started us in the background may have left them ignored (and such a process
never stops on SIGTERM); descendants that left the group are found in /proc and signalled too. The
instance's databases are created before either process starts (both would otherwise migrate a fresh sqlite
instance at once, and one fails). The webserver only takes a port number: a port another process takes
before the webserver binds it costs a start on a new port (``_start_webserver``). Readiness is polled, never
slept for: the webserver's own listening socket, ``/server_info``, then the code location loaded in the
webserver (a load error fails at once, with its traceback), then a heartbeat from every required daemon
(GraphQL ``instance.daemonHealth``). Output goes to log files, whose tails are printed when the stack fails
to start or the body of the ``with`` raises.

    with dagster_stack(tmp_path, {"TRACE_SUMMARIES_START_DATE": "2026-11-01"}) as stack:
        stack.graphql("{ version }")
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import requests

from trace_summaries_harness.ports import (
    PortTaken,
    address_in_use,
    listening_on,
    start_on_free_port,
    wait_until,
)

PROJECT = Path(__file__).resolve().parents[1]
WORKSPACE = PROJECT / "workspace.yaml"
LOCATION = "trace_summaries"
REPOSITORY = "__repository__"
DEFAULT_START_DATE = "2026-11-01"

# Inherited settings that would point the stack at the developer's own state or a real LLM.
_DROPPED_ENV_PREFIXES = ("DAGSTER_HOME", "TRACE_SUMMARIES_", "OPENAI_", "KAFKA_")

DAEMON_HEALTH_QUERY = """
{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }
"""

LOCATIONS_QUERY = """
{
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name loadStatus
        locationOrLoadError { __typename ... on PythonError { message stack } }
      }
    }
    ... on PythonError { message }
  }
}
"""

ADD_DYNAMIC_PARTITION_MUTATION = """
mutation AddDynamicPartition($repositorySelector: RepositorySelector!, $name: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $repositorySelector, partitionsDefName: $name, partitionKey: $key) {
    __typename
    ... on AddDynamicPartitionSuccess { partitionKey }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
    ... on DuplicateDynamicPartitionError { partitionName }
  }
}
"""

# The mutation the UI sends (ui-core/src/instance/backfill/BackfillUtils.tsx), with the errors it can return.
LAUNCH_BACKFILL_MUTATION = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on PartitionSetNotFoundError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on UnauthorizedError { message }
    ... on RunConflict { message }
    ... on ConflictingExecutionParamsError { message }
    ... on RunConfigValidationInvalid { errors { message path reason } }
  }
}
"""

BACKFILL_QUERY = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PythonError { message stack }
    ... on BackfillNotFoundError { message }
    ... on PartitionBackfill {
      id status numPartitions
      error { message stack }
      runs { runId status tags { key value } }
      assetBackfillData {
        assetBackfillStatuses {
          ... on AssetPartitionsStatusCounts {
            assetKey { path }
            numPartitionsTargeted numPartitionsInProgress numPartitionsMaterialized numPartitionsFailed
          }
        }
      }
    }
  }
}
"""

LAUNCH_RUN_MUTATION = """
mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
    ... on RunConfigValidationInvalid { errors { message path reason } }
    ... on InvalidSubsetError { message }
    ... on PipelineNotFoundError { message }
    ... on RunConflict { message }
    ... on UnauthorizedError { message }
    ... on ConflictingExecutionParamsError { message }
    ... on PresetNotFoundError { message }
    ... on NoModeProvidedError { message }
  }
}
"""

RUNS_QUERY = """
query Runs($ids: [String!]) {
  runsOrError(filter: {runIds: $ids}) {
    __typename
    ... on Runs { results { runId status startTime endTime tags { key value } } }
    ... on PythonError { message }
  }
}
"""

# Backfill states after which nothing more happens (COMPLETED is the pre-1.7 name of COMPLETED_SUCCESS).
BACKFILL_DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
RUN_DONE = {"SUCCESS", "FAILURE", "CANCELED"}


class StackError(RuntimeError):
    """The stack did not start, or a process of it died; the message carries the log tails."""


class CodeLocationError(StackError):
    """The webserver loaded the code location and got an error: waiting longer will not help."""


def _bin(name: str) -> str:
    """A console script of this interpreter's environment (the venv), not whatever is first on PATH."""
    return str(Path(sys.executable).with_name(name))


def _reset_signals() -> None:
    """Runs in the child before exec: default SIGINT/SIGTERM even if our parent left them ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from /proc), including ones that moved to another session."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may contain spaces and parentheses, so split after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited, only its status is left


@dataclass
class Process:
    """One stack process (``webserver`` or ``daemon``) and the file its output goes to."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-chars:]

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM to the process group (and any descendant that left it), then SIGKILL what remains."""
        tree = [self.popen.pid, *_descendants(self.popen.pid)]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        for pid in tree[1:]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=timeout_s)
        with contextlib.suppress(TimeoutError):
            wait_until(
                lambda: not any(_alive(pid) for pid in tree[1:]),
                timeout_s=max(1.0, timeout_s / 3),
                what=f"{self.name} children to exit",
            )
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        for pid in tree:
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)


@dataclass
class Stack:
    """A running stack: ``url`` of the webserver, its ``graphql`` endpoint, the instance and data dirs."""

    url: str
    home: Path
    data_dir: Path
    env: dict[str, str]
    processes: list[Process] = field(default_factory=list)

    @property
    def dsn(self) -> str:
        """The embedded trace store the stack's runs write to."""
        return self.env.get("TRACE_SUMMARIES_CLICKHOUSE_DSN") or f"chdb://{self.data_dir / 'clickhouse'}"

    def graphql(
        self, query: str, variables: Mapping[str, Any] | None = None, *, timeout_s: float = 120.0
    ) -> dict[str, Any]:
        """The ``data`` of a GraphQL request; raises on HTTP errors and on GraphQL ``errors``."""
        response = requests.post(
            f"{self.url}/graphql",
            json={"query": query, "variables": dict(variables or {})},
            timeout=timeout_s,
        )
        if not response.ok:  # GraphQL validation errors come back as HTTP 4xx/5xx with a JSON body
            raise StackError(f"GraphQL HTTP {response.status_code}: {response.text[:3000]}")
        body = response.json()
        if body.get("errors"):
            raise StackError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def check_alive(self) -> None:
        """Raises (with the logs) if the webserver or the daemon has exited."""
        dead = [process for process in self.processes if not process.alive()]
        if dead:
            raise StackError(
                ", ".join(f"{p.name} exited with {p.popen.returncode}" for p in dead) + "\n" + self.logs()
            )

    def daemons_healthy(self) -> bool:
        statuses = self.graphql(DAEMON_HEALTH_QUERY, timeout_s=30)["instance"]["daemonHealth"][
            "allDaemonStatuses"
        ]
        required = [status for status in statuses if status["required"]]
        return bool(required) and all(status["healthy"] for status in required)

    @property
    def repository_selector(self) -> dict[str, str]:
        return {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}

    def add_dynamic_partitions(self, name: str, keys: list[str]) -> None:
        """As the UI's "Add partition" does, one key at a time (a key already present is fine)."""
        for key in keys:
            result = self.graphql(
                ADD_DYNAMIC_PARTITION_MUTATION,
                {"repositorySelector": self.repository_selector, "name": name, "key": key},
            )["addDynamicPartition"]
            if result["__typename"] not in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"):
                raise StackError(f"adding partition {key!r} to {name!r}: {result}")

    def launch_backfill(self, backfill_params: Mapping[str, Any]) -> str:
        result = self.graphql(LAUNCH_BACKFILL_MUTATION, {"backfillParams": dict(backfill_params)})[
            "launchPartitionBackfill"
        ]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise StackError(f"launchPartitionBackfill failed: {result}")
        return str(result["backfillId"])

    def backfill(self, backfill_id: str) -> dict[str, Any]:
        result = self.graphql(BACKFILL_QUERY, {"id": backfill_id})["partitionBackfillOrError"]
        if result["__typename"] != "PartitionBackfill":
            raise StackError(f"backfill {backfill_id}: {result}")
        return result

    def wait_for_backfill(self, backfill_id: str, *, timeout_s: float) -> dict[str, Any]:
        """Polls the backfill until it is done (any final status); fails early if a process dies."""
        latest: dict[str, Any] = {}

        def done() -> bool:
            self.check_alive()
            latest.update(self.backfill(backfill_id))
            return latest["status"] in BACKFILL_DONE

        # The backfill daemon acts every 30 s: polling more often only takes CPU from the runs.
        self._poll(done, timeout_s=timeout_s, what=f"backfill {backfill_id}", state=latest, interval_s=3.0)
        return latest

    def launch_run(
        self, job_name: str, tags: Mapping[str, str], run_config: Mapping[str, Any] | None = None
    ) -> str:
        """Submits a run of a job to the run queue (the daemon launches it), as the launchpad does."""
        result = self.graphql(
            LAUNCH_RUN_MUTATION,
            {
                "executionParams": {
                    "selector": {**self.repository_selector, "jobName": job_name},
                    "runConfigData": dict(run_config or {}),
                    "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
                }
            },
        )["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise StackError(f"launchRun failed: {result}")
        return str(result["run"]["runId"])

    def runs(self, run_ids: list[str]) -> list[dict[str, Any]]:
        result = self.graphql(RUNS_QUERY, {"ids": run_ids})["runsOrError"]
        if result["__typename"] != "Runs":
            raise StackError(f"runsOrError: {result}")
        return list(result["results"])

    def wait_for_runs(self, run_ids: list[str], *, timeout_s: float) -> list[dict[str, Any]]:
        """Polls until every run has finished (success or not); fails early if a process dies."""
        latest: dict[str, Any] = {}

        def done() -> bool:
            self.check_alive()
            runs = self.runs(run_ids)
            latest["runs"] = runs
            return len(runs) == len(run_ids) and all(run["status"] in RUN_DONE for run in runs)

        self._poll(done, timeout_s=timeout_s, what=f"{len(run_ids)} runs", state=latest)
        return list(latest["runs"])

    def _poll(
        self, check: Any, *, timeout_s: float, what: str, state: Mapping[str, Any], interval_s: float = 1.0
    ) -> None:
        """``wait_until``, except that a dead stack process stops the wait at once (with the logs)."""
        failure: list[StackError] = []

        def guarded() -> bool:
            try:
                return bool(check())
            except StackError as exc:
                if any(not p.alive() for p in self.processes):
                    failure.append(exc)
                    return True
                raise

        try:
            wait_until(guarded, timeout_s=timeout_s, what=what, interval_s=interval_s, log=self.logs)
        except TimeoutError as exc:
            raise StackError(f"{exc}; last state: {dict(state)}\n{self.logs()}") from None
        if failure:
            raise failure[0]

    def location_loaded(self) -> bool:
        """True once the webserver has loaded the code location; raises if loading it failed."""
        workspace = self.graphql(LOCATIONS_QUERY, timeout_s=30)["workspaceOrError"]
        entries = {entry["name"]: entry for entry in workspace.get("locationEntries", [])}
        entry = entries.get(LOCATION)
        if entry is None or entry["loadStatus"] != "LOADED":
            return False
        loaded = entry["locationOrLoadError"] or {}
        if loaded.get("__typename") != "RepositoryLocation":
            raise CodeLocationError(f"code location {LOCATION!r} failed to load: {loaded}")
        return True

    def logs(self, chars: int = 4000) -> str:
        return "\n".join(
            f"----- {p.name} ({p.log_path}), last {chars} chars -----\n{p.log_tail(chars)}"
            for p in self.processes
        )


def stack_env(home: Path, data_dir: Path, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every stack process: ours, minus settings that point elsewhere, plus the stack's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_ENV_PREFIXES)}
    env |= {
        "DAGSTER_HOME": str(home),
        "TRACE_SUMMARIES_DATA_DIR": str(data_dir),
        "TRACE_SUMMARIES_START_DATE": DEFAULT_START_DATE,
        "PYTHONUNBUFFERED": "1",
    }
    env |= dict(overrides or {})
    return env


def start_daemon(stack: Stack, log_path: Path, name: str = "daemon") -> Process:
    """A ``dagster-daemon run`` on the stack's instance and environment: the stack's own, or another one
    started later by a test (a daemon restarted after a crash, or rolled out with a changed setting)."""
    return _start(name, [_bin("dagster-daemon"), "run", "-w", str(WORKSPACE)], stack.env, log_path)


def _start(name: str, command: list[str], env: dict[str, str], log_path: Path) -> Process:
    with log_path.open("wb") as log:  # the child keeps its own descriptor
        popen = subprocess.Popen(
            command,
            cwd=PROJECT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_reset_signals,
        )
    return Process(name, popen, log_path)


def _wait_ready(stack: Stack, check: Any, *, timeout_s: float, what: str) -> None:
    """Polls ``check`` until it passes; stops early (with the logs) if a stack process exits."""

    def ready_or_dead() -> bool:
        return any(not p.alive() for p in stack.processes) or bool(check())

    try:
        wait_until(ready_or_dead, timeout_s=timeout_s, what=what, interval_s=0.25, log=stack.logs)
    except TimeoutError as exc:
        raise StackError(f"{exc}\n{stack.logs()}") from None
    stack.check_alive()


def _wait_ready_or_raise(stack: Stack, check: Any, *, timeout_s: float, what: str) -> None:
    """``_wait_ready``, except that a ``CodeLocationError`` from ``check`` (a definite failure) ends the
    wait at once; other errors (a webserver still starting) are retried."""
    failure: list[CodeLocationError] = []

    def check_or_fail() -> bool:
        try:
            return bool(check())
        except CodeLocationError as exc:
            failure.append(exc)
            return True

    _wait_ready(stack, check_or_fail, timeout_s=timeout_s, what=what)
    if failure:
        raise failure[0]


def _start_webserver(stack: Stack, log_path: Path, *, deadline: float) -> None:
    """Starts ``dagster-webserver`` on a free port and sets ``stack.url`` once it listens there.

    The webserver only takes a port number (with ``-p 0`` it picks one itself, by a check-then-bind of its
    own), and uvicorn binds it only once the app is up, seconds after the start: another process can take the
    port meanwhile. uvicorn then logs ``address already in use`` and the webserver exits, and it is started
    again on a new port (``start_on_free_port``). The proof of the bind is the webserver's own listening
    socket (``listening_on``), not an answer on the port, which could come from whoever took it.
    """

    def start(port: int) -> None:
        command = [_bin("dagster-webserver"), "-w", str(WORKSPACE), "-h", "127.0.0.1", "-p", str(port)]
        process = _start("webserver", command, stack.env, log_path)
        stack.processes.insert(0, process)
        try:
            wait_until(
                lambda: not process.alive() or listening_on(process.popen.pid, port),
                timeout_s=max(1.0, deadline - time.monotonic()),
                what=f"dagster-webserver listening on 127.0.0.1:{port}",
                interval_s=0.25,
            )
        except TimeoutError as exc:
            raise StackError(f"{exc}\n{stack.logs()}") from None
        if process.alive():
            stack.url = f"http://127.0.0.1:{port}"
            return
        if not address_in_use(process.log_tail(chars=1_000_000)):
            stack.check_alive()  # another failure: raised with the logs
        process.stop()  # what the webserver left: its code server
        stack.processes.remove(process)
        log_path.replace(log_path.with_name(f"{log_path.stem}.port-{port}-taken{log_path.suffix}"))
        raise PortTaken(f"dagster-webserver: 127.0.0.1:{port} was taken before it could bind it")

    start_on_free_port(start, what="dagster-webserver")


@contextlib.contextmanager
def dagster_stack(
    tmp_path: Path,
    env: Mapping[str, str] | None = None,
    *,
    daemon: bool = True,
    dynamic_partitions: Mapping[str, list[str]] | None = None,
    start_timeout_s: float = 240.0,
    stop_timeout_s: float = 30.0,
) -> Iterator[Stack]:
    """Starts webserver (and daemon) on a fresh instance under ``tmp_path``; stops both on exit.

    ``env`` overrides the processes' environment (e.g. ``TRACE_SUMMARIES_SCHEDULE_MODE``). The trace store
    is ``<tmp_path>/data/clickhouse`` unless ``env`` sets ``TRACE_SUMMARIES_CLICKHOUSE_DSN``.
    ``dynamic_partitions`` (e.g. ``{"teams": ["1", "2"]}``) are added before anything starts: with an
    allowlist in ``env`` the team sensor adds the same teams as soon as the daemon is up, and adding a key
    concurrently with it can fail on the unique constraint.
    """
    home = tmp_path / "dagster_home"
    data_dir = tmp_path / "data"
    home.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PROJECT / "dagster.yaml", home / "dagster.yaml")
    # ``url`` is set once the webserver listens (``_start_webserver``).
    stack = Stack(url="", home=home, data_dir=data_dir, env=stack_env(home, data_dir, env))
    if stack.env["DAGSTER_HOME"] == str(home):
        # Create the instance's sqlite databases now: the webserver and the daemon would otherwise both run
        # the schema migrations of a fresh DAGSTER_HOME at once, and one of them fails (alembic CommandError).
        with dg.DagsterInstance.local_temp(str(home)) as instance:
            for name, keys in (dynamic_partitions or {}).items():
                present = set(instance.get_dynamic_partitions(name))
                instance.add_dynamic_partitions(name, [key for key in keys if key not in present])
    elif dynamic_partitions:
        # A caller's own DAGSTER_HOME (e.g. Postgres) may need settings only the stack's env has.
        raise ValueError("dynamic_partitions needs the stack's own DAGSTER_HOME; add them to yours first")
    started = time.monotonic()
    try:
        if daemon:  # started first: it needs no port, and comes up while the webserver binds one
            stack.processes.append(start_daemon(stack, tmp_path / "daemon.log"))
        _start_webserver(stack, tmp_path / "webserver.log", deadline=started + start_timeout_s)
        _wait_ready(
            stack,
            lambda: requests.get(f"{stack.url}/server_info", timeout=5).ok,
            timeout_s=start_timeout_s,
            what="dagster-webserver /server_info",
        )
        remaining = max(30.0, start_timeout_s - (time.monotonic() - started))
        _wait_ready_or_raise(stack, stack.location_loaded, timeout_s=remaining, what="the code location")
        if daemon:
            remaining = max(30.0, start_timeout_s - (time.monotonic() - started))
            _wait_ready(stack, stack.daemons_healthy, timeout_s=remaining, what="dagster-daemon heartbeats")
        yield stack
    except BaseException:
        # Shown by pytest with the failure (captured stderr), or on the console of a standalone run.
        print(stack.logs(), file=sys.stderr)
        raise
    finally:
        for process in reversed(stack.processes):
            process.stop(stop_timeout_s)
