"""Configuration is environment variables only: every one the code reads is in the README's table, the
example deployment environment lists them all, and invalid values fail when the code location loads, with a
message naming the variable.

The variables are collected from the code itself, three ways, so a new variable cannot slip past:

* every field of the typed configuration (``config.variable_names()``);

* every module-level string constant, in every module of ``trace_summaries``, whose value looks like one of
  our variable names (``TRACE_SUMMARIES_*``, ``KAFKA_*``, ``OPENAI_*``, ``AWS_*``);
* every name passed to an environment read (``os.environ.get/[]``, ``os.getenv``, ``environ.get``/``env.get``
  on any mapping called so, ``EnvVar(...)``, ``int_setting``/``choice_setting``, kafka_config's ``_get``),
  whether written as a literal or as a constant, which is resolved in the imported module.
"""

from __future__ import annotations

import ast
import importlib
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import trace_summaries
from trace_summaries import config
from trace_summaries_tests.support import clock
from trace_summaries_tests.support.environment import base

PROJECT = Path(__file__).resolve().parents[1]
README = PROJECT / "README.md"
EXAMPLE_ENV = PROJECT / "deploy" / "secrets.example.env"
DAGSTER = str(Path(sys.executable).with_name("dagster"))
DSN = "TRACE_SUMMARIES_CLICKHOUSE_DSN"

ENV_NAME = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")
OUR_PREFIXES = ("TRACE_SUMMARIES_", "KAFKA_", "OPENAI_", "AWS_")
# Callables whose (any positional) argument is a variable name.
ENV_READERS = {"getenv", "EnvVar", "int_setting", "choice_setting", "_get"}
# Methods that read a variable when called on something named like an environment mapping.
MAPPING_READS = {"get", "pop", "setdefault"}
# Variables that are not ours but that a production deployment sets (boto3 reads the AWS ones, Dagster its
# planned-events switch); documented too.
DOCUMENTED_EXTRAS = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS",
    "DAGSTER_EVENT_BATCH_SIZE",
}
# A few names the scan must find, so a scanner that silently finds nothing cannot pass.
KNOWN = {
    "TRACE_SUMMARIES_CLICKHOUSE_DSN",
    "TRACE_SUMMARIES_START_DATE",
    "TRACE_SUMMARIES_SCHEDULE_MODE",
    "TRACE_SUMMARIES_ALLOWED_TEAM_IDS",
    "TRACE_SUMMARIES_S3_BUCKET",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_SASL_PASSWORD",
    "AWS_ENDPOINT_URL",
}


# ----------------------------------------------------------------------------------------------------------
# Collecting the variables the code reads
# ----------------------------------------------------------------------------------------------------------


def package_modules() -> dict[str, Path]:
    """Every module of the package (``trace_summaries.x.y`` -> its file)."""
    root = Path(trace_summaries.__file__).parent
    modules = {"trace_summaries": root / "__init__.py"}
    for info in pkgutil.walk_packages([str(root)], prefix="trace_summaries."):
        relative = info.name.split(".")[1:]
        path = root.joinpath(*relative)
        modules[info.name] = path / "__init__.py" if info.ispkg else path.with_suffix(".py")
    return modules


def _is_environ(node: ast.expr) -> bool:
    text = ast.unparse(node)
    return text in ("env", "environ") or text.endswith("environ")


def _callee_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _resolve(node: ast.expr, namespace: dict[str, object]) -> str | None:
    """A literal string, or a (dotted) constant looked up in the imported module."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    value: object = namespace.get(node.id)
    for attribute in reversed(parts):
        value = getattr(value, attribute, None)
    return value if isinstance(value, str) else None


def names_read_in(module_name: str, path: Path) -> set[str]:
    """Variable names passed to environment reads in one module (literals and resolved constants)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    # Importing the code location loads every definition inside the test process, and Dagster keeps
    # process-wide state from that load; it reads no variable itself, so its constants are not needed.
    if module_name == "trace_summaries.definitions":
        return names_read_in_tree(tree, {})
    return names_read_in_tree(tree, vars(importlib.import_module(module_name)))


