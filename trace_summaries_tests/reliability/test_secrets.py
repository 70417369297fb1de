"""Secrets never leak: not into logs, run metadata, events, intermediate objects, or exceptions.

The pipeline runs with secret-looking values configured the production way (environment variables read
through the same resource factories as ``definitions.py``): an LLM key the fake endpoint requires, a
ClickHouse password the HTTP front requires, a Kafka SASL password for a broker that is down. Then
everything a run leaves behind is searched for each secret, in clear and as an HTTP Basic-auth token: every
Dagster event of the run (messages, metadata, failures with their stack traces and causes, serialized
whole), the run record, every file under the Dagster home and the intermediate directory (the SQLite event
log included), the events table, and every log record and byte written to stdout/stderr.
"""

from __future__ import annotations

import base64
import logging
import subprocess
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from trace_summaries import config
from trace_summaries.defs.io_managers import sample_io_manager, summary_events_io_manager
from trace_summaries.defs.partition_sets import TEAMS
from trace_summaries.defs.resources import KafkaResource, clickhouse_resource, llm_resource
from trace_summaries.demo import seed_store
from trace_summaries.store import StoreError, TraceStore
from trace_summaries_harness.clickhouse_http import ClickHouseHTTPServer, clickhouse_http_server
from trace_summaries_harness.dagster_cli import PROJECT, materialize_command
from trace_summaries_harness.openai_server import Fault, OpenAICompatibleServer, openai_server
from trace_summaries_harness.ports import free_port
from trace_summaries_tests.reliability.ledger import record
from trace_summaries_tests.support import clock
from trace_summaries_tests.support.environment import child_env
from trace_summaries_tests.support.pipeline_defs import PIPELINE_ASSETS, run_production_job

HOUR = clock.HOUR
HOUR_KEY = clock.HOUR_KEY
_RUN = uuid.uuid4().hex[:20]
LLM_KEY = f"sk-proj-SECRETllm{_RUN}"
WRONG_LLM_KEY = f"sk-proj-WRONGllm{_RUN}"
CH_USER = "ts_reader"
CH_PASSWORD = f"chSECRETpw{_RUN}"
KAFKA_USER = "ts_producer"
KAFKA_PASSWORD = f"kafkaSECRETpw{_RUN}"
SECRETS = {"llm key": LLM_KEY, "wrong llm key": WRONG_LLM_KEY, "clickhouse password": CH_PASSWORD}
SECRETS["kafka password"] = KAFKA_PASSWORD


def secret_forms() -> dict[str, bytes]:
    """Each secret as it could leak: in clear, and inside an HTTP Basic-auth header."""
    forms: dict[str, bytes] = {name: value.encode() for name, value in SECRETS.items()}
    for name, user, password in (
        ("clickhouse password", CH_USER, CH_PASSWORD),
        ("kafka password", KAFKA_USER, KAFKA_PASSWORD),
    ):
        forms[f"{name} (basic auth)"] = base64.b64encode(f"{user}:{password}".encode())
    return forms


def leaks(where: str, haystack: str | bytes) -> list[str]:
    data = haystack.encode(errors="surrogateescape") if isinstance(haystack, str) else haystack
    return [f"{name} in {where}" for name, form in secret_forms().items() if form in data]


# ---------------------------------------------------------------------------------------------------------
# What a run leaves behind
# ---------------------------------------------------------------------------------------------------------


