"""Kafka settings from the environment: defaults, SASL/SSL, and errors that name the variable."""

from __future__ import annotations

import pytest

from trace_summaries.config import KafkaConfig, SettingError, load
from trace_summaries.queue.kafka_config import redacted_kafka_config


def kafka_config_from_env(environ: dict[str, str]) -> dict[str, str]:
    return load(KafkaConfig, environ).client_config()


def embedding_requests_topic(environ: dict[str, str]) -> str:
    return load(KafkaConfig, environ).topic


def test_plaintext_needs_only_the_bootstrap_servers() -> None:
    assert kafka_config_from_env({"KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092"}) == {
        "bootstrap.servers": "k1:9092,k2:9092",
        "security.protocol": "PLAINTEXT",
    }


def test_missing_bootstrap_servers_names_the_variable() -> None:
    with pytest.raises(SettingError, match="KAFKA_BOOTSTRAP_SERVERS"):
        kafka_config_from_env({})


def test_sasl_ssl_with_scram_and_a_ca_bundle() -> None:
    config = kafka_config_from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "k:9096",
            "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "KAFKA_SASL_MECHANISM": "scram-sha-512",
            "KAFKA_SASL_USERNAME": "pipeline",
            "KAFKA_SASL_PASSWORD": "s3cret",
            "KAFKA_SSL_CA_LOCATION": "/etc/ssl/kafka-ca.pem",
        }
    )
    assert config == {
        "bootstrap.servers": "k:9096",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "pipeline",
        "sasl.password": "s3cret",
        "ssl.ca.location": "/etc/ssl/kafka-ca.pem",
    }


def test_credentials_alone_mean_sasl_ssl_with_plain() -> None:
    config = kafka_config_from_env(
        {"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}
    )
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanism"] == "PLAIN"


@pytest.mark.parametrize(
    ("extra", "variable"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
        ({"KAFKA_SASL_USERNAME": "u"}, "KAFKA_SASL_PASSWORD"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SASL_USERNAME"),
        (
            {"KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p", "KAFKA_SASL_MECHANISM": "GSSAPI"},
            "KAFKA_SASL_MECHANISM",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "PLAINTEXT", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"},
            "KAFKA_SECURITY_PROTOCOL",
        ),
        ({"KAFKA_SSL_CA_LOCATION": "/ca.pem"}, "KAFKA_SSL_CA_LOCATION"),
    ],
)
def test_inconsistent_security_settings_fail_naming_the_variable(
    extra: dict[str, str], variable: str
) -> None:
    with pytest.raises(SettingError, match=variable):
        kafka_config_from_env({"KAFKA_BOOTSTRAP_SERVERS": "k:9092", **extra})


def test_the_password_never_appears_in_the_loggable_config() -> None:
    config = kafka_config_from_env(
        {"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "hunter2"}
    )
    assert "hunter2" not in repr(redacted_kafka_config({**config, "error_cb": print}))


def test_topic_defaults_to_the_original_and_can_be_configured() -> None:
    assert embedding_requests_topic({}) == "document_embeddings_input"
    servers = {"KAFKA_BOOTSTRAP_SERVERS": "k:9092"}
    assert embedding_requests_topic({**servers, "KAFKA_TOPIC_EMBEDDING_REQUESTS": "staging_embeddings"}) == (
        "staging_embeddings"
    )
