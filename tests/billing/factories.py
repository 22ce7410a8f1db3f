"""Factories for billing's own models; the shared ones (organizations, instances, sessions) come
from tests/factories.py and are re-exported here for the billing tests' imports."""

from decimal import Decimal

import factory

from billing.models import Budget, ModelPrice, Plan, Subscription
from tests.factories import InstanceFactory, OrganizationFactory, SessionFactory

__all__ = [
    "BudgetFactory",
    "InstanceFactory",
    "ModelPriceFactory",
    "PlanFactory",
    "SessionFactory",
    "SubscriptionFactory",
]


class PlanFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Plan
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"test-plan-{n}")
    name = factory.Sequence(lambda n: f"Test plan {n}")
    monthly_price_cents = 1900
    first_month_price_cents = 100
    stripe_price_id = factory.LazyAttribute(lambda p: f"price_{p.slug.replace('-', '_')}")
    max_instances = 1
    max_memory_mb = 2048
    max_cpus = Decimal("1")
    included_llm_credit_cents = 500
    compute_cents_per_hour = Decimal("1.0")


class SubscriptionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Subscription
        django_get_or_create = ("organization",)

    organization = factory.SubFactory(OrganizationFactory)
    plan = factory.SubFactory(PlanFactory)
    status = Subscription.Status.ACTIVE
    stripe_customer_id = factory.Sequence(lambda n: f"cus_test{n}")
    stripe_subscription_id = factory.Sequence(lambda n: f"sub_test{n}")


class BudgetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Budget

    organization = factory.SubFactory(OrganizationFactory)
    monthly_cap_usd = Decimal("10.00")
    action = Budget.Action.NOTIFY


class ModelPriceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ModelPrice

    provider = "custom"
    model = factory.Sequence(lambda n: f"model-{n}")
    input_per_mtok = Decimal("1.00")
    output_per_mtok = Decimal("2.00")
    cache_read_per_mtok = Decimal("0.10")
    cache_write_per_mtok = Decimal("1.25")