def run_leaks(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    found: list[str] = []
    for entry in instance.all_logs(run_id):
        # The whole entry: message, metadata, step failure (error message, stack, cause chain).
        found += leaks(f"event {entry.dagster_event_type or 'log'}", dg.serialize_value(entry))
    run = instance.get_run_by_id(run_id)
    assert run is not None
    found += leaks("run record", dg.serialize_value(run))
    return found


def file_leaks(*roots: Path) -> list[str]:
    found: list[str] = []
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            found += leaks(str(path.relative_to(root)), path.read_bytes())
    return found


def store_leaks(store: TraceStore) -> list[str]:
    with store.session() as client:
        rows = client.query("SELECT event, distinct_id, properties FROM events").result_rows
    return leaks("events table", "\n".join("\t".join(map(str, row)) for row in rows))


def log_leaks(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> list[str]:
    records = "\n".join(
        f"{r.name} {r.getMessage()} {''.join(traceback.format_exception(*r.exc_info)) if r.exc_info else ''}"
        for r in caplog.records
    )
    out, err = capfd.readouterr()
    # The scan saw the run: Dagster's console log and the libraries' debug records were captured.
    assert "trace_summaries" in err + out and caplog.records
    return leaks("log records", records) + leaks("stdout", out) + leaks("stderr", err)


# ---------------------------------------------------------------------------------------------------------
# Fixtures: a password-protected ClickHouse, a key-protected LLM endpoint, the production environment
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def secret_front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseHTTPServer]:
    with clickhouse_http_server(
        tmp_path_factory.mktemp("secret-front"), user=CH_USER, password=CH_PASSWORD
    ) as server:
        seed_store(
            TraceStore(server.dsn), [61, 62, 63, 64], [HOUR], 3, progress=False, oversized_fraction=0.0
        )
        yield server


@pytest.fixture
def keyed_llm() -> Iterator[OpenAICompatibleServer]:
    with openai_server(require_api_key=LLM_KEY) as server:
        yield server


@pytest.fixture
def production_env(
    monkeypatch: pytest.MonkeyPatch,
    secret_front: ClickHouseHTTPServer,
    keyed_llm: OpenAICompatibleServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> Path:
    """The deployment's environment, secrets included; returns the intermediate directory."""
    intermediate = tmp_path / "intermediate"
    env = {
        "TRACE_SUMMARIES_CLICKHOUSE_DSN": secret_front.dsn,
        "TRACE_SUMMARIES_CLICKHOUSE_CONNECT_ATTEMPTS": "1",
        "OPENAI_API_KEY": LLM_KEY,
        "OPENAI_BASE_URL": keyed_llm.base_url,
        "TRACE_SUMMARIES_INTERMEDIATE_DIR": str(intermediate),
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",  # nobody listens
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "KAFKA_SASL_USERNAME": KAFKA_USER,
        "KAFKA_SASL_PASSWORD": KAFKA_PASSWORD,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config.load_config()
    caplog.set_level(logging.DEBUG)
    return intermediate


def production_resources() -> dict[str, Any]:
    """What ``definitions.py`` builds from the environment (secrets only as ``EnvVar``); the Kafka flush
    timeout shortened so the dead broker costs seconds, not the default 30."""

    def env(name: str) -> dg.EnvVar:
        return dg.EnvVar(name)

    settings = config.load_config()
    clickhouse = clickhouse_resource(settings)
    return {
        "clickhouse": clickhouse,
        "llm": llm_resource(settings),
        "kafka": KafkaResource(
            bootstrap_servers=env("KAFKA_BOOTSTRAP_SERVERS"),
            security_protocol=env("KAFKA_SECURITY_PROTOCOL"),
            sasl_mechanism=env("KAFKA_SASL_MECHANISM"),
            sasl_username=env("KAFKA_SASL_USERNAME"),
            sasl_password=env("KAFKA_SASL_PASSWORD"),
            flush_timeout_s=2.0,
        ),
        "sample_io_manager": sample_io_manager(settings),
        "summary_events_io_manager": summary_events_io_manager(clickhouse),
    }


def materialize(instance: dg.DagsterInstance, team: int) -> dg.ExecuteInProcessResult:
    instance.add_dynamic_partitions(TEAMS.name, [str(team)])
    return run_production_job(production_resources(), instance=instance, partition_key=f"{HOUR_KEY}|{team}")


def everything_leaks(
    instance: dg.DagsterInstance,
    run_id: str,
    intermediate: Path,
    store: TraceStore,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> list[str]:
    return (
        run_leaks(instance, run_id)
        + file_leaks(Path(instance.root_directory), intermediate)
        + store_leaks(store)
        + log_leaks(caplog, capfd)
    )


def record_scan(name: str, found: list[str]) -> None:
    """The scan's ledger row: tried = the secret forms searched for (everywhere the test looked), survived =
    the forms found nowhere (``found`` names each leak ``"<form> in <where>"``, see ``leaks``)."""
    forms = list(secret_forms())
    leaked = {form for form in forms if any(leak.startswith(f"{form} in ") for leak in found)}
    record(
        "security",
        f"secrets:{name}",
        tried=len(forms),
        survived=len(forms) - len(leaked),
        lost=0,
        duplicates=0,
    )


# ---------------------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------------------


def test_a_full_run_with_every_secret_configured_leaks_none(
    production_env: Path,
    secret_front: ClickHouseHTTPServer,
    keyed_llm: OpenAICompatibleServer,
    instance: dg.DagsterInstance,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    result = materialize(instance, 61)

    assert result.success
    # The secrets were in use: the endpoint got the key, the summaries were written with the password,
    # and the SASL producer tried the dead broker.
    assert keyed_llm.chat_requests() and all(r.status == 200 for r in keyed_llm.chat_requests())
    [queued] = result.asset_materializations_for_node("embedding_requests")
    assert queued.metadata["embedding_requests_failed"].value == 3
    # The detector finds each secret where it legitimately is (so finding none elsewhere means something).
    assert leaks("request headers", str(keyed_llm.chat_requests()[0].headers)) == [
        "llm key in request headers"
    ]
    assert leaks("dsn", secret_front.dsn) == ["clickhouse password in dsn"]
    assert leaks("header", "Basic " + base64.b64encode(f"{CH_USER}:{CH_PASSWORD}".encode()).decode())
    found = everything_leaks(
        instance, result.run_id, production_env, TraceStore(secret_front.dsn), caplog, capfd
    )
    record_scan("full_run", found)
    assert found == []


@pytest.mark.parametrize("endpoint", ["rejects the key", "echoes the key in its error"])
def test_a_wrong_llm_key_fails_the_run_without_showing_either_key(
    production_env: Path,
    secret_front: ClickHouseHTTPServer,
    monkeypatch: pytest.MonkeyPatch,
    instance: dg.DagsterInstance,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    endpoint: str,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", WRONG_LLM_KEY)
    with openai_server(require_api_key=LLM_KEY if endpoint == "rejects the key" else None) as server:
        if endpoint == "echoes the key in its error":
            # Some gateways quote the key they refused; the pipeline must not pass that on.
            message = f"Incorrect API key provided: {WRONG_LLM_KEY}"
            server.add_fault_rule("", [Fault.http_status(401, message)], repeat=True)
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        result = materialize(instance, 62)
        calls = server.chat_requests()

    assert not result.success
    assert calls and all(call.status == 401 for call in calls)
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "OPENAI_API_KEY" in failure.step_failure_data.error.message
    found = everything_leaks(
        instance, result.run_id, production_env, TraceStore(secret_front.dsn), caplog, capfd
    )
    record_scan(f"wrong_llm_key:{endpoint.replace(' ', '_')}", found)
    assert found == []


@pytest.mark.parametrize("problem", ["wrong password", "unreachable host", "unresolvable host"])
def test_clickhouse_errors_name_the_host_and_mask_the_password(
    production_env: Path,
    secret_front: ClickHouseHTTPServer,
    monkeypatch: pytest.MonkeyPatch,
    instance: dg.DagsterInstance,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    problem: str,
) -> None:
    host = {
        "wrong password": f"127.0.0.1:{secret_front.port}",
        "unreachable host": f"127.0.0.1:{free_port()}",
        "unresolvable host": "clickhouse.invalid:8123",
    }[problem]
    password = CH_PASSWORD + ("-but-wrong" if problem == "wrong password" else "")
    dsn = f"http://{CH_USER}:{password}@{host}/default"
    monkeypatch.setenv("TRACE_SUMMARIES_CLICKHOUSE_DSN", dsn)

    # Directly: the store's own error.
    with pytest.raises(StoreError) as raised, TraceStore(dsn).session() as client:
        client.query("SELECT 1")
    chain = "".join(traceback.format_exception(raised.value))
    assert host.split(":")[0] in str(raised.value) and "***" in str(raised.value)
    direct = leaks("StoreError and its causes", chain)

    # Through a run: the partition fails with that error, and nothing of the run shows the password.
    result = materialize(instance, 63)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert host.split(":")[0] in failure.step_failure_data.error.message
    found = direct + everything_leaks(
        instance, result.run_id, production_env, TraceStore(secret_front.dsn), caplog, capfd
    )
    record_scan(f"clickhouse:{problem.replace(' ', '_')}", found)
    assert found == []


@pytest.mark.parametrize(
    "overrides",
    [
        {"KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"},  # credentials without SASL
        {"KAFKA_SECURITY_PROTOCOL": "SASL_WHATEVER"},
        {"KAFKA_SASL_MECHANISM": "GSSAPI"},
        {"KAFKA_SASL_USERNAME": ""},  # a password without a user
        {"KAFKA_SSL_CA_LOCATION": "/nonexistent/ca.pem"},
    ],
    ids=["plaintext", "bad-protocol", "bad-mechanism", "no-user", "ca-without-tls"],
)
def test_kafka_configuration_errors_never_echo_the_password(
    monkeypatch: pytest.MonkeyPatch, overrides: dict[str, str]
) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_USERNAME": KAFKA_USER,
        "KAFKA_SASL_PASSWORD": KAFKA_PASSWORD,
        **overrides,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    messages: list[str] = []
    for check in (
        lambda: config.load(config.KafkaConfig).client_config(),
        config.load_config,
    ):
        with pytest.raises(config.SettingError) as raised:
            check()
        messages.append("".join(traceback.format_exception(raised.value)))
    # And as a resource: the producer validates the same settings.
    resource = KafkaResource(
        bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
        security_protocol=env["KAFKA_SECURITY_PROTOCOL"],
        sasl_mechanism=env.get("KAFKA_SASL_MECHANISM"),
        sasl_username=env["KAFKA_SASL_USERNAME"] or None,
        sasl_password=KAFKA_PASSWORD,
        ssl_ca_location=env.get("KAFKA_SSL_CA_LOCATION"),
    )
    with pytest.raises(config.SettingError) as raised:
        resource.producer()
    messages.append("".join(traceback.format_exception(raised.value)))
    found = [leak for message in messages for leak in leaks("kafka settings error", message)]
    clean = [message for message in messages if not leaks("kafka settings error", message)]
    record(
        "security",
        "secrets:kafka_config_errors",
        tried=len(messages),
        survived=len(clean),
        lost=0,
        duplicates=0,
    )
    assert found == []


def test_a_run_in_its_own_process_with_a_wrong_key_prints_no_secret(
    secret_front: ClickHouseHTTPServer,
    keyed_llm: OpenAICompatibleServer,
    instance: dg.DagsterInstance,
    tmp_path: Path,
) -> None:
    """``dagster asset materialize`` as an operator runs it: its whole output and every file it leaves."""
    instance.add_dynamic_partitions(TEAMS.name, ["64"])
    intermediate = tmp_path / "intermediate"
    env = child_env(
        {
            "DAGSTER_HOME": instance.root_directory,
            "TRACE_SUMMARIES_CLICKHOUSE_DSN": secret_front.dsn,
            "TRACE_SUMMARIES_CLICKHOUSE_CONNECT_ATTEMPTS": "1",
            "OPENAI_API_KEY": WRONG_LLM_KEY,
            "OPENAI_BASE_URL": keyed_llm.base_url,
            "TRACE_SUMMARIES_INTERMEDIATE_DIR": str(intermediate),
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_USERNAME": KAFKA_USER,
            "KAFKA_SASL_PASSWORD": KAFKA_PASSWORD,
        }
    )
    select = ",".join(asset.key.to_user_string() for asset in PIPELINE_ASSETS)
    completed = subprocess.run(
        materialize_command(select, f"{HOUR_KEY}|64"),
        env=env,
        cwd=PROJECT,
        capture_output=True,
        timeout=300,
        check=False,
    )

    assert completed.returncode != 0
    assert b"OPENAI_API_KEY" in completed.stderr + completed.stdout
    assert keyed_llm.chat_requests()
    found = (
        leaks("process stdout", completed.stdout)
        + leaks("process stderr", completed.stderr)
        + file_leaks(Path(instance.root_directory), intermediate)
    )
    record_scan("own_process_wrong_key", found)
    assert found == []
