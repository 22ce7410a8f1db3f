"""Subscriptions: the Stripe customer, Checkout, the billing portal, comps, and the mirror of a
Stripe subscription on our row (order-independent: see subscription_apply_stripe)."""

from __future__ import annotations

import datetime as dt
import logging

from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.models import Organization
from accounts.services import SYSTEM, Actor, audit

from .. import entitlements, rules, stripe_api
from ..models import FirstMonthClaim, Plan, Subscription
from . import enforcement
from .common import locked_subscription

log = logging.getLogger(__name__)

# Stripe subscription statuses that our mirror stores as something else.
_STATUS_MAP = {
    "incomplete_expired": Subscription.Status.CANCELED,
    "paused": Subscription.Status.UNPAID,
}
TERMINAL = (Subscription.Status.CANCELED,)


def _ts(value) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(int(value), tz=dt.UTC) if value else None


# --- customers, checkout, portal, comps ------------------------------------------------------


def customer_ensure(*, organization: Organization) -> str:
    """The organization's Stripe customer id, created once and stored on its Subscription row."""
    sub, _ = Subscription.objects.get_or_create(organization=organization)
    customer_id = stripe_api.ensure_customer(organization, customer_id=sub.stripe_customer_id)
    if customer_id != sub.stripe_customer_id:
        Subscription.objects.filter(pk=sub.pk).update(stripe_customer_id=customer_id)
    return customer_id


def checkout_start(
    *, actor: Actor, organization: Organization, plan: Plan, success_url: str, cancel_url: str
) -> str:
    """Start Stripe Checkout for `plan` (a row of ours: price and coupon come from it, never from
    the caller). Returns the Checkout URL. Nothing changes here until Stripe's webhook says so."""
    if not plan.is_active:
        raise ValidationError({"plan": "This plan is not on sale."})
    current = entitlements.entitled_subscription(organization)
    if current is not None and current.status != Subscription.Status.COMPED:
        raise ValidationError({"plan": "You already have a plan. Change it in the billing portal."})
    customer_id = customer_ensure(organization=organization)
    coupon_id = ""
    offered = rules.first_month_offered(organization=organization, user=actor.user)
    if offered:
        coupon_id = stripe_api.ensure_first_month_coupon(plan)
        if coupon_id and not plan.stripe_first_month_coupon_id:
            Plan.objects.filter(pk=plan.pk, stripe_first_month_coupon_id="").update(
                stripe_first_month_coupon_id=coupon_id
            )
    session = stripe_api.create_checkout_session(
        organization,
        plan,
        success_url,
        cancel_url,
        customer_id=customer_id,
        coupon_id=coupon_id,
        user_id=actor.user.pk if actor.user else None,
    )
    audit(
        actor=actor,
        action="billing.checkout_started",
        organization=organization,
        target=plan,
        data={
            "plan": plan.slug,
            "checkout_session": session.get("id", ""),
            "first_month": bool(coupon_id),
        },
    )
    return session["url"]


def portal_start(*, actor: Actor, organization: Organization, return_url: str) -> str:
    sub = Subscription.objects.filter(organization=organization).first()
    if sub is None or not sub.stripe_customer_id:
        raise ValidationError("Choose a plan first; the billing portal opens after checkout.")
    session = stripe_api.create_portal_session(sub.stripe_customer_id, return_url)
    audit(actor=actor, action="billing.portal_opened", organization=organization, target=sub)
    return session["url"]


@transaction.atomic
def subscription_comp(*, actor: Actor, organization: Organization, plan: Plan) -> Subscription:
    """Give an organization a plan for free (staff, the demo). Counts as entitled."""
    sub = locked_subscription(organization)
    was_entitled, old_plan_id = sub.is_entitled, sub.plan_id
    sub.plan = plan
    sub.status = Subscription.Status.COMPED
    sub.payment_failed_at = None
    sub.grace_until = None
    sub.save()
    enforcement.subscription_changed(sub, was_entitled=was_entitled, old_plan_id=old_plan_id)
    audit(
        actor=actor,
        action="subscription.comped",
        organization=organization,
        target=sub,
        data={"plan": plan.slug},
    )
    return sub


