"""Kafka client settings from the environment, shared by the producer (asset) and the worker.

Variables (all optional except the bootstrap servers):

- ``KAFKA_BOOTSTRAP_SERVERS``: comma-separated ``host:port`` list (librdkafka ``bootstrap.servers``).
- ``KAFKA_SECURITY_PROTOCOL``: ``PLAINTEXT`` (default), ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``
  (``security.protocol``). When SASL credentials are given without a protocol, ``SASL_SSL`` is assumed:
  sending a password over an unencrypted connection should be a deliberate choice, not a default.
- ``KAFKA_SASL_MECHANISM``: ``PLAIN`` (default when credentials are given), ``SCRAM-SHA-256`` or
  ``SCRAM-SHA-512`` (``sasl.mechanism``). librdkafka's own default, GSSAPI, needs Kerberos and is never what
  a username/password pair means.
- ``KAFKA_SASL_USERNAME`` / ``KAFKA_SASL_PASSWORD``: SASL credentials (``sasl.username``/``sasl.password``),
  both or neither. The password is never logged: use ``redacted_kafka_config`` for anything printed.
- ``KAFKA_SSL_CA_LOCATION``: path to a CA bundle for verifying the brokers (``ssl.ca.location``); without
  it librdkafka uses the system trust store.
- ``KAFKA_TOPIC_EMBEDDING_REQUESTS``: topic of embedding requests, default ``document_embeddings_input``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from trace_summaries import settings

KAFKA_BOOTSTRAP_SERVERS = settings.KAFKA_BOOTSTRAP_SERVERS
KAFKA_SECURITY_PROTOCOL = "KAFKA_SECURITY_PROTOCOL"
KAFKA_SASL_MECHANISM = "KAFKA_SASL_MECHANISM"
KAFKA_SASL_USERNAME = "KAFKA_SASL_USERNAME"
KAFKA_SASL_PASSWORD = "KAFKA_SASL_PASSWORD"
KAFKA_SSL_CA_LOCATION = "KAFKA_SSL_CA_LOCATION"
KAFKA_TOPIC_EMBEDDING_REQUESTS = "KAFKA_TOPIC_EMBEDDING_REQUESTS"

DEFAULT_EMBEDDING_REQUESTS_TOPIC = "document_embeddings_input"

_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_SECRET_KEYS = frozenset({"sasl.password", "ssl.key.password", "ssl.keystore.password"})


def _get(environ: Mapping[str, str], name: str) -> str:
    return (environ.get(name) or "").strip()


def kafka_config_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """librdkafka client settings (connection and security only; callers add producer/consumer settings).

    Raises ``settings.SettingError`` naming the variable when a value is missing or not one of the allowed
    values, so a misconfiguration fails at start-up rather than as a connection that never authenticates.
    """
    env = os.environ if environ is None else environ
    servers = _get(env, KAFKA_BOOTSTRAP_SERVERS)
    if not servers:
        raise settings.SettingError(f"{KAFKA_BOOTSTRAP_SERVERS} is not set (e.g. 127.0.0.1:9092)")
    config: dict[str, str] = {"bootstrap.servers": servers}

    username = _get(env, KAFKA_SASL_USERNAME)
    password = env.get(KAFKA_SASL_PASSWORD) or ""
    if bool(username) != bool(password):
        raise settings.SettingError(f"set both {KAFKA_SASL_USERNAME} and {KAFKA_SASL_PASSWORD}, or neither")

    protocol = _get(env, KAFKA_SECURITY_PROTOCOL).upper() or ("SASL_SSL" if username else "PLAINTEXT")
    if protocol not in _SECURITY_PROTOCOLS:
        raise settings.SettingError(
            f"{KAFKA_SECURITY_PROTOCOL}={protocol!r} is not one of {', '.join(_SECURITY_PROTOCOLS)}"
        )
    config["security.protocol"] = protocol

    if protocol.startswith("SASL_"):
        if not username:
            raise settings.SettingError(
                f"{KAFKA_SECURITY_PROTOCOL}={protocol} needs {KAFKA_SASL_USERNAME} and {KAFKA_SASL_PASSWORD}"
            )
        mechanism = _get(env, KAFKA_SASL_MECHANISM).upper() or "PLAIN"
        if mechanism not in _SASL_MECHANISMS:
            raise settings.SettingError(
                f"{KAFKA_SASL_MECHANISM}={mechanism!r} is not one of {', '.join(_SASL_MECHANISMS)}"
            )
        config.update({"sasl.mechanism": mechanism, "sasl.username": username, "sasl.password": password})
    elif username:
        raise settings.SettingError(
            f"SASL credentials are set but {KAFKA_SECURITY_PROTOCOL}={protocol} does not use SASL"
        )

    if ca_location := _get(env, KAFKA_SSL_CA_LOCATION):
        if not protocol.endswith("SSL"):
            raise settings.SettingError(f"{KAFKA_SSL_CA_LOCATION} is set but {protocol} does not use TLS")
        config["ssl.ca.location"] = ca_location
    return config


def embedding_requests_topic(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return _get(env, KAFKA_TOPIC_EMBEDDING_REQUESTS) or DEFAULT_EMBEDDING_REQUESTS_TOPIC


def redacted_kafka_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings safe to log: secrets masked, callables (logger, callbacks) left out."""
    return {
        key: ("***" if key in _SECRET_KEYS else value)
        for key, value in config.items()
        if not callable(value) and not hasattr(value, "log")
    }
