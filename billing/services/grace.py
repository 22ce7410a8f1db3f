"""The payment grace period: a failed invoice starts it (once per streak) and emails; when it is
over, the organization's running instances are paused (backup first); a paid invoice ends it and
resumes exactly what billing paused for non-payment."""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Organization
from accounts.services import SYSTEM, audit

from .. import capabilities
from ..models import BillingPause, Subscription
from .common import email_on_commit, locked_subscription
from .pauses import pause_instance, pause_record

logger = logging.getLogger(__name__)


@transaction.atomic
def payment_failed(
    *, organization: Organization, event_created: int, invoice_id: str = ""
) -> tuple[Subscription, str]:
    """invoice.payment_failed: start the grace period (once per streak of failures) and email."""
    sub = locked_subscription(organization)
    if sub.status == Subscription.Status.COMPED:
        return sub, "ignored"
    if event_created < sub.payment_event_created:
        return sub, "stale"
    sub.payment_event_created = event_created
    first = sub.payment_failed_at is None
    if first:
        now = timezone.now()
        sub.payment_failed_at = now
        sub.grace_until = now + dt.timedelta(days=settings.BILLING_GRACE_DAYS)
    sub.save()
    if first:
        audit(
            actor=SYSTEM,
            action="subscription.payment_failed",
            organization=organization,
            target=sub,
            data={"invoice": invoice_id, "grace_until": sub.grace_until.isoformat()},
        )
        when = timezone.localtime(sub.grace_until).strftime("%d %B %Y, %H:%M %Z")
        email_on_commit(
            organization,
            "Your payment failed",
            f"We could not charge the card on file for {organization.name}.\n\n"
            f"Your instances keep running until {when}. If the invoice is still unpaid then, "
            "we back each instance up and pause it; paying resumes them.\n\n"
            f"Update your card: {settings.SITE_URL}/billing/\n",
        )
    return sub, "applied"


@transaction.atomic
def payment_succeeded(
    *, organization: Organization, event_created: int, invoice_id: str = ""
) -> tuple[Subscription, str]:
    """invoice.paid: end the grace period and resume what billing paused (after commit)."""
    sub = locked_subscription(organization)
    if event_created < sub.payment_event_created:
        return sub, "stale"
    sub.payment_event_created = event_created
    had_failure = sub.payment_failed_at is not None
    sub.payment_failed_at = None
    sub.grace_until = None
    sub.save()
    if had_failure:
        audit(
            actor=SYSTEM,
            action="subscription.payment_recovered",
            organization=organization,
            target=sub,
            data={"invoice": invoice_id},
        )
    if BillingPause.objects.filter(
        organization=organization, reason=BillingPause.Reason.GRACE, resumed_at__isnull=True
    ).exists():
        from ..tasks import resume_after_payment

        org_id = organization.pk
        transaction.on_commit(lambda: resume_after_payment.delay(org_id))
    return sub, "applied"


def enforce_grace_periods(*, now: dt.datetime | None = None) -> int:
    """Pause (backup first, in the instances app) every running instance of organizations whose
    grace period is over; resume what a recovered payment left paused. Returns pauses requested.
    Safe to run any number of times: only instances still meant to run are paused (a paused
    one is desired stopped, so a second run never pauses it twice)."""
    now = now or timezone.now()
    paused = 0
    due = (
        Subscription.objects.filter(payment_failed_at__isnull=False, grace_until__lte=now)
        .exclude(status=Subscription.Status.COMPED)
        .select_related("organization")
    )
    for sub in due:
        for instance in capabilities.pausable(sub.organization_id):
            pause = BillingPause.objects.filter(
                instance_id=instance.pk, reason=BillingPause.Reason.GRACE, resumed_at__isnull=True
            ).first() or pause_record(instance, reason=BillingPause.Reason.GRACE)
            if pause is None:
                continue
            if pause_instance(instance, pause, "Payment overdue: the grace period has ended."):
                paused += 1
                audit(
                    actor=SYSTEM,
                    action="instance.billing_paused",
                    organization=sub.organization,
                    target=instance,
                    data={"reason": "grace", "grace_until": sub.grace_until.isoformat()},
                )
    # Converge: open grace pauses of organizations that have paid since.
    recovered = (
        BillingPause.objects.filter(reason=BillingPause.Reason.GRACE, resumed_at__isnull=True)
        .exclude(organization__subscription__payment_failed_at__isnull=False)
        .values_list("organization_id", flat=True)
        .distinct()
    )
    for org_id in list(recovered):
        resume_after_payment(organization_id=org_id)
    return paused


def resume_after_payment(*, organization_id: int) -> int:
    """Resume instances billing paused for non-payment, once the payment has succeeded.

    A pause still in progress (instance not yet paused) stays open; the grace task retries."""
    sub = Subscription.objects.filter(organization_id=organization_id).first()
    if sub is not None and sub.payment_failed_at is not None:
        return 0
    resumed = 0
    pauses = BillingPause.objects.filter(
        organization_id=organization_id,
        reason=BillingPause.Reason.GRACE,
        resumed_at__isnull=True,
    ).select_related("instance")
    for pause in pauses:
        try:
            done = capabilities.resume(pause.instance)
        except Exception as exc:  # recorded on the row; the next run retries
            logger.exception("billing could not resume instance %s", pause.instance_id)
            BillingPause.objects.filter(pk=pause.pk).update(error=str(exc)[:2000])
            continue
        if not done:
            continue  # the pause has not finished yet
        if BillingPause.objects.filter(pk=pause.pk, resumed_at__isnull=True).update(
            resumed_at=timezone.now(), error=""
        ):
            resumed += 1
    return resumed
