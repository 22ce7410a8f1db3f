"""Small helpers the billing services share: billing email, day bounds, the locked row."""

from __future__ import annotations

import datetime as dt

from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from accounts.models import Membership, Organization, Role

from ..models import Subscription


def recipients(organization: Organization) -> list[str]:
    """The billing address, else the owners' addresses."""
    if organization.billing_email:
        return [organization.billing_email]
    return list(
        Membership.objects.filter(organization=organization, role=Role.OWNER).values_list(
            "user__email", flat=True
        )
    )


def email_on_commit(organization: Organization, subject: str, body: str) -> None:
    to = recipients(organization)
    if not to:
        return
    transaction.on_commit(lambda: send_mail(f"[Clawfleet] {subject}", body, None, to))


def month(day: dt.date) -> str:
    return day.strftime("%Y-%m")


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = timezone.make_aware(dt.datetime.combine(day, dt.time.min))
    return start, start + dt.timedelta(days=1)


def locked_subscription(organization: Organization) -> Subscription:
    """The organization's Subscription row (created if missing), locked for this transaction."""
    sub, _ = Subscription.objects.get_or_create(organization=organization)
    return Subscription.objects.select_for_update().get(pk=sub.pk)
