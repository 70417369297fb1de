"""Every environment variable the project reads, with its default, in one place.

Dagster resources read secrets through ``dagster.EnvVar`` at run time; the plain functions here serve the
CLI, the seeder and the defaults of those resources, so a number is defined exactly once.
"""

from __future__ import annotations

import os
from pathlib import Path

CLICKHOUSE_DSN = "TRACE_SUMMARIES_CLICKHOUSE_DSN"
DATA_DIR = "TRACE_SUMMARIES_DATA_DIR"
START_DATE = "TRACE_SUMMARIES_START_DATE"
ALLOWED_TEAM_IDS = "TRACE_SUMMARIES_ALLOWED_TEAM_IDS"
DISCOVER_TEAMS = "TRACE_SUMMARIES_DISCOVER_TEAMS"
INTERMEDIATE_DIR = "TRACE_SUMMARIES_INTERMEDIATE_DIR"
OPENAI_API_KEY = "OPENAI_API_KEY"
OPENAI_BASE_URL = "OPENAI_BASE_URL"
LLM_MODEL = "TRACE_SUMMARIES_LLM_MODEL"
KAFKA_BOOTSTRAP_SERVERS = "KAFKA_BOOTSTRAP_SERVERS"

DEFAULT_DATA_DIR = Path(".data")


class SettingError(ValueError):
    """A setting is missing or malformed; the message names the variable so the fix is obvious."""


def data_dir() -> Path:
    """Where embedded state lives (chDB store, intermediates); project-local so `make dev` needs nothing."""
    return Path(os.environ.get(DATA_DIR) or DEFAULT_DATA_DIR).resolve()


def clickhouse_dsn() -> str:
    """The trace store: an HTTP(S) ClickHouse in production, an embedded chDB directory by default."""
    return os.environ.get(CLICKHOUSE_DSN) or f"chdb://{data_dir() / 'clickhouse'}"


