"""LLM token prices from our versioned ModelPrice table.

`price_usage` is what the session sync calls to compute Session.cost_usd, and what the usage
rollup calls for each day's tokens; `config_prices` is what the instance config writer puts into
OpenClaw's model config (so OpenClaw's own estimate uses the same numbers).

Deterministic: Decimal arithmetic only, quantized to 6 places (ROUND_HALF_UP). An instance's own
prices (`own_price(instance)`, set by the customer for a custom or self-hosted model) win over the
table. A model with no price at all counts 0 in the ledger (and is logged), never an exception in
a sync loop; `has_price` tells the pages and the API to say "no price" instead of $0.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.utils import timezone

from .models import ModelPrice

logger = logging.getLogger(__name__)

MILLION = Decimal(1_000_000)
SIX_PLACES = Decimal("0.000001")
ZERO = Decimal("0.000000")


def _as_date(at) -> dt.date:
    if at is None:
        return timezone.localdate()
    if isinstance(at, dt.datetime):
        return timezone.localtime(at).date() if timezone.is_aware(at) else at.date()
    return at


def _candidates(provider: str, model: str) -> list[tuple[str, str]]:
    """(provider, model) pairs to look up, most specific first.

    "openrouter" and "custom" endpoints often name models "vendor/model"; we then also try the
    vendor's own price ("anthropic", "claude-sonnet-4").
    """
    provider, model = (provider or "").strip().lower(), (model or "").strip()
    pairs = [(provider, model)]
    if "/" in model:
        vendor, _, name = model.partition("/")
        pairs.append((vendor.lower(), name))
        pairs.append((provider, name))
    return pairs


def price_for(provider: str, model: str, at=None) -> ModelPrice | None:
    """The price row in effect on `at` (a date or datetime; default today), or None."""
    day = _as_date(at)
    for prov, name in _candidates(provider, model):
        row = (
            ModelPrice.objects.filter(provider=prov, model=name, effective_from__lte=day)
            .order_by("-effective_from")
            .first()
        )
        if row is not None:
            return row
    return None


OWN_FIELDS = {
    "input_per_mtok": "price_input_per_mtok",
    "output_per_mtok": "price_output_per_mtok",
    "cache_read_per_mtok": "price_cache_read_per_mtok",
    "cache_write_per_mtok": "price_cache_write_per_mtok",
}


@dataclass(frozen=True)
class OwnPrice:
    """The customer's own prices of an instance's model, USD per million tokens (what an
    instance on a custom endpoint, or a model missing from our table, carries)."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cache_read_per_mtok: Decimal = ZERO
    cache_write_per_mtok: Decimal = ZERO


def own_price(obj) -> OwnPrice | None:
    """The own prices an instance (any object with price_*_per_mtok attributes) carries, or
    None when it has none (an input or output price makes a price; missing ones count 0)."""
    values = {k: getattr(obj, attr, None) for k, attr in OWN_FIELDS.items()}
    if values["input_per_mtok"] is None and values["output_per_mtok"] is None:
        return None
    return OwnPrice(**{k: Decimal(v) if v is not None else ZERO for k, v in values.items()})


def priced_models(at=None) -> set[tuple[str, str]]:
    """Every (provider, model) our table prices on `at`, in one query (for lists of instances)."""
    day = _as_date(at)
    return set(ModelPrice.objects.filter(effective_from__lte=day).values_list("provider", "model"))


def in_table(provider: str, model: str, known: set[tuple[str, str]]) -> bool:
    """price_for(...) is not None, answered from priced_models() without a query."""
    return any(pair in known for pair in _candidates(provider, model))


def has_price(provider: str, model: str, own: OwnPrice | None = None, at=None) -> bool:
    """Whether tokens of this model can be priced: own prices, or a row of our table. A model
    without either is shown as "no price", never as $0."""
    return own is not None or price_for(provider, model, at) is not None


def price_usage(
    provider: str,
    model: str,
    input: int,  # noqa: A002 - the name the callers use
    output: int,
    cache_read: int,
    cache_write: int,
    at=None,
    own: OwnPrice | None = None,
) -> Decimal:
    """USD for these token counts at the instance's own price when it has one, else at the
    table's price in effect on `at`, quantized to 6 places."""
    row = own if own is not None else price_for(provider, model, at)
    if row is None:
        if any((input, output, cache_read, cache_write)):
            logger.info("no price for %s/%s; counting 0 USD", provider, model)
        return ZERO
    total = (
        Decimal(int(input or 0)) * row.input_per_mtok
        + Decimal(int(output or 0)) * row.output_per_mtok
        + Decimal(int(cache_read or 0)) * row.cache_read_per_mtok
        + Decimal(int(cache_write or 0)) * row.cache_write_per_mtok
    ) / MILLION
    return total.quantize(SIX_PLACES, rounding=ROUND_HALF_UP)


def config_prices(provider: str, model: str, own: OwnPrice | None = None) -> dict:
    """Today's price (the instance's own when it has one) as OpenClaw's model config wants it:
    floats, USD per million tokens, so that OpenClaw's own estimate agrees with our ledger."""
    row = own if own is not None else price_for(provider, model)
    if row is None:
        return {"input": 0.0, "output": 0.0, "cacheRead": 0.0, "cacheWrite": 0.0}
    return {
        "input": float(row.input_per_mtok),
        "output": float(row.output_per_mtok),
        "cacheRead": float(row.cache_read_per_mtok),
        "cacheWrite": float(row.cache_write_per_mtok),
    }