def names_read_in_tree(tree: ast.AST, namespace: dict[str, object]) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        arguments: list[ast.expr] = []
        if isinstance(node, ast.Call):
            callee = _callee_name(node.func)
            reads_mapping = (
                isinstance(node.func, ast.Attribute)
                and node.func.attr in MAPPING_READS
                and _is_environ(node.func.value)
            )
            if callee in ENV_READERS or reads_mapping:
                arguments = list(node.args)
        elif isinstance(node, ast.Subscript) and _is_environ(node.value):
            arguments = [node.slice]
        elif isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators):
            arguments = [node.left]  # `NAME in os.environ`
        for argument in arguments:
            value = _resolve(argument, namespace)
            if value is not None and ENV_NAME.fullmatch(value):
                found.add(value)
    return found


def constants_in(module_name: str) -> set[str]:
    """Module-level string constants whose value is one of our variable names."""
    return {
        value
        for name, value in vars(importlib.import_module(module_name)).items()
        if name.isupper() and isinstance(value, str) and ENV_NAME.fullmatch(value)
        if value.startswith(OUR_PREFIXES)
    }


def variables_in_code() -> set[str]:
    found: set[str] = config.variable_names()
    for module_name, path in package_modules().items():
        found |= constants_in(module_name) | names_read_in(module_name, path)
    return found


# ----------------------------------------------------------------------------------------------------------
# The README's table and the example environment
# ----------------------------------------------------------------------------------------------------------


def readme_section(title: str) -> str:
    text = README.read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


def configuration_table() -> dict[str, list[str]]:
    """``name -> [meaning, default, example]`` from the table(s) of the Configuration section."""
    rows: dict[str, list[str]] = {}
    for line in readme_section("Configuration").splitlines():
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        names = re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0])
        if not names:
            continue  # the header row
        assert len(names) == 1, f"one variable per row: {line}"
        assert names[0] not in rows, f"{names[0]} is in the table twice"
        rows[names[0]] = cells[1:]
    return rows


def example_env() -> tuple[dict[str, str], set[str]]:
    """The example deployment environment: variables set, and every variable mentioned (set or commented)."""
    assigned: dict[str, str] = {}
    mentioned: set[str] = set()
    for line in EXAMPLE_ENV.read_text().splitlines():
        stripped = line.strip()
        if match := re.fullmatch(r"#\s*([A-Z][A-Z0-9_]+)=.*", stripped):
            mentioned.add(match.group(1))
        elif stripped and not stripped.startswith("#"):
            name, sep, value = stripped.partition("=")
            assert sep and ENV_NAME.fullmatch(name), f"not NAME=value: {line!r}"
            assigned[name] = value
            mentioned.add(name)
    return assigned, mentioned


class Names:
    START_DATE = "TRACE_SUMMARIES_START_DATE"


def test_the_scan_finds_the_variables_of_every_kind() -> None:
    found = variables_in_code()
    assert found >= KNOWN, sorted(KNOWN - found)
    # Literal reads are seen too, not only the named constants.
    snippet = """
import os
NAME = "NAMED_VARIABLE"
os.environ.get("LITERAL_VARIABLE")
os.environ["SUBSCRIPTED_VARIABLE"]
os.getenv(NAME)
dg.EnvVar("ENVVAR_VARIABLE")
environ.get("TRACE_SUMMARIES_START_DATE")
if "MEMBERSHIP_VARIABLE" in os.environ:
    pass
"""
    assert names_read_in_tree(ast.parse(snippet), {"NAME": "NAMED_VARIABLE", "names": Names}) == {
        "LITERAL_VARIABLE",
        "SUBSCRIPTED_VARIABLE",
        "NAMED_VARIABLE",
        "ENVVAR_VARIABLE",
        "TRACE_SUMMARIES_START_DATE",
        "MEMBERSHIP_VARIABLE",
    }


def test_every_variable_the_code_reads_is_in_the_readme_table() -> None:
    table = configuration_table()
    missing = sorted(variables_in_code() - set(table))
    assert not missing, f"add these to README.md's Configuration table: {missing}"


def test_the_readme_table_documents_only_variables_that_exist_and_fills_every_column() -> None:
    table = configuration_table()
    stale = sorted(set(table) - variables_in_code() - DOCUMENTED_EXTRAS)
    assert not stale, f"README.md documents variables the code no longer reads: {stale}"
    for name, cells in table.items():
        assert len(cells) == 3 and all(cells), f"{name}: meaning, default and example are all required"


