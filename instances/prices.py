"""An instance's own token prices (USD per million tokens), for a model our price table lacks:
the rule the deploy, the update, the wizard, the instance page and the API all apply.

Each of the four prices is optional; an input or output price makes the instance "priced by its
own prices" (billing.pricing.own_price), and a missing cache price then counts 0. Empty means
"not set" (our table's price, or "no price"), never 0.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError

FIELDS = (
    "price_input_per_mtok",
    "price_output_per_mtok",
    "price_cache_read_per_mtok",
    "price_cache_write_per_mtok",
)
MAX = Decimal("100000")
MESSAGE = (
    "Enter a price from 0 to 100000 USD per million tokens (at most 4 decimals), or leave it empty."
)


def parse(values: dict, errors: dict) -> dict:
    """{field: Decimal | None} for the price fields present in `values`; bad ones go to errors."""
    out = {}
    for name in FIELDS:
        if name not in values:
            continue
        raw = values[name]
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            out[name] = None
            continue
        try:
            value = Decimal(str(raw).strip())
        except (InvalidOperation, ValueError):
            value = None
        if (
            value is None
            or not value.is_finite()
            or not Decimal(0) <= value <= MAX
            or value != value.quantize(Decimal("0.0001"))
        ):
            errors[name] = ValidationError(MESSAGE, code="invalid")
            continue
        out[name] = value.quantize(Decimal("0.0001"))
    return out
