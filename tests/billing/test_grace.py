"""A failed payment: grace period, email, pause after the grace (backup first), resume on pay."""

import time
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from billing import tasks
from billing.models import BillingPause, StripeEvent, Subscription
from billing.services import grace
from instances.models import Instance, Operation

from .conftest import make_event
from .factories import InstanceFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


def _invoice(sub: Subscription, invoice_id: str = "in_1") -> dict:
    return {
        "id": invoice_id,
        "object": "invoice",
        "customer": sub.stripe_customer_id,
        # The shape since API 2025-03-31 (older versions put it in "subscription").
        "parent": {"subscription_details": {"subscription": sub.stripe_subscription_id}},
    }


def _deliver(post_event, captured, event: dict) -> str:
    with captured(execute=True):
        assert post_event(event).status_code == 200
    with captured(execute=True):  # emails and follow-up tasks are queued on commit
        return tasks.process_stripe_event(StripeEvent.objects.get(event_id=event["id"]).pk)


@pytest.fixture
def paying(alice_org):
    alice_org.billing_email = "billing@alice.example"
    alice_org.save()
    return SubscriptionFactory(organization=alice_org)


def test_a_failed_payment_starts_the_grace_period_and_emails_once(
    post_event, enqueued, django_capture_on_commit_callbacks, paying
):
    before = timezone.now()
    first = make_event("invoice.payment_failed", _invoice(paying))
    assert _deliver(post_event, django_capture_on_commit_callbacks, first) == "processed"
    paying.refresh_from_db()
    assert paying.payment_failed_at >= before
    assert paying.grace_until - paying.payment_failed_at == timedelta(days=7)
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["billing@alice.example"]
    assert "payment failed" in mail.outbox[0].subject.lower()

    # Stripe retries the charge and fails again: the grace period does not restart.
    grace = paying.grace_until
    retry = make_event("invoice.payment_failed", _invoice(paying), created=int(time.time()) + 5)
    _deliver(post_event, django_capture_on_commit_callbacks, retry)
    paying.refresh_from_db()
    assert paying.grace_until == grace
    assert len(mail.outbox) == 1


def test_instances_are_paused_only_after_the_grace_period_with_a_backup_first(
    post_event, enqueued, django_capture_on_commit_callbacks, paying, charlie_org
):
    running = InstanceFactory(organization=paying.organization, name="running-bot")
    stopped = InstanceFactory(
        organization=paying.organization,
        name="stopped-bot",
        status=Instance.Status.STOPPED,
        desired_state=Instance.DesiredState.STOPPED,
    )
    others = InstanceFactory(organization=charlie_org, name="charlies-bot")
    _deliver(
        post_event,
        django_capture_on_commit_callbacks,
        make_event("invoice.payment_failed", _invoice(paying)),
    )
    paying.refresh_from_db()

    # Within the grace period nothing happens.
    assert grace.enforce_grace_periods(now=paying.grace_until - timedelta(minutes=1)) == 0
    assert not Operation.objects.filter(kind=Operation.Kind.PAUSE).exists()

    # After it, the running instance is paused through instances.services.instance_pause:
    # a "pause" Operation, whose handler takes the backup before it stops the container.
    assert grace.enforce_grace_periods(now=paying.grace_until + timedelta(minutes=1)) == 1
    op = Operation.objects.get(kind=Operation.Kind.PAUSE)
    assert op.instance == running
    assert op.state == Operation.State.QUEUED
    assert "grace period" in op.params["reason"]
    running.refresh_from_db()
    assert running.desired_state == Instance.DesiredState.STOPPED
    assert not Operation.objects.filter(instance__in=[stopped, others]).exists()
    assert BillingPause.objects.filter(instance=running, reason="grace").count() == 1

    # The task runs every 15 minutes: nothing is paused twice.
    assert tasks.enforce_grace_periods.run() == 0
    assert Operation.objects.filter(kind=Operation.Kind.PAUSE).count() == 1


def test_the_pause_goes_through_the_instances_seam_which_backs_up_first(monkeypatch, paying):
    """The seam billing owns calls instances.services.instance_pause (backup, then stop)."""
    from instances import services as instance_services

    calls = []
    monkeypatch.setattr(
        instance_services,
        "instance_pause",
        lambda *, actor, instance, reason: calls.append((actor.label, instance.pk, reason)),
    )
    instance = InstanceFactory(organization=paying.organization)
    paying.payment_failed_at = timezone.now() - timedelta(days=8)
    paying.grace_until = timezone.now() - timedelta(days=1)
    paying.save()
    assert grace.enforce_grace_periods() == 1
    assert calls == [("system", instance.pk, "Payment overdue: the grace period has ended.")]


def test_paying_ends_the_grace_and_resumes_what_billing_paused(
    post_event, enqueued, django_capture_on_commit_callbacks, paying
):
    bot = InstanceFactory(organization=paying.organization)
    budget_paused = InstanceFactory(organization=paying.organization, status="paused")
    BillingPause.objects.create(
        organization=paying.organization, instance=budget_paused, reason="budget", month="2026-11"
    )
    _deliver(
        post_event,
        django_capture_on_commit_callbacks,
        make_event("invoice.payment_failed", _invoice(paying), created=int(time.time()) - 10),
    )
    paying.refresh_from_db()
    grace.enforce_grace_periods(now=paying.grace_until + timedelta(minutes=1))
    # The pause operation finishes (the instances worker would do this).
    Operation.objects.filter(instance=bot, kind="pause").update(state="succeeded")
    Instance.objects.filter(pk=bot.pk).update(status=Instance.Status.PAUSED)

    paid = make_event("invoice.paid", _invoice(paying, "in_2"))
    assert _deliver(post_event, django_capture_on_commit_callbacks, paid) == "processed"
    paying.refresh_from_db()
    assert paying.payment_failed_at is None and paying.grace_until is None
    assert enqueued["resume_after_payment"] == [paying.organization_id]

    assert tasks.resume_after_payment(paying.organization_id) == 1
    resume = Operation.objects.get(instance=bot, kind=Operation.Kind.START)
    assert resume.params == {"resume": True}
    assert BillingPause.objects.get(instance=bot).resumed_at is not None
    # What a budget paused stays paused; resuming twice does nothing more.
    assert not Operation.objects.filter(instance=budget_paused).exists()
    assert tasks.resume_after_payment(paying.organization_id) == 0


def test_a_late_failure_event_never_undoes_a_newer_payment(
    post_event, enqueued, django_capture_on_commit_callbacks, paying
):
    now = int(time.time())
    paid = make_event("invoice.paid", _invoice(paying, "in_2"), created=now)
    failed = make_event("invoice.payment_failed", _invoice(paying, "in_1"), created=now - 60)
    _deliver(post_event, django_capture_on_commit_callbacks, paid)
    _deliver(post_event, django_capture_on_commit_callbacks, failed)
    paying.refresh_from_db()
    assert paying.payment_failed_at is None and paying.grace_until is None
    assert mail.outbox == []


def test_comped_organizations_are_never_paused(paying):
    paying.status = Subscription.Status.COMPED
    paying.payment_failed_at = timezone.now() - timedelta(days=9)
    paying.grace_until = timezone.now() - timedelta(days=2)
    paying.save()
    InstanceFactory(organization=paying.organization)
    assert grace.enforce_grace_periods() == 0
