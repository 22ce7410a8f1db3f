"""Token prices: deterministic Decimals from the versioned price table."""

import datetime as dt
from decimal import Decimal

import pytest

from billing.pricing import config_prices, price_usage

from .factories import ModelPriceFactory

pytestmark = pytest.mark.django_db


def test_the_mock_model_is_priced_per_million_tokens():
    assert price_usage("custom", "mock-1", 1_000_000, 0, 0, 0, None) == Decimal("3.000000")
    assert price_usage("custom", "mock-1", 0, 1_000_000, 0, 0, None) == Decimal("15.000000")
    cost = price_usage("custom", "mock-1", 1234, 567, 8900, 100, dt.date(2026, 3, 1))
    # 1234*3 + 567*15 + 8900*0.30 + 100*3.75 = 3702 + 8505 + 2670 + 375 = 15252 per million
    assert cost == Decimal("0.015252")
    assert cost.as_tuple().exponent == -6


def test_results_are_rounded_half_up_to_six_places():
    ModelPriceFactory(provider="custom", model="odd", input_per_mtok=Decimal("0.0005"))
    assert price_usage("custom", "odd", 1000, 0, 0, 0, None) == Decimal("0.000001")  # 0.0000005


def test_a_newer_price_applies_from_its_effective_date_only():
    ModelPriceFactory(model="v", input_per_mtok=Decimal("1"), effective_from=dt.date(2026, 1, 1))
    ModelPriceFactory(model="v", input_per_mtok=Decimal("2"), effective_from=dt.date(2026, 6, 1))
    assert price_usage("custom", "v", 10**6, 0, 0, 0, dt.date(2026, 5, 31)) == Decimal("1.000000")
    at = dt.datetime(2026, 6, 1, 0, 0, tzinfo=dt.UTC)
    assert price_usage("custom", "v", 10**6, 0, 0, 0, at) == Decimal("2.000000")


def test_an_unknown_model_costs_nothing_rather_than_failing_a_sync():
    assert price_usage("openai", "no-such-model", 10**6, 10**6, 0, 0, None) == Decimal("0")


def test_vendor_prefixed_models_fall_back_to_the_vendor_price():
    cost = price_usage("openrouter", "anthropic/claude-sonnet-4", 10**6, 0, 0, 0, None)
    assert cost == Decimal("3.000000")


def test_config_prices_are_floats_for_the_openclaw_config():
    assert config_prices("custom", "mock-1") == {
        "input": 3.0,
        "output": 15.0,
        "cacheRead": 0.3,
        "cacheWrite": 3.75,
    }
    assert config_prices("custom", "unknown") == {
        "input": 0.0,
        "output": 0.0,
        "cacheRead": 0.0,
        "cacheWrite": 0.0,
    }