def integer_defaults() -> dict[str, int]:
    """Every integer setting's variable and default, from the configuration's fields."""
    return {
        section.variables()[name]: field.default
        for section in config.SECTIONS
        for name, field in section.model_fields.items()
        if field.annotation is int
    }


def test_readme_defaults_of_integer_settings_match_the_code() -> None:
    table = configuration_table()
    assert len(integer_defaults()) >= 9
    for name, default in integer_defaults().items():
        assert re.search(rf"\b{default}\b", table[name][1].replace(",", "").replace("_", "")), (
            f"{name}: README default {table[name][1]!r}, code default {default}"
        )


def test_the_example_deployment_environment_mentions_every_variable_and_holds_no_secrets() -> None:
    assigned, mentioned = example_env()
    missing = sorted(variables_in_code() - mentioned)
    assert not missing, f"add these (set or commented out) to {EXAMPLE_ENV.name}: {missing}"
    undocumented = sorted(mentioned - set(configuration_table()))
    assert not undocumented, f"{EXAMPLE_ENV.name} sets variables the README does not document: {undocumented}"
    for name, value in assigned.items():
        # kubectl --from-env-file keeps quotes as part of the value.
        assert not value.startswith(("'", '"')), f"{name}: no quotes in an env file"
        if any(word in name for word in ("PASSWORD", "SECRET", "API_KEY")):
            assert "change-me" in value, f"{name}: placeholders only in the example ({value!r})"
    assert "change-me" in assigned["TRACE_SUMMARIES_CLICKHOUSE_DSN"]


# ----------------------------------------------------------------------------------------------------------
# Invalid settings fail at load time, naming the variable
# ----------------------------------------------------------------------------------------------------------


def clean_env(tmp_path: Path, overrides: dict[str, str]) -> dict[str, str]:
    """Our environment without any of the project's variables, plus a data dir, a start date, overrides."""
    env = {k: v for k, v in base().items() if not k.startswith(OUR_PREFIXES)}
    env |= {
        "TRACE_SUMMARIES_DATA_DIR": str(tmp_path / "data"),
        "TRACE_SUMMARIES_START_DATE": clock.PARTITIONS_START.isoformat(),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }
    (tmp_path / "dagster_home").mkdir(exist_ok=True)
    return env | overrides