def partitions_start() -> str:
    """First hour partition, ``YYYY-MM-DD-HH:00``.

    Hour x team multiplies the partition count and large counts slow the UI's job pages, so by default the
    partitions start a week ago (midnight UTC) rather than at some fixed historical date.
    """
    from datetime import UTC, datetime, timedelta

    raw = os.environ.get(START_DATE)
    if not raw:
        start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=7)
        return start.strftime("%Y-%m-%d-%H:00")
    for fmt in ("%Y-%m-%d-%H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(raw, fmt).strftime("%Y-%m-%d-%H:00")
        except ValueError:
            continue
    raise SettingError(f"{START_DATE}={raw!r} is not a date: use YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC)")


def intermediate_dir() -> Path:
    return Path(os.environ.get(INTERMEDIATE_DIR) or data_dir() / "intermediate").resolve()


SCHEDULE_MINUTE = "TRACE_SUMMARIES_SCHEDULE_MINUTE"
SCHEDULE_LATENESS_MINUTES = "TRACE_SUMMARIES_SCHEDULE_LATENESS_MINUTES"
SCHEDULE_MODE = "TRACE_SUMMARIES_SCHEDULE_MODE"
SHARD_THRESHOLD = "TRACE_SUMMARIES_SHARD_THRESHOLD"
SHARD_SIZE = "TRACE_SUMMARIES_SHARD_SIZE"
RETRY_FAILED_MAX = "TRACE_SUMMARIES_RETRY_FAILED_MAX"


def int_setting(
    name: str, default: int, *, low: int, high: int, environ: dict[str, str] | None = None
) -> int:
    raw = (environ if environ is not None else os.environ).get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise SettingError(f"{name}={value} is out of range [{low}, {high}]")
    return value


def choice_setting(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (os.environ.get(name) or default).strip()
    if value not in choices:
        raise SettingError(f"{name}={value!r}: expected one of {', '.join(choices)}")
    return value


S3_BUCKET = "TRACE_SUMMARIES_S3_BUCKET"
S3_PREFIX = "TRACE_SUMMARIES_S3_PREFIX"
# Read by boto3 itself as well; named here so configuration lives in one table.
AWS_ENDPOINT_URL = "AWS_ENDPOINT_URL"
AWS_REGION = "AWS_REGION"


# How patiently the trace store is reached when a session opens (connect + schema probe): a ClickHouse
# that is restarting or briefly unreachable costs a few retries, not a failed partition.
CLICKHOUSE_CONNECT_ATTEMPTS = "TRACE_SUMMARIES_CLICKHOUSE_CONNECT_ATTEMPTS"
CLICKHOUSE_CONNECT_BACKOFF_MS = "TRACE_SUMMARIES_CLICKHOUSE_CONNECT_BACKOFF_MS"
DEFAULT_CLICKHOUSE_CONNECT_ATTEMPTS = 4
DEFAULT_CLICKHOUSE_CONNECT_BACKOFF_MS = 500


def clickhouse_connect_attempts() -> int:
    """Attempts at opening a store session before giving up (1 = no retry)."""
    return int_setting(CLICKHOUSE_CONNECT_ATTEMPTS, DEFAULT_CLICKHOUSE_CONNECT_ATTEMPTS, low=1, high=20)


def clickhouse_connect_backoff_s() -> float:
    """The wait after the first failed attempt; it doubles after each further one (capped at 30 s)."""
    return (
        int_setting(CLICKHOUSE_CONNECT_BACKOFF_MS, DEFAULT_CLICKHOUSE_CONNECT_BACKOFF_MS, low=0, high=60_000)
        / 1000
    )


# ---------------------------------------------------------------------------------------------------------
# Load-time validation: every setting checked when the code location loads, so a misconfigured deployment
# fails at start-up with the variable's name instead of at the first schedule tick, sensor or run.
# ---------------------------------------------------------------------------------------------------------

# (default, low, high) of the integer settings, as their readers use them (schedules.py, sensors.py, here).
LLM_CONCURRENCY = "TRACE_SUMMARIES_LLM_CONCURRENCY"
LLM_MAX_ATTEMPTS = "TRACE_SUMMARIES_LLM_MAX_ATTEMPTS"

# name: (default, low, high). The one place an integer setting's default and range are written.
INT_SETTING_BOUNDS: dict[str, tuple[int, int, int]] = {
    LLM_CONCURRENCY: (5, 1, 1000),
    LLM_MAX_ATTEMPTS: (4, 1, 20),
    SCHEDULE_MINUTE: (15, 0, 59),
    SCHEDULE_LATENESS_MINUTES: (0, 0, 1440),
    SHARD_THRESHOLD: (50, 0, 100_000),
    SHARD_SIZE: (50, 1, 10_000),
    RETRY_FAILED_MAX: (2, 0, 20),
    CLICKHOUSE_CONNECT_ATTEMPTS: (DEFAULT_CLICKHOUSE_CONNECT_ATTEMPTS, 1, 20),
    CLICKHOUSE_CONNECT_BACKOFF_MS: (DEFAULT_CLICKHOUSE_CONNECT_BACKOFF_MS, 0, 60_000),
}

# S3 bucket naming rules (the common mistake is a URL, s3://bucket/prefix, where a name is expected).
_S3_BUCKET_NAME = r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"


def _url_problem(name: str, value: str, schemes: tuple[str, ...]) -> str | None:
    """Why ``value`` is not a usable URL for ``name`` (never echoing credentials), or None."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        return f"{name} is not a valid URL ({exc})"
    if parts.scheme not in schemes:
        return f"{name} has scheme {parts.scheme or '(none)'!r}: expected {' or '.join(schemes)}"
    if not parts.hostname:
        return f"{name} has no host"
    return None


def _clickhouse_dsn_problem(value: str) -> str | None:
    if value.startswith("chdb://"):
        if value.removeprefix("chdb://").strip():
            return None
        return f"{CLICKHOUSE_DSN}=chdb:// names no directory (chdb:///<dir>)"
    problem = _url_problem(CLICKHOUSE_DSN, value, ("http", "https"))
    if problem:
        return problem + " (chdb:///<dir>, or http(s)://user:password@host:port/database)"
    return None


def environment_problems() -> list[str]:
    """Every invalid setting in ``os.environ``, one message each, each naming its variable."""
    import re
    from collections.abc import Callable

    from trace_summaries.embeddings import kafka_config  # late: kafka_config imports this module
    from trace_summaries.run_plan import SCHEDULE_MODES
    from trace_summaries.team_set import TeamSetConfig
    from trace_summaries.teams import InvalidTeamKey

    env = os.environ
    problems: list[str] = []

    def check(function: Callable[..., object], *args: object, **kwargs: object) -> None:
        try:
            function(*args, **kwargs)
        except (SettingError, InvalidTeamKey) as exc:
            problems.append(str(exc))

    if (dsn := (env.get(CLICKHOUSE_DSN) or "").strip()) and (problem := _clickhouse_dsn_problem(dsn)):
        problems.append(problem)
    for name in (DATA_DIR, INTERMEDIATE_DIR):
        if (raw := env.get(name)) and Path(raw).exists() and not Path(raw).is_dir():
            problems.append(f"{name}={raw!r} exists and is not a directory")
    check(partitions_start)
    for name, (default, low, high) in INT_SETTING_BOUNDS.items():
        check(int_setting, name, default, low=low, high=high)
    check(choice_setting, SCHEDULE_MODE, "auto", SCHEDULE_MODES)
    check(TeamSetConfig.from_env, env)

    for name in (OPENAI_BASE_URL, AWS_ENDPOINT_URL):
        if (raw := (env.get(name) or "").strip()) and (problem := _url_problem(name, raw, ("http", "https"))):
            problems.append(problem)
    if LLM_MODEL in env and not env[LLM_MODEL].strip():
        problems.append(f"{LLM_MODEL} is set but empty: unset it for the default model")

    bucket = (env.get(S3_BUCKET) or "").strip()
    if bucket and not re.fullmatch(_S3_BUCKET_NAME, bucket):
        problems.append(
            f"{S3_BUCKET}={bucket!r} is not a bucket name (3-63 lowercase letters, digits, '.', '-'; "
            f"no s3:// and no path: the path goes in {S3_PREFIX})"
        )
    if not bucket and (env.get(S3_PREFIX) or "").strip():
        problems.append(f"{S3_PREFIX} is set but {S3_BUCKET} is not: intermediates would stay on local disk")

    if (env.get(KAFKA_BOOTSTRAP_SERVERS) or "").strip():
        check(kafka_config.kafka_config_from_env, env)
    else:
        for name in (
            kafka_config.KAFKA_SECURITY_PROTOCOL,
            kafka_config.KAFKA_SASL_MECHANISM,
            kafka_config.KAFKA_SASL_USERNAME,
            kafka_config.KAFKA_SASL_PASSWORD,
            kafka_config.KAFKA_SSL_CA_LOCATION,
            kafka_config.KAFKA_TOPIC_EMBEDDING_REQUESTS,
        ):
            if (env.get(name) or "").strip():
                problems.append(f"{name} is set but {KAFKA_BOOTSTRAP_SERVERS} is not: nothing would be sent")
    return problems


def configured_int(name: str) -> int:
    """An integer setting with the default and range of ``INT_SETTING_BOUNDS``."""
    default, low, high = INT_SETTING_BOUNDS[name]
    return int_setting(name, default, low=low, high=high)


def validate_environment() -> None:
    """Raises ``SettingError`` listing every invalid setting (each message names its variable)."""
    problems = environment_problems()
    if problems:
        raise SettingError("invalid configuration: " + "; ".join(problems))
