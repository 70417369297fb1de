"""Resources: thin handles on the outside world, configured from the environment."""

import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from clickhouse_connect.driver.client import Client
from pydantic import PrivateAttr

from trace_summaries import settings
from trace_summaries.embeddings import kafka_config
from trace_summaries.embeddings.kafka_config import DEFAULT_EMBEDDING_REQUESTS_TOPIC
from trace_summaries.embeddings.producer import EmbeddingRequestProducer
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


class KafkaResource(dg.ConfigurableResource):
    """The broker that receives embedding requests; unset bootstrap servers means Kafka is not configured."""

    bootstrap_servers: str | None = None
    security_protocol: str | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_ca_location: str | None = None
    topic: str = DEFAULT_EMBEDDING_REQUESTS_TOPIC
    flush_timeout_s: float = 30.0

    _started: EmbeddingRequestProducer | None = PrivateAttr(default=None)

    @property
    def configured(self) -> bool:
        return bool(self.bootstrap_servers)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Starts the producer when the resource is initialized: with the in-process executor that is the
        start of the run, so the producer's ~1 s of start-up overlaps sampling and summarizing instead of
        delaying the `embedding_requests` step."""
        if not self.configured:
            return
        try:
            self._started = self.producer()
        except settings.SettingError:
            return  # invalid settings: the step that sends reports them
        self._started.connect()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._started is not None:
            self._started.close()
            self._started = None

    def producer(self) -> EmbeddingRequestProducer:
        """The producer started with the resource, else a new one. Validates the settings the same way the
        worker does (same variable names in every error)."""
        if self._started is not None:
            return self._started
        environ = {
            name: value
            for name, value in (
                (kafka_config.KAFKA_BOOTSTRAP_SERVERS, self.bootstrap_servers),
                (kafka_config.KAFKA_SECURITY_PROTOCOL, self.security_protocol),
                (kafka_config.KAFKA_SASL_MECHANISM, self.sasl_mechanism),
                (kafka_config.KAFKA_SASL_USERNAME, self.sasl_username),
                (kafka_config.KAFKA_SASL_PASSWORD, self.sasl_password),
                (kafka_config.KAFKA_SSL_CA_LOCATION, self.ssl_ca_location),
            )
            if value
        }
        return EmbeddingRequestProducer(
            kafka_config.kafka_config_from_env(environ), self.topic, flush_timeout_s=self.flush_timeout_s
        )


def kafka_resource() -> KafkaResource:
    """Every Kafka setting comes from the environment; the password only ever as an ``EnvVar``."""

    def env(name: str) -> dg.EnvVar | None:
        return dg.EnvVar(name) if os.environ.get(name) else None

    if os.environ.get(kafka_config.KAFKA_BOOTSTRAP_SERVERS):
        kafka_config.kafka_config_from_env()  # invalid settings fail at load time, naming the variable

    return KafkaResource(
        bootstrap_servers=env(kafka_config.KAFKA_BOOTSTRAP_SERVERS),
        security_protocol=env(kafka_config.KAFKA_SECURITY_PROTOCOL),
        sasl_mechanism=env(kafka_config.KAFKA_SASL_MECHANISM),
        sasl_username=env(kafka_config.KAFKA_SASL_USERNAME),
        sasl_password=env(kafka_config.KAFKA_SASL_PASSWORD),
        ssl_ca_location=env(kafka_config.KAFKA_SSL_CA_LOCATION),
        topic=kafka_config.embedding_requests_topic(),
    )


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

    settings.validate_environment()  # invalid settings fail at load, naming the variable

    clickhouse = clickhouse_resource()
    return dg.Definitions(
        resources={
            "clickhouse": clickhouse,
            "llm": llm_resource(),
            "kafka": kafka_resource(),
            "sample_io_manager": sample_io_manager(),
            "summary_events_io_manager": summary_events_io_manager(clickhouse),
        }
    )
