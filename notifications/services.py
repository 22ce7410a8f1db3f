"""Writes for webhooks and notification emails: endpoints, events, deliveries and attempts.

- `endpoint_create` returns the endpoint and its secret (shown once; stored encrypted);
- `event_emit` fans one event out to the organization's endpoints that want it (a delivery row
  each, the task queued on commit) and to the notification emails (emails.notify);
- `delivery_attempt` is one try (the task calls it): claim the row with a conditional update, sign
  and send through notifications.http, record the attempt, then succeed, schedule the next try
  with exponential back-off (for WEBHOOK_RETRY_HOURS), or give up; an endpoint failing for
  WEBHOOK_DISABLE_AFTER_DAYS is disabled and its owners get an email;
- `delivery_redeliver` sends a delivery again by hand, with the same id.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Organization
from accounts.services import SYSTEM, Actor, audit

from . import emails, events, http, rules, signing
from .models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

log = logging.getLogger(__name__)

SENDING_STALE = timedelta(minutes=5)  # a claim older than this was lost with its worker


class Conflict(Exception):
    """The action does not fit the object's state (e.g. redelivering to a disabled endpoint)."""


# --- endpoints --------------------------------------------------------------------------------


def endpoint_validate(*, organization: Organization, url: str, events_: list, exclude=None):
    errors: dict[str, list[str]] = {}
    refused = rules.url_refused(url) if url else "is required"
    if refused:
        errors["url"] = [f"This URL {refused}."]
    problems = rules.event_errors(events_)
    if problems:
        errors["events"] = problems
    others = WebhookEndpoint.objects.filter(organization=organization)
    if exclude is not None:
        others = others.exclude(pk=exclude.pk)
    if exclude is None and others.count() >= rules.MAX_ENDPOINTS:
        errors["url"] = [*errors.get("url", []), rules.MAX_ENDPOINTS_MESSAGE]
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def endpoint_create(
    *, actor: Actor, organization: Organization, url: str, events: list, description: str = ""
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its signing secret (returned once, never shown again)."""
    endpoint_validate(organization=organization, url=url, events_=events)
    secret = signing.new_secret()
    endpoint = WebhookEndpoint.objects.create(
        organization=organization,
        url=url,
        events=sorted(set(events)),
        description=description,
        secret=secret,
        created_by=actor.user,
    )
    audit(
        actor=actor,
        action="webhook.created",
        organization=organization,
        target=endpoint,
        data={"url": url, "events": endpoint.events},
    )
    return endpoint, secret


@transaction.atomic
def endpoint_update(*, actor: Actor, endpoint: WebhookEndpoint, **changes) -> WebhookEndpoint:
    """Change url, events, description or is_active. Enabling a disabled endpoint clears its
    failure streak."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    url = changes.get("url", endpoint.url)
    wanted = changes.get("events", endpoint.events)
    endpoint_validate(organization=endpoint.organization, url=url, events_=wanted, exclude=endpoint)
    before = {k: getattr(endpoint, k) for k in ("url", "events", "description", "is_active")}
    endpoint.url = url
    endpoint.events = sorted(set(wanted))
    endpoint.description = changes.get("description", endpoint.description)
    if "is_active" in changes and bool(changes["is_active"]) != endpoint.is_active:
        endpoint.is_active = bool(changes["is_active"])
        if endpoint.is_active:
            endpoint.failing_since = None
            endpoint.disabled_at = None
            endpoint.disabled_reason = ""
        else:
            endpoint.disabled_at = timezone.now()
            endpoint.disabled_reason = "Disabled by hand."
    endpoint.save()
    diff = {k: [v, getattr(endpoint, k)] for k, v in before.items() if getattr(endpoint, k) != v}
    if diff:
        audit(
            actor=actor,
            action="webhook.changed",
            organization=endpoint.organization,
            target=endpoint,
            data={"changes": diff},
        )
    return endpoint


@transaction.atomic
def endpoint_delete(*, actor: Actor, endpoint: WebhookEndpoint) -> None:
    audit(
        actor=actor,
        action="webhook.deleted",
        organization=endpoint.organization,
        target=endpoint,
        data={"url": endpoint.url},
    )
    endpoint.delete()


# --- events -----------------------------------------------------------------------------------


def event_body(*, event_id, event_type: str, organization: Organization, data: dict) -> str:
    return json.dumps(
        {
            "id": str(event_id),
            "type": event_type,
            "created_at": timezone.now().isoformat(),
            "organization": {"id": organization.pk, "slug": organization.slug},
            "data": data,
        },
        cls=DjangoJSONEncoder,
        sort_keys=True,
        separators=(",", ":"),
    )


def event_emit(
    *, organization: Organization, event_type: str, data: dict, instance=None
) -> list[WebhookDelivery]:
    """One event: a delivery for every active endpoint of the organization that wants it (queued
    on commit) and the notification email of its kind (emails.notify)."""
    event_id = uuid.uuid4()
    body = event_body(
        event_id=event_id, event_type=event_type, organization=organization, data=data
    )
    deliveries = []
    with transaction.atomic():
        for endpoint in WebhookEndpoint.objects.filter(organization=organization, is_active=True):
            if not endpoint.wants(event_type):
                continue
            deliveries.append(
                WebhookDelivery.objects.create(
                    organization=organization,
                    endpoint=endpoint,
                    event_id=event_id,
                    event_type=event_type,
                    body=body,
                    next_attempt_at=timezone.now(),
                )
            )
        for delivery in deliveries:
            _queue(delivery.pk)
    kind = events.email_kind(event_type, data)
    if kind:
        emails.notify(organization=organization, kind=kind, data=data, instance=instance)
    return deliveries


def _queue(delivery_id, countdown: float = 0, manual: bool = False) -> None:
    from . import tasks

    transaction.on_commit(
        lambda: tasks.deliver_webhook.apply_async(
            args=[str(delivery_id)], kwargs={"manual": manual}, countdown=countdown
        )
    )


# --- deliveries -------------------------------------------------------------------------------


def backoff_seconds(attempts: int) -> float:
    """The wait after the `attempts`-th failed try: base × 2^(attempts-1), capped."""
    base = float(settings.WEBHOOK_RETRY_BASE_SECONDS)
    return min(base * (2 ** max(0, attempts - 1)), float(settings.WEBHOOK_RETRY_MAX_SECONDS))


def _claim(delivery_id, now) -> bool:
    due = Q(state=WebhookDelivery.State.PENDING, next_attempt_at__lte=now) | Q(
        state=WebhookDelivery.State.SENDING, claimed_at__lt=now - SENDING_STALE
    )
    return bool(
        WebhookDelivery.objects.filter(due, pk=delivery_id, endpoint__is_active=True).update(
            state=WebhookDelivery.State.SENDING, claimed_at=now
        )
    )


def delivery_attempt(*, delivery_id, manual: bool = False) -> WebhookAttempt | None:
    """One try of a due delivery; None when it is not due (already sent, claimed by another
    worker, scheduled later, or its endpoint is disabled)."""
    now = timezone.now()
    if not _claim(delivery_id, now):
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint__organization").get(pk=delivery_id)
    endpoint = delivery.endpoint
    body = delivery.body.encode()
    timestamp, signature = signing.header(endpoint.secret, body)
    number = delivery.attempt_count + 1
    answer = http.post(
        endpoint.url,
        body,
        {
            "Clawfleet-Delivery": str(delivery.pk),
            "Clawfleet-Event": delivery.event_type,
            "Clawfleet-Event-Id": str(delivery.event_id),
            "Clawfleet-Timestamp": str(timestamp),
            "Clawfleet-Signature": signature,
            "Clawfleet-Attempt": str(number),
        },
    )
    done = timezone.now()
    with transaction.atomic():
        attempt = WebhookAttempt.objects.create(
            delivery=delivery,
            number=number,
            started_at=now,
            duration_ms=answer.duration_ms,
            status_code=answer.status_code,
            error=answer.error,
            response_excerpt=answer.excerpt,
            manual=manual,
        )
        fields = {
            "attempt_count": number,
            "last_status_code": answer.status_code,
            "last_error": answer.error or (f"HTTP {answer.status_code}" if not answer.ok else ""),
            "claimed_at": None,
        }
        if answer.ok:
            fields.update(state=WebhookDelivery.State.DELIVERED, delivered_at=done)
            fields["next_attempt_at"] = None
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=None)
        else:
            wait = backoff_seconds(number)
            window_end = delivery.window_started_at + timedelta(hours=settings.WEBHOOK_RETRY_HOURS)
            if done < window_end:  # retried for at least WEBHOOK_RETRY_HOURS
                fields.update(
                    state=WebhookDelivery.State.PENDING,
                    next_attempt_at=done + timedelta(seconds=wait),
                )
                if wait <= settings.WEBHOOK_QUEUE_RETRY_SECONDS:
                    _queue(delivery.pk, countdown=wait)  # the sweeper takes the longer waits
            else:
                fields.update(state=WebhookDelivery.State.FAILED, next_attempt_at=None)
            WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=True).update(
                failing_since=now
            )
        WebhookDelivery.objects.filter(pk=delivery.pk).update(**fields)
        if not answer.ok:
            _maybe_disable(endpoint.pk, done)
    return attempt


