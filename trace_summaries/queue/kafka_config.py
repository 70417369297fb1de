"""What of the Kafka settings may be logged. The settings themselves are ``config.KafkaConfig``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_SECRET_KEYS = frozenset({"sasl.password", "ssl.key.password", "ssl.keystore.password"})


def redacted_kafka_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings safe to log: secrets masked, callables (logger, callbacks) left out."""
    return {
        key: ("***" if key in _SECRET_KEYS else value)
        for key, value in config.items()
        if not callable(value) and not hasattr(value, "log")
    }
