"""What can be validated of deploy/ on a machine without Docker, Helm or Kubernetes.

* ``deploy/values.yaml`` uses only keys of the official chart's values schema (a trimmed copy below), with
  allowed enum values, and the Dagster instance the chart renders from it equals ``deploy/dagster.yaml`` where
  both set something (run queue, pools, run retries, run monitoring, Postgres scheme).
* ``deploy/dagster.yaml``, and the instance rendered from the values, pass ``dagster instance info`` against a
  real PostgreSQL with the credentials in the environment, as in production.
* ``deploy/Dockerfile`` agrees with the values (module, port), pins dagster-k8s to the project's Dagster
  release and is what ``deploy/check_image_build.sh`` reads (that script runs pip: a CI step of its own).
* ``deploy/secrets.example.env`` makes a Secret (``kubectl create secret --dry-run=client``, when kubectl is
  installed) with the name the values reference.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from trace_summaries_harness.postgres import PostgresInfo, postgres_server
from trace_summaries_tests.support.environment import base

PROJECT = Path(__file__).resolve().parents[1]
DEPLOY = PROJECT / "deploy"
DAGSTER = str(Path(sys.executable).with_name("dagster"))

# ----------------------------------------------------------------------------------------------------------
# The chart's values schema, trimmed to the sections deploy/values.yaml uses.
#
# Source: dagster-io/dagster, helm/dagster/schema/schema/charts/ (the pydantic models the chart's
# values.schema.json is generated from; Helm validates values against that JSON schema, and most models
# forbid extra keys). Read through the search tool (the stored helm/dagster/values.yaml is a 2020 copy):
#   dagster/values.py                      6067953540  top-level keys
#   dagster/subschema/global_.py           53ff29f3    global
#   dagster/subschema/postgresql.py        419071831   postgresql
#   dagster/subschema/daemon.py            26056388421 dagsterDaemon (py3.10 syntax: a 1.1x release)
#   dagster/subschema/run_launcher.py      25639831068 runLauncher
#   dagster_user_deployments/subschema/user_deployments.py  69202380619
#   templates/configmap-instance.yaml      835892b4    the runMonitoring keys the template reads
# FREE marks a subtree the schema leaves open (Kubernetes objects, free dicts).
# ----------------------------------------------------------------------------------------------------------
FREE: Any = object()
IMAGE = {"repository": None, "tag": None, "pullPolicy": {"Always", "IfNotPresent", "Never"}}
K8S_POD_FIELDS = dict.fromkeys(
    [
        "annotations",
        "nodeSelector",
        "affinity",
        "tolerations",
        "podSecurityContext",
        "securityContext",
        "resources",
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "labels",
        "volumeMounts",
        "volumes",
    ],
    FREE,
)
ENV_SOURCES = [{"name": None, "optional": None}]

CHART_SCHEMA: dict[str, Any] = {
    "global": dict.fromkeys(
        [
            "postgresqlSecretName",
            "dagsterHome",
            "serviceAccountName",
            "celeryConfigSecretName",
            "dagsterInstanceConfigMap",
        ]
    ),
    "generatePostgresqlPasswordSecret": None,
    "generateCeleryConfigSecret": None,
    "postgresql": {
        "image": FREE,
        "enabled": None,
        "postgresqlHost": None,
        "postgresqlUsername": None,
        "postgresqlPassword": None,
        "postgresqlDatabase": None,
        "postgresqlParams": FREE,
        "postgresqlScheme": None,
        "service": {"port": None},
    },
    "dagster-user-deployments": {
        "enabled": None,
        "enableSubchart": None,
        "imagePullSecrets": FREE,
        "deployments": [
            {
                "name": None,
                "image": IMAGE,
                "dagsterApiGrpcArgs": [None],
                "codeServerArgs": [None],
                "includeConfigInLaunchedRuns": {"enabled": None},
                "deploymentNamespace": None,
                "port": None,
                "replicaCount": None,
                "env": FREE,
                "envConfigMaps": ENV_SOURCES,
                "envSecrets": ENV_SOURCES,
                "schedulerName": None,
                "initContainers": FREE,
                "sidecarContainers": FREE,
                "deploymentStrategy": FREE,
                **K8S_POD_FIELDS,
            }
        ],
    },
    "runLauncher": {
        "type": {"CeleryK8sRunLauncher", "K8sRunLauncher", "CustomRunLauncher"},
        "config": {
            "celeryK8sRunLauncher": FREE,
            "customRunLauncher": FREE,
            "k8sRunLauncher": {
                "image": IMAGE,
                "imagePullPolicy": {"Always", "IfNotPresent", "Never"},
                "jobNamespace": None,
                "loadInclusterConfig": None,
                "kubeconfigFile": None,
                "envConfigMaps": ENV_SOURCES,
                "envSecrets": ENV_SOURCES,
                "envVars": [None],
                "volumeMounts": FREE,
                "volumes": FREE,
                "labels": FREE,
                "failPodOnRunFailure": None,
                "resources": FREE,
                "schedulerName": None,
                "securityContext": FREE,
                "runK8sConfig": dict.fromkeys(
                    [
                        "containerConfig",
                        "podSpecConfig",
                        "podTemplateSpecMetadata",
                        "jobSpecConfig",
                        "jobMetadata",
                    ],
                    FREE,
                ),
            },
        },
    },
    "dagsterDaemon": {
        "enabled": None,
        "image": IMAGE,
        "runCoordinator": {
            "enabled": None,
            "type": {"QueuedRunCoordinator", "CustomRunCoordinator"},
            "config": {
                "queuedRunCoordinator": {
                    "maxConcurrentRuns": None,
                    "tagConcurrencyLimits": FREE,
                    "dequeueIntervalSeconds": None,
                    "dequeueNumWorkers": None,
                    "dequeueUseThreads": None,
                    "blockOpConcurrencyLimitedRuns": {"enabled": None, "opConcurrencySlotBuffer": None},
                },
                "customRunCoordinator": FREE,
            },
        },
        "heartbeatTolerance": None,
        "env": FREE,
        "envConfigMaps": ENV_SOURCES,
        "envSecrets": ENV_SOURCES,
        "deploymentLabels": FREE,
        "checkDbReadyInitContainer": None,
        "runMonitoring": dict.fromkeys(
            [
                "enabled",
                "startTimeoutSeconds",
                "cancelTimeoutSeconds",
                "maxResumeRunAttempts",
                "pollIntervalSeconds",
                "freeSlotsAfterRunEndSeconds",
            ]
        ),
        "runRetries": {"enabled": None, "maxRetries": None, "retryOnAssetOrOpFailure": None},
        "sensors": {"useThreads": None, "numWorkers": None, "numSubmitWorkers": None},
        "schedules": {"useThreads": None, "numWorkers": None, "numSubmitWorkers": None},
        "backfills": {"useThreads": None, "numWorkers": None, "numSubmitWorkers": None},
        "schedulerName": None,
        "logFormat": None,
        **K8S_POD_FIELDS,
    },
    "dagsterWebserver": FREE,
    "telemetry": {"enabled": None},
    "retention": FREE,
    "pythonLogs": FREE,
    "computeLogManager": FREE,
    "serviceAccount": FREE,
    "ingress": FREE,
    "imagePullSecrets": FREE,
    "additionalInstanceConfig": FREE,
}


def schema_violations(values: Any, schema: Any, path: str = "") -> list[str]:
    """Keys (and enum values) of ``values`` that ``schema`` does not have, as dotted paths."""
    if schema is FREE:
        return []
    if isinstance(schema, set):
        return (
            [] if values in schema or values is None else [f"{path}: {values!r} not one of {sorted(schema)}"]
        )
    if isinstance(schema, list):
        if not isinstance(values, list):
            return [f"{path}: expected a list"]
        return [
            v for i, item in enumerate(values) for v in schema_violations(item, schema[0], f"{path}[{i}]")
        ]
    if isinstance(schema, dict):
        if values is None:
            return []
        if not isinstance(values, dict):
            return [f"{path}: expected a mapping"]
        problems = []
        for key, value in values.items():
            where = f"{path}.{key}" if path else key
            if key not in schema:
                problems.append(f"{where}: not a key of the chart")
            else:
                problems += schema_violations(value, schema[key], where)
        return problems
    return [] if not isinstance(values, dict | list) else [f"{path}: expected a scalar"]


def load_yaml(name: str) -> Any:
    return yaml.safe_load((DEPLOY / name).read_text())


def test_the_schema_check_catches_unknown_keys_and_values() -> None:
    bad = {
        "dagsterDaemon": {"runRetries": {"maxRetry": 2}},
        "runLauncher": {"type": "K8sLauncher"},
        "dagster-user-deployments": {"deployments": [{"name": "x", "envSecret": []}]},
    }
    assert schema_violations(bad, CHART_SCHEMA) == [
        "dagsterDaemon.runRetries.maxRetry: not a key of the chart",
        "runLauncher.type: 'K8sLauncher' not one of ['CeleryK8sRunLauncher', 'CustomRunLauncher', "
        "'K8sRunLauncher']",
        "dagster-user-deployments.deployments[0].envSecret: not a key of the chart",
    ]


def test_values_use_only_keys_of_the_chart() -> None:
    values = load_yaml("values.yaml")
    assert schema_violations(values, CHART_SCHEMA) == []
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"


# ----------------------------------------------------------------------------------------------------------
# The instance the chart renders from the values (templates/configmap-instance.yaml and its helpers), for
# the parts the values set, next to deploy/dagster.yaml
# ----------------------------------------------------------------------------------------------------------


POSTGRES_STORAGES = {
    "run_storage": ("dagster_postgres.run_storage", "PostgresRunStorage"),
    "event_log_storage": ("dagster_postgres.event_log", "PostgresEventLogStorage"),
    "schedule_storage": ("dagster_postgres.schedule_storage", "PostgresScheduleStorage"),
}


DAEMON_THREAD_SETTINGS = ("sensors", "schedules", "backfills")
PLANNED_EVENTS_SWITCH = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"


def instance_from_values(values: dict[str, Any]) -> dict[str, Any]:
    """The dagster.yaml ``configmap-instance.yaml`` renders for the settings deploy/values.yaml makes.

    Left out: the run launcher (the K8sRunLauncher needs dagster-k8s and a cluster) and the compute log
    manager (chart default). The database address comes from DAGSTER_PG_* here, so the rendering can be
    pointed at the test's PostgreSQL; the chart writes the values' host, user, database and port literally.
    """
    postgres_db = {
        "username": {"env": "DAGSTER_PG_USERNAME"},
        "password": {"env": "DAGSTER_PG_PASSWORD"},  # the chart: always this variable, from the Secret
        "hostname": {"env": "DAGSTER_PG_HOST"},
        "db_name": {"env": "DAGSTER_PG_DB"},
        "port": {"env": "DAGSTER_PG_PORT"},
        "scheme": values["postgresql"]["postgresqlScheme"],
    }
    daemon = values["dagsterDaemon"]
    qrc = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    # The chart of the schema above wrote `dagster.core.run_coordinator`, a module Dagster 1.13 no longer has,
    # so the 1.13 chart necessarily names the current one; the class is what matters here.
    run_coordinator: dict[str, Any] = {
        "module": "dagster._core.run_coordinator",
        "class": "QueuedRunCoordinator",
    }
    # `{{- if not (empty (compact (values $queuedRunCoordinatorConfig))) }}` -> `config: max_concurrent_runs:
    # {{ if (kindIs "invalid" .maxConcurrentRuns) }}-1 ...`: any value set renders a run limit.
    if any(qrc.values()):
        run_coordinator["config"] = {"max_concurrent_runs": qrc.get("maxConcurrentRuns") or -1}
    retries, monitoring = daemon["runRetries"], daemon["runMonitoring"]
    instance: dict[str, Any] = {
        key: {"module": module, "class": klass, "config": {"postgres_db": postgres_db}}
        for key, (module, klass) in POSTGRES_STORAGES.items()
    }
    instance |= {
        "run_coordinator": run_coordinator,
        "run_retries": {
            "enabled": retries["enabled"],
            "max_retries": retries["maxRetries"],
            "retry_on_asset_or_op_failure": retries["retryOnAssetOrOpFailure"],
        },
        "run_monitoring": {
            "enabled": monitoring["enabled"],
            "start_timeout_seconds": monitoring["startTimeoutSeconds"],
            "poll_interval_seconds": monitoring["pollIntervalSeconds"],
        },
        "telemetry": {"enabled": values["telemetry"]["enabled"]},
    }
    # `dagsterDaemon.sensors|schedules|backfills` render as the daemon settings of the same names.
    for key in DAEMON_THREAD_SETTINGS:
        if daemon.get(key):
            instance[key] = {
                "use_threads": daemon[key]["useThreads"],
                "num_workers": daemon[key]["numWorkers"],
                "num_submit_workers": daemon[key]["numSubmitWorkers"],
            }
    return instance | dict(values.get("additionalInstanceConfig") or {})


def test_the_instance_rendered_from_the_values_matches_deploy_dagster_yaml() -> None:
    values = load_yaml("values.yaml")
    rendered = instance_from_values(values)
    reference = load_yaml("dagster.yaml")
    # With a `concurrency` block, Dagster refuses run limits in the run coordinator's config; the values must
    # therefore keep the chart from rendering that config at all.
    assert "config" not in rendered["run_coordinator"]
    assert "config" not in reference["run_coordinator"]
    assert rendered["concurrency"] == reference["concurrency"]
    assert rendered["run_retries"] == reference["run_retries"]
    for key, value in rendered["run_monitoring"].items():
        assert reference["run_monitoring"][key] == value, key
    assert rendered["telemetry"] == reference["telemetry"]
    for key in DAEMON_THREAD_SETTINGS:  # runs of ticks and backfills submitted in threads, both ways
        assert rendered[key] == reference[key], key
        assert reference[key]["use_threads"] and reference[key]["num_submit_workers"] > 1, key
    scheme = reference["storage"]["postgres"]["postgres_db"]["scheme"]
    assert scheme == values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    assert rendered["run_storage"]["config"]["postgres_db"]["scheme"] == scheme


def instance_info(home: Path, pg: PostgresInfo) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in base().items() if not k.startswith("DAGSTER_")} | pg.instance_env(home)
    return subprocess.run(
        [DAGSTER, "instance", "info"], env=env, capture_output=True, text=True, timeout=180, check=False
    )


def effective_concurrency(home: Path, pg: PostgresInfo) -> dict[str, Any]:
    """The run queue and pool settings the daemon would use, read through DagsterInstance."""
    code = (
        "import json, dagster as dg\n"
        "with dg.DagsterInstance.get() as instance:\n"
        "    config = instance.get_concurrency_config()\n"
        "    queue, pools = config.run_queue_config, config.pool_config\n"
        "    print(json.dumps({'max_concurrent_runs': queue.max_concurrent_runs,\n"
        "                      'tag_concurrency_limits': queue.tag_concurrency_limits,\n"
        "                      'default_pool_limit': pools.default_pool_limit,\n"
        "                      'run_coordinator': type(instance.run_coordinator).__name__,\n"
        "                      'run_retries': instance.run_retries_max_retries}))\n"
    )
    env = {k: v for k, v in base().items() if not k.startswith("DAGSTER_")} | pg.instance_env(home)
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_deploy_dagster_yaml_and_the_rendered_values_pass_dagster_instance_info_on_postgres(
    tmp_path: Path,
) -> None:
    reference = load_yaml("dagster.yaml")
    limits = reference["concurrency"]
    homes = {"deploy/dagster.yaml": tmp_path / "reference", "values.yaml (rendered)": tmp_path / "rendered"}
    for home in homes.values():
        home.mkdir()
    shutil.copyfile(DEPLOY / "dagster.yaml", homes["deploy/dagster.yaml"] / "dagster.yaml")
    rendered = yaml.safe_dump(instance_from_values(load_yaml("values.yaml")), sort_keys=False)
    (homes["values.yaml (rendered)"] / "dagster.yaml").write_text(rendered)
    with postgres_server() as pg:
        for name, home in homes.items():
            result = instance_info(home, pg)
            assert result.returncode == 0, f"{name}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
            for storage in ("PostgresRunStorage", "PostgresEventLogStorage", "PostgresScheduleStorage"):
                assert storage in result.stdout, (name, storage)
            # The schema was created (migrated) on the real database: current == latest for each storage.
            schema = yaml.safe_load(result.stdout.split("Storage schema state:")[1].split("\n", 2)[2])
            for storage, state in schema["schema"].items():
                assert state["current"] == state["latest"], (name, storage, state)
            assert pg.password not in result.stdout + result.stderr

            effective = effective_concurrency(home, pg)
            assert effective == {
                "max_concurrent_runs": limits["runs"]["max_concurrent_runs"],
                "tag_concurrency_limits": limits["runs"]["tag_concurrency_limits"],
                "default_pool_limit": limits["pools"]["default_limit"],
                "run_coordinator": "QueuedRunCoordinator",
                "run_retries": reference["run_retries"]["max_retries"],
            }, name


# ----------------------------------------------------------------------------------------------------------
# Dockerfile, values and the example environment agree
# ----------------------------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[str]:
    """Instructions with continuation lines joined and comments dropped."""
    instructions, current = [], ""
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1].rstrip() + " "
            continue
        if (current + line).strip():
            instructions.append((current + line).strip())
        current = ""
    return instructions


def instruction(prefix: str) -> str:
    found = [i[len(prefix) :].strip() for i in dockerfile_instructions() if i.startswith(prefix)]
    assert len(found) == 1, (prefix, found)
    return found[0]


def test_the_dockerfile_builds_the_code_location_the_values_deploy() -> None:
    values = load_yaml("values.yaml")
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert instruction("FROM ") == "python:3.11-slim"
    command = json.loads(instruction("CMD "))
    assert command[:3] == ["dagster", "api", "grpc"]
    # The chart runs `dagster api grpc -h 0.0.0.0 -p <port> <dagsterApiGrpcArgs>`: the same server.
    assert command[3:5] == deployment["dagsterApiGrpcArgs"] == ["-m", "trace_summaries.definitions"]
    assert command[command.index("-p") + 1] == str(deployment["port"]) == instruction("EXPOSE ")
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True

    pip_words = shlex.split(instruction("RUN pip install").split("&&")[0])
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    pins = dict(dep.split("==") for dep in project["dependencies"])
    assert pip_words[:2] == ["-e", "."]
    assert f"dagster-k8s=={pins['dagster-postgres']}" in pip_words, "dagster-k8s at the project's release"
    assert instruction("RUN python -c").startswith('"import dagster_k8s, dagster_postgres, trace_summaries')
    copied = {
        word for line in dockerfile_instructions() if line.startswith("COPY ") for word in line.split()[1:-1]
    }
    assert copied == {"pyproject.toml", "README.md", "trace_summaries/"}


def test_the_image_leaves_out_the_embedded_engine_and_a_chdb_store_without_it_names_the_fix(
    tmp_path: Path,
) -> None:
    """chDB is the `embedded` extra: the Dockerfile does not install it (the image check proves it absent)."""
    pip_words = shlex.split(instruction("RUN pip install").split("&&")[0])
    assert pip_words[:2] == ["-e", "."] and not any("embedded" in word for word in pip_words)
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    assert not [dep for dep in project["dependencies"] if dep.startswith("chdb")]
    assert project["optional-dependencies"]["embedded"] == ["chdb==4.4.0"]
    # A process where chDB cannot be imported, as in the image: the store's error names both ways out.
    script = (
        "import sys\n"
        "sys.modules['chdb'] = None\n"
        "from trace_summaries.store import StoreError, TraceStore\n"
        "try:\n"
        f"    TraceStore('chdb://{tmp_path / 'store'}').ensure_schema()\n"
        "except StoreError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "embedded ClickHouse engine" in done.stdout
    assert "install trace-summaries[embedded]" in done.stdout
    assert "set TRACE_SUMMARIES_CLICKHOUSE_DSN to a ClickHouse server" in done.stdout


def test_check_image_build_script_is_valid_bash_reading_the_dockerfile() -> None:
    script = DEPLOY / "check_image_build.sh"
    assert os.access(script, os.X_OK), "chmod +x deploy/check_image_build.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    for field in ("from", "pip-args", "import-check", "cmd"):
        assert f"dockerfile_field {field}" in text, field


def test_the_example_environment_makes_the_secret_the_values_reference(tmp_path: Path) -> None:
    values = load_yaml("values.yaml")
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    secret_names = [source["name"] for source in deployment["envSecrets"]]
    readme = (DEPLOY / "README.md").read_text()
    for name in [*secret_names, values["global"]["postgresqlSecretName"]]:
        assert f"kubectl create secret generic {name}" in readme, name
    kubectl = shutil.which("kubectl")
    env_file = f"--from-env-file={DEPLOY / 'secrets.example.env'}"
    if kubectl is None:
        pytest.skip("kubectl is not installed: the env file's format is checked by test_configuration")
    result = subprocess.run(
        [kubectl, "create", "secret", "generic", secret_names[0], "--dry-run=client", "-o", "json", env_file],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    secret = json.loads(result.stdout)
    assert secret["metadata"]["name"] == secret_names[0]
    assert {"TRACE_SUMMARIES_CLICKHOUSE_DSN", "OPENAI_API_KEY", "KAFKA_BOOTSTRAP_SERVERS"} <= set(
        secret["data"]
    )
    assert not any(re.match(r"^#", key) for key in secret["data"])


def test_the_processes_that_create_runs_emit_one_planned_event_per_asset_everywhere() -> None:
    """Dagster's switch is read by whichever process creates a run: the daemon (ticks, backfills) and the
    webserver (UI launches) on Kubernetes, every process on a VM (the example env); all say the same."""
    values = load_yaml("values.yaml")
    example = dict(
        line.split("=", 1)
        for line in (DEPLOY / "secrets.example.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert values["dagsterDaemon"]["env"][PLANNED_EVENTS_SWITCH] == "true"
    assert values["dagsterWebserver"]["env"][PLANNED_EVENTS_SWITCH] == "true"
    assert example[PLANNED_EVENTS_SWITCH] == "true"
