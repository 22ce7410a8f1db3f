"""What a plan allows: the interface instances.services calls before a deploy or resize."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from billing import entitlements
from billing.models import Subscription
from instances.models import Instance

from .factories import InstanceFactory, PlanFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


def _errors(**kwargs) -> dict:
    with pytest.raises(ValidationError) as exc:
        entitlements.check_instance_allowed(**kwargs)
    return exc.value.message_dict


def test_an_organization_without_a_subscription_must_choose_a_plan(alice_org):
    errors = _errors(organization=alice_org, memory_mb=1024, cpus=1)
    assert errors == {"plan": ["Choose a plan before deploying."]}
    assert entitlements.plan_for(alice_org) is None


@pytest.mark.parametrize(
    "status", [Subscription.Status.CANCELED, Subscription.Status.INCOMPLETE, "unpaid", "none"]
)
def test_a_subscription_that_is_not_entitled_must_choose_a_plan(alice_org, status):
    SubscriptionFactory(organization=alice_org, status=status)
    assert "plan" in _errors(organization=alice_org, memory_mb=1024, cpus=1)
    assert entitlements.plan_for(alice_org) is None


@pytest.mark.parametrize("status", ["active", "trialing", "past_due", "comped"])
def test_entitled_statuses_return_the_plan(alice_org, status):
    sub = SubscriptionFactory(organization=alice_org, status=status)
    assert entitlements.plan_for(alice_org) == sub.plan
    assert entitlements.check_instance_allowed(organization=alice_org, memory_mb=2048, cpus=1) == (
        sub.plan
    )


def test_the_instance_count_includes_every_instance_not_deleted(alice_org, charlie_org):
    SubscriptionFactory(organization=alice_org, plan=PlanFactory(max_instances=2))
    InstanceFactory(organization=alice_org, status=Instance.Status.STOPPED)
    InstanceFactory(organization=alice_org, status=Instance.Status.DELETED)
    InstanceFactory(organization=alice_org, status=Instance.Status.PURGED)
    InstanceFactory(organization=charlie_org)  # another tenant's never counts
    entitlements.check_instance_allowed(organization=alice_org, memory_mb=1024, cpus=1)
    InstanceFactory(organization=alice_org, status=Instance.Status.PAUSED)
    errors = _errors(organization=alice_org, memory_mb=1024, cpus=1)
    assert list(errors) == ["instances"]
    assert "includes 2 instances" in errors["instances"][0]


def test_resizing_an_existing_instance_does_not_count_it_twice(alice_org):
    SubscriptionFactory(organization=alice_org, plan=PlanFactory(max_instances=1))
    existing = InstanceFactory(organization=alice_org)
    assert "instances" in _errors(organization=alice_org, memory_mb=1024, cpus=1)
    entitlements.check_instance_allowed(
        organization=alice_org, memory_mb=2048, cpus=1, exclude_instance_id=existing.pk
    )


def test_memory_and_cpus_above_the_plan_are_refused_with_field_errors(alice_org):
    SubscriptionFactory(
        organization=alice_org,
        plan=PlanFactory(name="Starter X", max_memory_mb=2048, max_cpus=Decimal("1")),
    )
    errors = _errors(organization=alice_org, memory_mb=4096, cpus="1.5")
    assert set(errors) == {"memory_mb", "cpus"}
    assert errors["memory_mb"] == [
        "Your Starter X plan allows up to 2048 MB of memory per instance."
    ]
    assert errors["cpus"] == ["Your Starter X plan allows up to 1 CPUs per instance."]
    entitlements.check_instance_allowed(organization=alice_org, memory_mb=2048, cpus=Decimal("1"))


def test_after_the_grace_period_the_organization_is_no_longer_entitled(alice_org):
    sub = SubscriptionFactory(organization=alice_org, status="past_due")
    sub.payment_failed_at = timezone.now() - timedelta(days=8)
    sub.grace_until = timezone.now() + timedelta(days=1)
    sub.save()
    assert entitlements.plan_for(alice_org) == sub.plan
    sub.grace_until = timezone.now() - timedelta(minutes=1)
    sub.save()
    assert entitlements.plan_for(alice_org) is None
    assert "plan" in _errors(organization=alice_org, memory_mb=1024, cpus=1)


def test_retention_comes_from_the_plan_with_safe_defaults(alice_org):
    assert entitlements.retention_for(alice_org) == entitlements.DEFAULT_RETENTION
    plan = PlanFactory(
        session_idle_days=60,
        session_max_count=5000,
        backup_daily_retention=14,
        backup_weekly_retention=8,
    )
    SubscriptionFactory(organization=alice_org, plan=plan)
    assert entitlements.retention_for(alice_org) == {
        "session_idle_days": 60,
        "session_max_count": 5000,
        "backup_daily": 14,
        "backup_weekly": 8,
    }


def test_the_seeded_plans_match_the_offer():
    from billing.models import ModelPrice, Plan

    plans = {p.slug: p for p in Plan.objects.filter(slug__in=["starter", "pro", "agency"])}
    assert (plans["starter"].monthly_price_cents, plans["starter"].max_instances) == (1900, 1)
    assert (plans["pro"].monthly_price_cents, plans["pro"].max_instances) == (4900, 3)
    assert (plans["agency"].monthly_price_cents, plans["agency"].max_instances) == (19900, 20)
    assert {p.first_month_price_cents for p in plans.values()} == {100}
    assert plans["starter"].max_memory_mb == 2048 and plans["pro"].max_memory_mb == 4096
    mock = ModelPrice.objects.get(provider="custom", model="mock-1")
    assert (mock.input_per_mtok, mock.output_per_mtok) == (Decimal("3"), Decimal("15"))
    assert (mock.cache_read_per_mtok, mock.cache_write_per_mtok) == (
        Decimal("0.3"),
        Decimal("3.75"),
    )
