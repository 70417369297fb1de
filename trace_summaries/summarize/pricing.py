"""An estimate of what each summary cost, from token usage and a small per-model price table.

The estimate is for budgeting and spotting outliers, not billing: prices change, so the table is easy to
override per run (``LLMSettings.prices``), and a model missing from it yields ``None`` rather than a guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelPrice:
    """US dollars per million tokens."""

    input_per_mtok: float
    output_per_mtok: float = 0.0


# Public list prices (USD per 1M tokens) at the time of writing.
DEFAULT_PRICES: Mapping[str, ModelPrice] = {
    "gpt-4.1-nano": ModelPrice(0.10, 0.40),
    "gpt-4.1-mini": ModelPrice(0.40, 1.60),
    "gpt-4.1": ModelPrice(2.00, 8.00),
    "gpt-4o-mini": ModelPrice(0.15, 0.60),
    "gpt-4o": ModelPrice(2.50, 10.00),
    "gpt-5-nano": ModelPrice(0.05, 0.40),
    "gpt-5-mini": ModelPrice(0.25, 2.00),
    "gpt-5": ModelPrice(1.25, 10.00),
    "text-embedding-3-small": ModelPrice(0.02),
    "text-embedding-3-large": ModelPrice(0.13),
}


def price_for(model: str, prices: Mapping[str, ModelPrice] | None = None) -> ModelPrice | None:
    """The price of ``model``; a dated snapshot (``gpt-4.1-nano-2025-04-14``) falls back to its family.

    The longest matching prefix wins, so ``gpt-4.1-nano-…`` is never priced as ``gpt-4.1``.
    """
    table = {**DEFAULT_PRICES, **(prices or {})}
    if model in table:
        return table[model]
    families = [name for name in table if model.startswith(f"{name}-")]
    return table[max(families, key=len)] if families else None


def estimate_cost_usd(
    model: str, input_tokens: int, output_tokens: int, prices: Mapping[str, ModelPrice] | None = None
) -> float | None:
    """Estimated cost in USD, or ``None`` when the model has no known price."""
    price = price_for(model, prices)
    if price is None:
        return None
    return (input_tokens * price.input_per_mtok + output_tokens * price.output_per_mtok) / 1_000_000