def _maybe_disable(endpoint_id, now) -> bool:
    """An endpoint failing since WEBHOOK_DISABLE_AFTER_DAYS ago is disabled (once), its pending
    deliveries given up, and its organization's owners told by email."""
    limit = now - timedelta(days=settings.WEBHOOK_DISABLE_AFTER_DAYS)
    disabled = WebhookEndpoint.objects.filter(
        pk=endpoint_id, is_active=True, failing_since__lte=limit
    ).update(
        is_active=False,
        disabled_at=now,
        disabled_reason=(f"Every delivery failed for {settings.WEBHOOK_DISABLE_AFTER_DAYS} days."),
    )
    if not disabled:
        return False
    endpoint = WebhookEndpoint.objects.select_related("organization").get(pk=endpoint_id)
    WebhookDelivery.objects.filter(
        endpoint=endpoint,
        state__in=[WebhookDelivery.State.PENDING, WebhookDelivery.State.SENDING],
    ).update(state=WebhookDelivery.State.FAILED, next_attempt_at=None)
    audit(
        actor=SYSTEM,
        action="webhook.disabled",
        organization=endpoint.organization,
        target=endpoint,
        data={"url": endpoint.url, "failing_since": endpoint.failing_since.isoformat()},
    )
    emails.endpoint_disabled(endpoint=endpoint)
    return True