def load_definitions(tmp_path: Path, overrides: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Loads the code location in a fresh interpreter, as a code server does at start-up."""
    return subprocess.run(
        [sys.executable, "-c", "import trace_summaries.definitions"],
        cwd=tmp_path,
        env=clean_env(tmp_path, overrides),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


INVALID_AT_LOAD = [
    pytest.param({"TRACE_SUMMARIES_START_DATE": "garbage"}, "TRACE_SUMMARIES_START_DATE", id="start-date"),
    pytest.param({"TRACE_SUMMARIES_SCHEDULE_MODE": "bogus"}, "TRACE_SUMMARIES_SCHEDULE_MODE", id="mode"),
    pytest.param(
        {"KAFKA_BOOTSTRAP_SERVERS": "kafka:9092", "KAFKA_SASL_USERNAME": "svc"},
        "KAFKA_SASL_PASSWORD",
        id="sasl-user-without-password",
    ),
    pytest.param({"KAFKA_SASL_USERNAME": "svc"}, "KAFKA_SASL_USERNAME", id="sasl-without-brokers"),
    pytest.param({DSN: "ftp://x"}, "TRACE_SUMMARIES_CLICKHOUSE_DSN", id="dsn"),
    pytest.param({"TRACE_SUMMARIES_S3_BUCKET": "s3://b/p"}, "TRACE_SUMMARIES_S3_BUCKET", id="bucket-url"),
    pytest.param(
        {"TRACE_SUMMARIES_ALLOWED_TEAM_IDS": "1,two"}, "TRACE_SUMMARIES_ALLOWED_TEAM_IDS", id="allowlist"
    ),
]


@pytest.mark.parametrize(("overrides", "variable"), INVALID_AT_LOAD)
def test_an_invalid_setting_fails_loading_the_code_location_naming_the_variable(
    tmp_path: Path, overrides: dict[str, str], variable: str
) -> None:
    result = load_definitions(tmp_path, overrides)
    assert result.returncode != 0, f"loaded despite {overrides}"
    errors = [
        line for line in result.stderr.splitlines() if "SettingError" in line or "InvalidTeamKey" in line
    ]
    assert errors and variable in errors[-1], result.stderr[-3000:]
    # Secrets never appear in the error, even when the variable holding them is the one that is wrong.
    assert "change-me" not in result.stderr


def test_the_example_deployment_environment_loads(tmp_path: Path) -> None:
    """What a user sets by following the README's production section is a loadable code location (no
    connection is made at load: the example hosts need not exist)."""
    assigned, _ = example_env()
    result = subprocess.run(
        [DAGSTER, "definitions", "validate", "-m", "trace_summaries.definitions"],
        cwd=tmp_path,
        env=clean_env(tmp_path, assigned),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "change-me" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({DSN: "clickhouse.internal:8443"}, DSN),
        ({DSN: "https://u:change-me@:8443/db"}, DSN),
        ({DSN: "https://u:change-me@h:port/db"}, DSN),
        ({DSN: "chdb://"}, DSN),
        ({"TRACE_SUMMARIES_SCHEDULE_MINUTE": "60"}, "TRACE_SUMMARIES_SCHEDULE_MINUTE"),
        ({"TRACE_SUMMARIES_SCHEDULE_LATENESS_MINUTES": "soon"}, "TRACE_SUMMARIES_SCHEDULE_LATENESS_MINUTES"),
        ({"TRACE_SUMMARIES_SHARD_SIZE": "0"}, "TRACE_SUMMARIES_SHARD_SIZE"),
        ({"TRACE_SUMMARIES_SHARD_THRESHOLD": "-1"}, "TRACE_SUMMARIES_SHARD_THRESHOLD"),
        ({"TRACE_SUMMARIES_RETRY_FAILED_MAX": "x"}, "TRACE_SUMMARIES_RETRY_FAILED_MAX"),
        ({"TRACE_SUMMARIES_CLICKHOUSE_CONNECT_ATTEMPTS": "0"}, "TRACE_SUMMARIES_CLICKHOUSE_CONNECT_ATTEMPTS"),
        ({"TRACE_SUMMARIES_DISCOVER_TEAMS": "maybe"}, "TRACE_SUMMARIES_DISCOVER_TEAMS"),
        ({"TRACE_SUMMARIES_S3_PREFIX": "ts"}, "TRACE_SUMMARIES_S3_PREFIX"),
        ({"AWS_ENDPOINT_URL": "minio:9000"}, "AWS_ENDPOINT_URL"),
        ({"OPENAI_BASE_URL": "localhost:8000/v1"}, "OPENAI_BASE_URL"),
        ({"TRACE_SUMMARIES_LLM_MODEL": " "}, "TRACE_SUMMARIES_LLM_MODEL"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
        (
            {"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}
            | {"KAFKA_SASL_MECHANISM": "GSSAPI"},
            "KAFKA_SASL_MECHANISM",
        ),
        ({"KAFKA_SSL_CA_LOCATION": "/etc/ca.pem"}, "KAFKA_SSL_CA_LOCATION"),
    ],
)
def test_validate_environment_names_each_invalid_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, overrides: dict[str, str], variable: str
) -> None:
    for name in list(os.environ):
        if name.startswith(OUR_PREFIXES):
            monkeypatch.delenv(name)
    for name, value in clean_env(tmp_path, overrides).items():
        monkeypatch.setenv(name, value)
    problems = config.environment_problems()
    assert len(problems) == 1 and variable in problems[0], problems
    assert "change-me" not in problems[0]
    with pytest.raises(config.SettingError, match=variable):
        config.load_config()


def test_validate_environment_accepts_the_defaults_and_the_example_deployment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in list(os.environ):
        if name.startswith(OUR_PREFIXES):
            monkeypatch.delenv(name)
    for name, value in clean_env(tmp_path, {}).items():
        monkeypatch.setenv(name, value)
    assert config.environment_problems() == []
    assigned, _ = example_env()
    for name, value in assigned.items():
        monkeypatch.setenv(name, value)
    assert config.environment_problems() == []
