"""Factories for billing tests (the shared ones live in tests/factories.py)."""

from decimal import Decimal

import factory
from django.utils import timezone

from billing.models import Budget, ModelPrice, Plan, Subscription
from instances.models import Instance
from sessions_mgmt.models import Session
from tests.factories import OrganizationFactory


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


class InstanceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Instance

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"bot-{n}")
    openclaw_version = "2026.9.6"
    status = Instance.Status.RUNNING
    desired_state = Instance.DesiredState.RUNNING
    provider = Instance.Provider.CUSTOM
    model_name = "mock-1"
    gateway_token = "gw-test-token"
    memory_mb = 2048
    cpus = Decimal("1")


class SessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Session

    instance = factory.SubFactory(InstanceFactory)
    organization = factory.LazyAttribute(lambda s: s.instance.organization)
    session_key = factory.Sequence(lambda n: f"agent:main:telegram:dm:{n}")
    channel = "telegram"
    model = "mock-1"
    started_at = factory.LazyFunction(timezone.now)
    last_activity_at = factory.LazyFunction(timezone.now)


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
