"""Prices for the customer's own models: an instance on a custom endpoint carries input, output and
cache prices per million tokens (deploy wizard, instance page, API); a conversation costs tokens ×
those prices in the ledger, and OpenClaw's config carries the same numbers; a model with no price
at all is "no price", not $0."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse

from billing import pricing
from billing.models import ModelPrice, SessionUsageDay
from billing.services import usage
from instances import specs
from instances.models import Instance
from tests.fleet_fixtures import make_entitled

from .factories import InstanceFactory, SessionFactory

pytestmark = pytest.mark.django_db

DAY = dt.date(2026, 11, 10)
OWN = {
    "price_input_per_mtok": Decimal("0.5000"),
    "price_output_per_mtok": Decimal("1.2500"),
    "price_cache_read_per_mtok": Decimal("0.0500"),
}


def at(day, hour):
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.UTC)


def test_a_conversation_costs_its_tokens_times_the_instance_prices(alice_org):
    bot = InstanceFactory(
        organization=alice_org, provider="custom", model_name="my-llama-70b", **OWN
    )
    SessionFactory(
        instance=bot,
        model="my-llama-70b",
        input_tokens=1_200_000,
        output_tokens=300_000,
        cache_read_tokens=2_000_000,
        last_activity_at=at(DAY, 10),
    )
    usage.rollup_usage(day=DAY, now=at(DAY + dt.timedelta(days=1), 3))
    row = SessionUsageDay.objects.get(instance=bot, day=DAY)
    expected = (
        Decimal(1_200_000) * OWN["price_input_per_mtok"]
        + Decimal(300_000) * OWN["price_output_per_mtok"]
        + Decimal(2_000_000) * OWN["price_cache_read_per_mtok"]
    ) / 1_000_000
    assert row.llm_cost_usd == expected.quantize(Decimal("0.000001")) == Decimal("1.075000")


def test_own_prices_win_over_the_table_and_go_into_openclaws_config(alice_org):
    ModelPrice.objects.create(
        provider="custom", model="my-llama-70b", input_per_mtok=9, output_per_mtok=9
    )
    bot = InstanceFactory(
        organization=alice_org,
        provider="custom",
        model_name="my-llama-70b",
        model_base_url="https://llm.example.com/v1",
        gateway_token="gw-test-token-long-enough",
        **OWN,
    )
    own = pricing.own_price(bot)
    assert pricing.price_usage("custom", "my-llama-70b", 1_000_000, 0, 0, 0, own=own) == Decimal(
        "0.500000"
    )
    config = specs.config_for(bot)
    (model,) = config["models"]["providers"]["custom"]["models"]
    assert model["cost"] == {"input": 0.5, "output": 1.25, "cacheRead": 0.05, "cacheWrite": 0.0}


def test_without_any_price_the_api_and_the_page_say_no_price(api_for, alice_org, alice_client):
    bot = InstanceFactory(organization=alice_org, provider="custom", model_name="unknown-model")
    assert not pricing.has_price("custom", "unknown-model", pricing.own_price(bot))
    body = api_for(alice_org).get(f"/api/v1/instances/{bot.pk}").json()
    assert body["price_source"] == "none"
    assert body["price_input_per_mtok"] is None
    page = alice_client.get(reverse("instances:detail", args=[bot.pk])).content.decode()
    assert "No price" in page and "not $0" in page


def test_the_api_sets_changes_and_refuses_prices(api_for, alice_org):
    make_entitled(alice_org)
    api = api_for(alice_org)
    response = api.post(
        "/api/v1/instances",
        {
            "name": "own-model",
            "provider": "custom",
            "model_name": "my-llama-70b",
            "model_base_url": "https://llm.example.com/v1",
            "price_input_per_mtok": "0.5",
            "price_output_per_mtok": "1.25",
        },
        format="json",
    )
    assert response.status_code == 202, response.content
    bot = Instance.objects.get(name="own-model")
    assert (bot.price_input_per_mtok, bot.price_output_per_mtok) == (
        Decimal("0.5"),
        Decimal("1.25"),
    )
    assert api.get(f"/api/v1/instances/{bot.pk}").json()["price_source"] == "own"
    changed = api.patch(
        f"/api/v1/instances/{bot.pk}", {"price_output_per_mtok": "2"}, format="json"
    )
    assert changed.status_code == 200, changed.content
    bot.refresh_from_db()
    assert bot.price_output_per_mtok == Decimal("2")
    refused = api.patch(
        f"/api/v1/instances/{bot.pk}", {"price_input_per_mtok": "-1"}, format="json"
    )
    assert refused.status_code == 400
    assert list(refused.json()["error"]["fields"]) == ["price_input_per_mtok"]
    cleared = api.patch(
        f"/api/v1/instances/{bot.pk}",
        {"price_input_per_mtok": None, "price_output_per_mtok": None},
        format="json",
    )
    assert cleared.status_code == 200
    assert api.get(f"/api/v1/instances/{bot.pk}").json()["price_source"] == "none"


def test_the_wizard_and_the_instance_page_set_prices(alice_client, alice_org):
    make_entitled(alice_org)
    response = alice_client.post(
        reverse("instances:deploy"),
        {
            "name": "wizard-own",
            "provider": "custom",
            "model_name": "my-llama-70b",
            "model_base_url": "https://llm.example.com/v1",
            "price_input_per_mtok": "0.5",
            "price_output_per_mtok": "1.25",
        },
    )
    assert response.status_code == 302, response.context["form"].errors
    bot = Instance.objects.get(name="wizard-own")
    assert bot.price_output_per_mtok == Decimal("1.25")
    response = alice_client.post(
        reverse("instances:prices", args=[bot.pk]),
        {"prices-price_input_per_mtok": "0.75", "prices-price_output_per_mtok": "abc"},
        follow=True,
    )
    assert "Enter a price from 0 to 100000" in response.content.decode()
    bot.refresh_from_db()
    assert bot.price_input_per_mtok == Decimal("0.5")  # nothing half-changed
    alice_client.post(
        reverse("instances:prices", args=[bot.pk]),
        {"prices-price_input_per_mtok": "0.75", "prices-price_output_per_mtok": "1.5"},
    )
    bot.refresh_from_db()
    assert (bot.price_input_per_mtok, bot.price_output_per_mtok) == (
        Decimal("0.75"),
        Decimal("1.5"),
    )


def test_the_costs_page_says_no_price_for_an_unpriced_model(alice_client, alice_org):
    from django.utils import timezone

    from billing.models import UsageDay

    priced = InstanceFactory(organization=alice_org, name="priced-bot", **OWN)
    unpriced = InstanceFactory(organization=alice_org, name="unpriced-bot", model_name="nope")
    for bot in (priced, unpriced):
        UsageDay.objects.create(
            instance=bot,
            organization=alice_org,
            day=timezone.localdate(),
            running_seconds=3600,
            compute_cost_usd=Decimal("0.01"),
            input_tokens=1000,
            llm_cost_usd=Decimal("0") if bot is unpriced else Decimal("0.0005"),
        )
    page = alice_client.get(reverse("billing:costs")).content.decode()
    rows = {
        name: page.split(name, 1)[1].split("</tr>", 1)[0] for name in ("priced-bot", "unpriced-bot")
    }
    cells = rows["unpriced-bot"].split('<td class="num">')
    assert cells[4].startswith("no price")  # hours, tokens, compute, then the LLM cell
    assert "no price" not in rows["priced-bot"]
