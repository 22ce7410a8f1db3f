"""Stripe webhook events: stored by id, processed exactly once, in any order.

billing/webhooks.py (the HTTP view) verifies the signature and calls `stripe_event_record`, which
stores the event by its id (a duplicate id is not processed again) and queues
`billing.tasks.process_stripe_event` after commit. `process_event` claims the stored event with a
conditional UPDATE (received -> processed) inside the same transaction as the handler, so a
redelivered task, or two workers at once, apply it exactly once; if the handler fails, the
transaction rolls back and the event stays `received` for the retry.

Handlers (the HANDLERS dispatch table) are order-independent: subscription state is re-fetched
from Stripe, and payloads are compared by `created` with what we applied (see
subscriptions.subscription_apply_stripe).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from accounts.models import Organization
from accounts.services import Actor, audit

from .. import stripe_api
from ..models import StripeEvent
from . import grace, subscriptions

logger = logging.getLogger(__name__)


# --- storing -----------------------------------------------------------------------------------


def stripe_event_record(event: dict) -> tuple[StripeEvent, bool]:
    """Store a verified event by its id. A new one is queued for processing after commit;
    a duplicate id is returned as is (created=False) and never queued again."""
    from ..tasks import process_stripe_event

    with transaction.atomic():
        stored, created = StripeEvent.objects.get_or_create(
            event_id=event["id"],
            defaults={
                "type": event["type"],
                "created": int(event.get("created") or 0),
                "payload": event,
            },
        )
        if created:
            pk = stored.pk
            transaction.on_commit(lambda: process_stripe_event.delay(pk))
    return stored, created


@transaction.atomic
def stripe_event_retry(*, actor: Actor, event: StripeEvent) -> bool:
    """Put a failed event back to received and queue it (admin action)."""
    from ..tasks import process_stripe_event

    changed = StripeEvent.objects.filter(
        pk=event.pk, state__in=[StripeEvent.State.FAILED, StripeEvent.State.RECEIVED]
    ).update(state=StripeEvent.State.RECEIVED, error="")
    if changed:
        pk = event.pk
        transaction.on_commit(lambda: process_stripe_event.delay(pk))
        audit(actor=actor, action="stripe_event.retried", target=event)
    return bool(changed)


# --- handlers: (event, payload object) -> outcome ----------------------------------------------


def _id(value) -> str:
    return value.get("id", "") if isinstance(value, dict) else (value or "")


def _checkout_completed(event: dict, obj: dict) -> str:
    if obj.get("mode") not in (None, "subscription"):
        return "ignored"
    org = None
    ref = obj.get("client_reference_id") or ""
    if ref.isdigit():
        org = Organization.objects.filter(pk=int(ref)).first()
    org = org or subscriptions.organization_for_stripe(
        customer_id=_id(obj.get("customer")), metadata=obj.get("metadata")
    )
    subscription_id = _id(obj.get("subscription"))
    if org is None or not subscription_id:
        return "ignored"
    payload = {
        "id": subscription_id,
        "customer": _id(obj.get("customer")),
        "metadata": obj.get("metadata") or {},
        # Without Stripe's copy of the subscription, a paid checkout means an active one.
        "status": "active"
        if obj.get("payment_status") in ("paid", "no_payment_required")
        else "incomplete",
    }
    sub, outcome = subscriptions.subscription_sync(
        organization=org,
        subscription_id=subscription_id,
        payload=payload,
        event_created=int(event.get("created") or 0),
    )
    if outcome == "applied" and sub.stripe_subscription_id == subscription_id:
        subscriptions.first_month_claim_record(organization=org, checkout=obj)
    return outcome


def _subscription_changed(event: dict, obj: dict) -> str:
    org = subscriptions.organization_for_stripe(
        subscription_id=obj.get("id", ""),
        customer_id=_id(obj.get("customer")),
        metadata=obj.get("metadata"),
    )
    if org is None:
        return "ignored"
    _, outcome = subscriptions.subscription_sync(
        organization=org,
        subscription_id=obj["id"],
        payload=obj,
        event_created=int(event.get("created") or 0),
    )
    return outcome


def _invoice_subscription_id(invoice: dict) -> str:
    if invoice.get("subscription"):
        return _id(invoice["subscription"])
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    return _id(details.get("subscription"))


def _invoice_org(invoice: dict) -> Organization | None:
    return subscriptions.organization_for_stripe(
        subscription_id=_invoice_subscription_id(invoice),
        customer_id=_id(invoice.get("customer")),
        metadata=(invoice.get("parent") or {}).get("subscription_details", {}).get("metadata"),
    )


def _invoice_handler(service: str) -> Callable[[dict, dict], str]:
    """invoice.paid / invoice.payment_failed: the grace service `service` applies the payment
    outcome; then the subscription is re-fetched, as the payment moves its status too
    (past_due <-> active)."""

    def handle(event: dict, obj: dict) -> str:
        org = _invoice_org(obj)
        if org is None:
            return "ignored"
        created = int(event.get("created") or 0)
        _, outcome = getattr(grace, service)(
            organization=org, event_created=created, invoice_id=obj.get("id", "")
        )
        subscription_id = _invoice_subscription_id(obj)
        if subscription_id:
            subscriptions.subscription_sync(
                organization=org,
                subscription_id=subscription_id,
                payload=None,
                event_created=created,
            )
        return outcome

    handle.__name__ = f"_invoice_{service}"
    return handle


_invoice_paid = _invoice_handler("payment_succeeded")
_invoice_payment_failed = _invoice_handler("payment_failed")


HANDLERS: dict[str, Callable[[dict, dict], str]] = {
    "checkout.session.completed": _checkout_completed,
    "customer.subscription.created": _subscription_changed,
    "customer.subscription.updated": _subscription_changed,
    "customer.subscription.deleted": _subscription_changed,
    "invoice.paid": _invoice_paid,
    # Older API versions (and localstripe) send this one for the same fact.
    "invoice.payment_succeeded": _invoice_paid,
    "invoice.payment_failed": _invoice_payment_failed,
}


# --- processing --------------------------------------------------------------------------------


def process_event(event_pk: int) -> str:
    """Apply one stored event exactly once. Returns the outcome ("processed", "ignored",
    "already", ...). Raises StripeApiError for a transient Stripe failure (the task retries)."""
    event = StripeEvent.objects.filter(pk=event_pk).first()
    if event is None:
        return "missing"
    handler = HANDLERS.get(event.type)
    now = timezone.now()
    if handler is None:
        claimed = StripeEvent.objects.filter(pk=event_pk, state=StripeEvent.State.RECEIVED).update(
            state=StripeEvent.State.IGNORED, processed_at=now
        )
        return "ignored" if claimed else "already"
    try:
        with transaction.atomic():
            claimed = StripeEvent.objects.filter(
                pk=event_pk, state=StripeEvent.State.RECEIVED
            ).update(state=StripeEvent.State.PROCESSED, processed_at=now, error="")
            if claimed != 1:
                return "already"
            obj = ((event.payload or {}).get("data") or {}).get("object") or {}
            outcome = handler(event.payload, obj)
            if outcome == "ignored":
                StripeEvent.objects.filter(pk=event_pk).update(state=StripeEvent.State.IGNORED)
    except stripe_api.StripeApiError as exc:
        StripeEvent.objects.filter(pk=event_pk, state=StripeEvent.State.RECEIVED).update(
            error=str(exc)[:2000]
        )
        raise
    except Exception as exc:
        logger.exception("Stripe event %s failed", event.event_id)
        StripeEvent.objects.filter(pk=event_pk, state=StripeEvent.State.RECEIVED).update(
            state=StripeEvent.State.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000]
        )
        return "failed"
    return "processed" if outcome != "ignored" else "ignored"
