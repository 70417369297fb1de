"""Resources: thin handles on the outside world, built from the one configuration (``config.py``).

Secrets and deployment addresses reach a resource as ``dagster.EnvVar``, so they are read at run time and
never appear in the run configuration shown by the UI.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from clickhouse_connect.driver.client import Client
from pydantic import PrivateAttr, SecretStr

from trace_summaries.config import (
    DEFAULT_EMBEDDING_REQUESTS_TOPIC,
    Config,
    KafkaConfig,
    LLMConfig,
    SettingError,
)
from trace_summaries.queue.producer import EmbeddingRequestProducer
from trace_summaries.store import TraceStore
from trace_summaries.summarize import PROMPT_VERSION, LLMSettings, Summarizer, make_summarizer
from trace_summaries.summarize.context_window import ContextWindow, context_tokens, reported_context_tokens

_LLM_DEFAULTS = LLMConfig.model_fields


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


class LLMResource(dg.ConfigurableResource):
    """The summarizer: an OpenAI-compatible endpoint when a key or base URL is set, else the offline one.

    ``concurrency`` and ``max_attempts`` are the defaults of a run's ``batch_size`` and ``max_attempts``.
    """

    api_key: str | None = None
    base_url: str | None = None
    model: str = _LLM_DEFAULTS["model"].default
    timeout_s: float = _LLM_DEFAULTS["timeout_s"].default
    trace_deadline_s: float = _LLM_DEFAULTS["trace_deadline_s"].default
    concurrency: int = _LLM_DEFAULTS["concurrency"].default
    max_attempts: int = _LLM_DEFAULTS["max_attempts"].default
    context_tokens: int | None = None
    max_output_tokens: int = _LLM_DEFAULTS["max_output_tokens"].default
    # Checked by ``LLMSettings`` (Dagster's config types have no literals).
    service_tier: str | None = None
    reasoning_effort: str | None = None
    temperature: float | None = None
    prompt_version: str | None = None

    @property
    def has_endpoint(self) -> bool:
        return bool(self.api_key) or bool(self.base_url)

    def context_window(self, model: str | None) -> ContextWindow | None:
        """The model's context (``summarize.context_window``); None for the offline summarizer."""
        if not self.has_endpoint:
            return None
        name = model or self.model
        reported = reported_context_tokens(self.base_url, name, self.api_key) if self.base_url else None
        tokens = context_tokens(name, override=self.context_tokens, reported=reported)
        return ContextWindow(tokens=tokens, reported_by_endpoint=reported is not None)

    def settings(
        self, *, model: str | None = None, max_attempts: int | None = None, bounded_output: bool = False
    ) -> LLMSettings:
        """The endpoint and its budget, for the summarizer and for anything else that asks the LLM."""
        return LLMSettings(
            api_key=self.api_key,
            base_url=self.base_url,
            model=model or self.model,
            timeout_s=self.timeout_s,
            trace_deadline_s=self.trace_deadline_s,
            max_attempts=max_attempts or self.max_attempts,
            max_output_tokens=self.max_output_tokens,
            service_tier=self.service_tier,
            reasoning_effort=self.reasoning_effort,
            temperature=self.temperature,
            prompt_version=self.prompt_version or PROMPT_VERSION,
            bounded_output=bounded_output,
        )

    def summarizer(
        self, *, model: str | None, max_attempts: int | None, bounded_output: bool = False
    ) -> Summarizer:
        return make_summarizer(
            self.settings(model=model, max_attempts=max_attempts, bounded_output=bounded_output)
        )


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
        start of the run, so the producer's start-up overlaps sampling and summarizing instead of delaying
        the `embedding_requests` step."""
        if not self.configured:
            return
        try:
            self._started = self.producer()
        except SettingError:
            return  # invalid settings: the step that sends reports them
        self._started.connect()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._started is not None:
            self._started.close()
            self._started = None

    def producer(self) -> EmbeddingRequestProducer:
        """The producer started with the resource, else a new one, checked by the same rules (and with
        the same variable names in every error) as the configuration and the worker."""
        if self._started is not None:
            return self._started
        settings = KafkaConfig.model_construct(
            bootstrap_servers=self.bootstrap_servers,
            security_protocol=self.security_protocol,
            sasl_mechanism=self.sasl_mechanism,
            sasl_username=self.sasl_username,
            sasl_password=SecretStr(self.sasl_password) if self.sasl_password else None,
            ssl_ca_location=self.ssl_ca_location,
        )
        return EmbeddingRequestProducer(
            settings.client_config(), self.topic, flush_timeout_s=self.flush_timeout_s
        )


def _env(name: str, value: object) -> str | None:
    """An ``EnvVar`` (read again at run time) for a variable the configuration found set, else None."""
    return dg.EnvVar(name) if value is not None else None


def clickhouse_resource(config: Config) -> ClickHouseResource:
    """The DSN goes through ``EnvVar`` when set (it may carry a password); else the embedded default."""
    if config.store.dsn_is_set:
        return ClickHouseResource(dsn=dg.EnvVar("TRACE_SUMMARIES_CLICKHOUSE_DSN"))
    return ClickHouseResource(dsn=config.store.dsn)


def llm_resource(config: Config) -> LLMResource:
    """Key and base URL are secrets or deployment facts: passed as ``EnvVar`` so they never show in config."""
    return LLMResource(
        api_key=_env("OPENAI_API_KEY", config.llm.api_key),
        base_url=_env("OPENAI_BASE_URL", config.llm.base_url),
        model=config.llm.model,
        timeout_s=config.llm.timeout_s,
        trace_deadline_s=config.llm.trace_deadline_s,
        concurrency=config.llm.concurrency,
        max_attempts=config.llm.max_attempts,
        context_tokens=config.llm.context_tokens,
        max_output_tokens=config.llm.max_output_tokens,
        service_tier=config.llm.service_tier,
        reasoning_effort=config.llm.reasoning_effort,
        temperature=config.llm.temperature,
        prompt_version=config.llm.prompt_version,
    )


def kafka_resource(config: Config) -> KafkaResource:
    """Every Kafka setting comes from the environment; the password only ever as an ``EnvVar``."""
    return KafkaResource(
        bootstrap_servers=_env("KAFKA_BOOTSTRAP_SERVERS", config.kafka.bootstrap_servers),
        security_protocol=_env("KAFKA_SECURITY_PROTOCOL", config.kafka.security_protocol),
        sasl_mechanism=_env("KAFKA_SASL_MECHANISM", config.kafka.sasl_mechanism),
        sasl_username=_env("KAFKA_SASL_USERNAME", config.kafka.sasl_username),
        sasl_password=_env("KAFKA_SASL_PASSWORD", config.kafka.sasl_password),
        ssl_ca_location=_env("KAFKA_SSL_CA_LOCATION", config.kafka.ssl_ca_location),
        topic=config.kafka.topic,
    )