@transaction.atomic
def subscription_comp_end(*, actor: Actor, organization: Organization) -> Subscription:
    """End a staff comp: the organization has no plan from now on; its instances are paused
    after the notice (enforcement.py) unless it chooses a plan."""
    sub = locked_subscription(organization)
    if sub.status != Subscription.Status.COMPED:
        raise ValidationError("This organization has no complimentary plan to end.")
    was_entitled, old_plan_id = sub.is_entitled, sub.plan_id
    sub.status = Subscription.Status.CANCELED
    sub.save()
    audit(
        actor=actor,
        action="subscription.comp_ended",
        organization=organization,
        target=sub,
        data={"plan": sub.plan.slug if sub.plan else None},
    )
    enforcement.subscription_changed(sub, was_entitled=was_entitled, old_plan_id=old_plan_id)
    return sub


# --- the mirror of Stripe's subscription -----------------------------------------------------


def _plan_from_stripe(stripe_sub: dict) -> Plan | None:
    items = (stripe_sub.get("items") or {}).get("data") or []
    for item in items:
        for key in ("price", "plan"):
            ref = item.get(key)
            price_id = ref.get("id") if isinstance(ref, dict) else ref
            if price_id:
                plan = Plan.objects.filter(stripe_price_id=price_id).first()
                if plan:
                    return plan
    slug = (stripe_sub.get("metadata") or {}).get("plan")
    return Plan.objects.filter(slug=slug).first() if slug else None


def _period_end(stripe_sub: dict) -> dt.datetime | None:
    if stripe_sub.get("current_period_end"):
        return _ts(stripe_sub["current_period_end"])
    # Since API 2025-03-31 the period lives on the items.
    items = (stripe_sub.get("items") or {}).get("data") or []
    ends = [i.get("current_period_end") for i in items if i.get("current_period_end")]
    return _ts(max(ends)) if ends else None


def organization_for_stripe(
    *, subscription_id: str = "", customer_id: str = "", metadata: dict | None = None
) -> Organization | None:
    """Which of our organizations a Stripe object belongs to (our ids first, then metadata)."""
    if subscription_id:
        sub = Subscription.objects.filter(stripe_subscription_id=subscription_id).first()
        if sub:
            return sub.organization
    if customer_id:
        sub = Subscription.objects.filter(stripe_customer_id=customer_id).first()
        if sub:
            return sub.organization
    org_id = (metadata or {}).get("organization_id")
    if org_id and str(org_id).isdigit():
        return Organization.objects.filter(pk=int(org_id)).first()
    return None


