"""Notification emails to an organization's owners and admins: one per instance (or
organization) per kind per hour at most, each kind opt-out per person (EmailOptOut)."""

from __future__ import annotations

import logging
import zlib
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Membership, Organization, Role

from . import events
from .models import EmailNotice, EmailOptOut

log = logging.getLogger(__name__)

THROTTLE = timedelta(hours=1)


def recipients(*, organization: Organization, kind: str | None, roles=(Role.OWNER, Role.ADMIN)):
    """Owners' and admins' addresses, without those who opted out of `kind`."""
    members = Membership.objects.filter(organization=organization, role__in=roles)
    if kind is not None:
        opted_out = EmailOptOut.objects.filter(organization=organization, kind=kind).values(
            "user_id"
        )
        members = members.exclude(user_id__in=opted_out)
    return sorted(set(members.values_list("user__email", flat=True)))


def _subject_and_body(kind: str, data: dict, instance) -> tuple[str, str]:
    name = instance.name if instance is not None else data.get("instance", {}).get("name", "")
    what = events.EMAIL_KINDS.get(kind, kind)
    subject = f"[Clawfleet] {what}" + (f": {name}" if name else "")
    lines = [f"{what}" + (f" ({name})." if name else ".")]
    for key in ("reason", "error", "message"):
        if data.get(key):
            lines.append(f"{key.capitalize()}: {data[key]}")
    op = data.get("operation") or {}
    if op:
        lines.append(f"Operation: {op.get('kind')} {op.get('state')}")
        if op.get("error"):
            lines.append(f"Error: {op['error']}")
    if data.get("budget"):
        b = data["budget"]
        lines.append(f"Spent {b.get('spent')} USD of {b.get('cap')} USD ({b.get('percent')} %).")
    lines.append("")
    lines.append(f"Turn these emails off on {settings.SITE_URL}/notifications/preferences/")
    return subject[:200], "\n".join(lines)


def notify(*, organization: Organization, kind: str, data: dict, instance=None) -> bool:
    """Mail `kind` to the organization's owners and admins who did not opt out, unless one was
    sent for the same instance (or the organization) and kind within the hour. On commit."""
    key = (
        str(instance.pk)
        if instance is not None
        else (str(data.get("instance", {}).get("id") or "organization"))
    )
    subject, body = _subject_and_body(kind, data, instance)
    with transaction.atomic():
        if connection.vendor == "postgresql":  # one sender at a time per (instance, kind)
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(%s)", [zlib.crc32(f"{key}:{kind}".encode())]
                )
        if EmailNotice.objects.filter(
            subject_key=key, kind=kind, sent_at__gte=timezone.now() - THROTTLE
        ).exists():
            return False
        to = recipients(organization=organization, kind=kind)
        if not to:
            return False
        EmailNotice.objects.create(
            organization=organization,
            subject_key=key,
            kind=kind,
            subject=subject,
            recipients=len(to),
        )
        transaction.on_commit(lambda: _send(subject, body, to))
    return True


def _send(subject: str, body: str, to: list[str]) -> None:
    try:
        send_mail(subject, body, None, to)
    except Exception as exc:  # noqa: BLE001 - a mail server outage never breaks the caller
        log.warning("notification email failed: %s", type(exc).__name__)


def endpoint_disabled(*, endpoint) -> None:
    """The owners hear that an endpoint was disabled (not opt-out: they would never know)."""
    to = recipients(organization=endpoint.organization, kind=None, roles=(Role.OWNER,))
    if not to:
        return
    subject = "[Clawfleet] A webhook endpoint was disabled"
    body = (
        f"Every delivery to {endpoint.url} failed for {settings.WEBHOOK_DISABLE_AFTER_DAYS} days, "
        "so we stopped sending to it.\n\nFix the receiver, then enable the endpoint again on "
        f"{settings.SITE_URL}/notifications/webhooks/{endpoint.pk}/ and redeliver what "
        "it missed.\n"
    )
    transaction.on_commit(lambda: _send(subject, body, to))
