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