@transaction.atomic
def subscription_apply_stripe(
    *, organization: Organization, stripe_sub: dict, event_created: int, fresh: bool
) -> tuple[Subscription, str]:
    """Mirror a Stripe subscription onto the organization's row, order-independently.

    `fresh` means `stripe_sub` was just fetched from Stripe (current truth); otherwise it is an
    event payload and is applied only if its event is not older than what we applied. A canceled
    Stripe subscription never comes back, so a canceled row ignores non-canceled states of the
    same subscription (this is what makes "deleted before created" end canceled). Returns the row
    and what happened: "applied", "stale", "ignored".
    """
    sub = locked_subscription(organization)
    status = _STATUS_MAP.get(stripe_sub.get("status", ""), stripe_sub.get("status", ""))
    if status not in Subscription.Status.values:
        status = Subscription.Status.INCOMPLETE
    same = not sub.stripe_subscription_id or sub.stripe_subscription_id == stripe_sub["id"]
    if not same:
        # Another subscription than the one we mirror: a new one replaces it, but an old one
        # ending (or any terminal state) does not touch the current one.
        if status in TERMINAL or status == Subscription.Status.INCOMPLETE:
            return sub, "ignored"
    else:
        if sub.status in TERMINAL and status not in TERMINAL and sub.stripe_subscription_id:
            return sub, "stale"
        if not fresh and event_created < sub.stripe_event_created:
            return sub, "stale"
    if sub.status == Subscription.Status.COMPED and status not in (
        Subscription.Status.ACTIVE,
        Subscription.Status.TRIALING,
    ):
        return sub, "ignored"
    if fresh and sub.stripe_customer_id:
        customer = stripe_sub.get("customer")
        customer = customer.get("id") if isinstance(customer, dict) else customer
        if customer and customer != sub.stripe_customer_id:
            # Another customer's subscription: it pays for nothing of this organization's.
            return sub, "ignored"
    plan = _plan_from_stripe(stripe_sub) or sub.plan
    before = (sub.status, sub.plan_id)
    was_entitled = sub.is_entitled
    sub.status = status
    sub.plan = plan
    sub.stripe_subscription_id = stripe_sub["id"]
    if stripe_sub.get("customer"):
        customer = stripe_sub["customer"]
        sub.stripe_customer_id = customer["id"] if isinstance(customer, dict) else customer
    sub.current_period_end = _period_end(stripe_sub) or sub.current_period_end
    sub.cancel_at_period_end = bool(stripe_sub.get("cancel_at_period_end"))
    sub.stripe_event_created = max(sub.stripe_event_created, int(event_created or 0))
    sub.save()
    if before != (sub.status, sub.plan_id):
        audit(
            actor=SYSTEM,
            action="subscription.changed",
            organization=organization,
            target=sub,
            data={"status": sub.status, "plan": plan.slug if plan else None},
        )
        enforcement.subscription_changed(sub, was_entitled=was_entitled, old_plan_id=before[1])
    return sub, "applied"


def subscription_sync(
    *, organization: Organization, subscription_id: str, payload: dict | None, event_created: int
) -> tuple[Subscription, str]:
    """Re-fetch the subscription from Stripe (where order matters, Stripe's current state wins);
    if Stripe does not know it (404), fall back to the event payload and its `created`."""
    try:
        fetched = stripe_api.retrieve_subscription(subscription_id)
    except stripe_api.NotFound:
        fetched = None
    if fetched is not None:
        return subscription_apply_stripe(
            organization=organization, stripe_sub=fetched, event_created=event_created, fresh=True
        )
    status = _STATUS_MAP.get((payload or {}).get("status", ""), (payload or {}).get("status"))
    if payload is None or status not in TERMINAL:
        # A subscription Stripe does not know grants nothing, whatever the event says; only
        # its end is taken from the event (ending a plan early is never a gift).
        log.warning("subscription %s unknown to Stripe: not applied", subscription_id[:40])
        return Subscription.objects.get_or_create(organization=organization)[0], "ignored"
    return subscription_apply_stripe(
        organization=organization, stripe_sub=payload, event_created=event_created, fresh=False
    )


def first_month_claim_record(*, organization: Organization, checkout: dict) -> bool:
    """A completed checkout that carried the first-month offer uses up that person's (and that
    organization's) one offer. The metadata is ours, set when the session was made."""
    from accounts.models import User

    metadata = checkout.get("metadata") or {}
    if metadata.get("first_month") != "1":
        return False
    user = None
    if str(metadata.get("user_id") or "").isdigit():
        user = User.objects.filter(pk=int(metadata["user_id"])).first()
    if user is None:
        return False
    plan = Plan.objects.filter(slug=metadata.get("plan") or "").first()
    _, created = FirstMonthClaim.objects.get_or_create(
        user=user,
        defaults={
            "organization": organization,
            "plan": plan,
            "stripe_checkout_session": str(checkout.get("id") or "")[:100],
        },
    )
    return created
