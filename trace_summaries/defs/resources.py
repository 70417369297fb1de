"""Resources: thin handles on the outside world, configured from the environment."""

import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from clickhouse_connect.driver.client import Client

from trace_summaries import settings
from trace_summaries.store import TraceStore
from trace_summaries.summarize import LLMSettings, Summarizer, make_summarizer


class ClickHouseResource(dg.ConfigurableResource):
    """The trace store. ``dsn`` is ``chdb:///<dir>`` (embedded) or ``http(s)://user:pass@host:port/db``."""

    dsn: str

    @property
    def store(self) -> TraceStore:
        return TraceStore(self.dsn)

    @contextmanager
    def session(self) -> Iterator[Client]:
        with self.store.session() as client:
            yield client


def clickhouse_resource() -> ClickHouseResource:
    """The DSN goes through ``EnvVar`` when set (it may carry a password); else the embedded default."""
    if os.environ.get(settings.CLICKHOUSE_DSN):
        return ClickHouseResource(dsn=dg.EnvVar(settings.CLICKHOUSE_DSN))
    return ClickHouseResource(dsn=settings.clickhouse_dsn())


class LLMResource(dg.ConfigurableResource):
    """The summarizer: an OpenAI-compatible endpoint when a key or base URL is set, else the offline one."""

    api_key: str | None = None
    base_url: str | None = None
    model: str = "gpt-4.1-nano"
    timeout_s: float = 120.0

    def summarizer(self, *, model: str | None, max_attempts: int) -> Summarizer:
        settings_ = LLMSettings(
            api_key=self.api_key,
            base_url=self.base_url,
            model=model or self.model,
            timeout_s=self.timeout_s,
            max_attempts=max_attempts,
        )
        return make_summarizer(settings_)


def llm_resource() -> LLMResource:
    """Key and base URL are secrets or deployment facts: passed as ``EnvVar`` so they never show in config."""
    return LLMResource(
        api_key=dg.EnvVar(settings.OPENAI_API_KEY) if os.environ.get(settings.OPENAI_API_KEY) else None,
        base_url=dg.EnvVar(settings.OPENAI_BASE_URL) if os.environ.get(settings.OPENAI_BASE_URL) else None,
        model=os.environ.get(settings.LLM_MODEL) or "gpt-4.1-nano",
    )


@dg.definitions
def resources() -> dg.Definitions:
    from trace_summaries.defs.io_managers import sample_io_manager, summary_events_io_manager

    clickhouse = clickhouse_resource()
    return dg.Definitions(
        resources={
            "clickhouse": clickhouse,
            "llm": llm_resource(),
            "sample_io_manager": sample_io_manager(),
            "summary_events_io_manager": summary_events_io_manager(clickhouse),
        }
    )
