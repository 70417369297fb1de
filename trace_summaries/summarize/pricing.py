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
    # Input the provider served from its prompt cache (OpenAI: the static prompt prefix); None: as input.
    cached_input_per_mtok: float | None = None


# The flex tier (``service_tier: "flex"``) costs this share of the standard price, cached input included.
FLEX_PRICE_FACTOR = 0.5


# Public list prices (USD per 1M tokens) at the time of writing.
DEFAULT_PRICES: Mapping[str, ModelPrice] = {
    "gpt-4.1-nano": ModelPrice(0.10, 0.40, 0.025),
    "gpt-4.1-mini": ModelPrice(0.40, 1.60, 0.10),
    "gpt-4.1": ModelPrice(2.00, 8.00, 0.50),
    "gpt-4o-mini": ModelPrice(0.15, 0.60, 0.075),
    "gpt-4o": ModelPrice(2.50, 10.00, 1.25),
    "gpt-5-nano": ModelPrice(0.05, 0.40, 0.005),
    "gpt-5-mini": ModelPrice(0.25, 2.00, 0.025),
    "gpt-5": ModelPrice(1.25, 10.00, 0.125),
    "o4-mini": ModelPrice(1.10, 4.40, 0.275),
    "o3": ModelPrice(2.00, 8.00, 0.50),
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
    model: str,
    input_tokens: int,
    output_tokens: int,
    prices: Mapping[str, ModelPrice] | None = None,
    *,
    cached_input_tokens: int = 0,
    flex: bool = False,
) -> float | None:
    """Estimated cost in USD, or ``None`` when the model has no known price.

    ``cached_input_tokens`` are part of ``input_tokens`` (as OpenAI's usage reports them) and are priced at
    the cached rate; ``flex`` prices the call at the flex tier.
    """
    price = price_for(model, prices)
    if price is None:
        return None
    cached = min(cached_input_tokens, input_tokens)
    cached_rate = price.input_per_mtok if price.cached_input_per_mtok is None else price.cached_input_per_mtok
    cost = (
        (input_tokens - cached) * price.input_per_mtok
        + cached * cached_rate
        + output_tokens * price.output_per_mtok
    ) / 1_000_000
    return cost * FLEX_PRICE_FACTOR if flex else cost