@transaction.atomic
def delivery_redeliver(*, actor: Actor, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivery again now, with the same delivery id; retried like a new one."""
    delivery = (
        WebhookDelivery.objects.select_for_update().select_related("endpoint").get(pk=delivery.pk)
    )
    if not delivery.endpoint.is_active:
        raise Conflict("This endpoint is disabled. Enable it first, then redeliver.")
    if delivery.state == WebhookDelivery.State.SENDING:
        raise Conflict("This delivery is being sent right now.")
    now = timezone.now()
    delivery.state = WebhookDelivery.State.PENDING
    delivery.next_attempt_at = now
    delivery.window_started_at = now
    delivery.save(update_fields=["state", "next_attempt_at", "window_started_at"])
    audit(
        actor=actor,
        action="webhook.redelivered",
        organization=delivery.organization,
        target=delivery.endpoint,
        data={"delivery": str(delivery.pk), "event": delivery.event_type},
    )
    _queue(delivery.pk, manual=True)
    return delivery


def due_deliveries(*, now=None, limit: int = 500) -> list:
    """Ids the sweeper queues: pending and due, or claimed by a worker that was lost."""
    now = now or timezone.now()
    due = Q(state=WebhookDelivery.State.PENDING, next_attempt_at__lte=now) | Q(
        state=WebhookDelivery.State.SENDING, claimed_at__lt=now - SENDING_STALE
    )
    return list(
        WebhookDelivery.objects.filter(due, endpoint__is_active=True)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
