"""The one module that talks to Stripe (the only importer of `stripe` in the project).

- The API version is pinned here, once (`API_VERSION`); the webhook endpoint in the Stripe
  dashboard must use the same version, so payloads have the shape the handlers expect.
- The key comes from settings.STRIPE_SECRET_KEY. When settings.STRIPE_API_BASE is set (localstripe
  in development and tests, or a recording server in a test) every request goes there instead of
  api.stripe.com.
- Functions take plain values and return plain dicts (never SDK objects), and raise our own
  exceptions, so callers never need `stripe` either.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import stripe
from django.conf import settings

logger = logging.getLogger(__name__)

API_VERSION = "2026-10-28.endive"
# Pinned for the module-level API too, so nothing in this process drifts to another version.
stripe.api_version = API_VERSION


class StripeApiError(Exception):
    """Stripe refused a request or could not be reached. `user_message` is safe to show."""

    def __init__(self, message: str, *, user_message: str = "", status: int | None = None):
        super().__init__(message)
        self.user_message = user_message or "Our payment provider is unavailable. Try again soon."
        self.status = status


class NotFound(StripeApiError):
    """The object does not exist in Stripe (HTTP 404)."""


class InvalidSignature(Exception):  # noqa: N818 - reads better at the call site
    """A webhook whose signature, timestamp or body does not verify."""


_clients: dict[tuple[str, str], stripe.StripeClient] = {}


def client() -> stripe.StripeClient:
    """A StripeClient for the current settings (cached per key and base address)."""
    key = settings.STRIPE_SECRET_KEY
    base = settings.STRIPE_API_BASE or ""
    cached = _clients.get((key, base))
    if cached is None:
        addresses: dict[str, str] = {}
        if base:
            base = base.rstrip("/")
            addresses = {"api": base, "files": base, "connect": base, "meter_events": base}
        cached = stripe.StripeClient(
            key,
            stripe_version=API_VERSION,
            base_addresses=addresses or None,  # type: ignore[arg-type]
            max_network_retries=2,
        )
        _clients[(key, base)] = cached
    return cached


def _plain(obj: Any) -> dict:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def _call(fn, *args, **kwargs) -> dict:
    try:
        return _plain(fn(*args, **kwargs))
    except stripe.StripeError as exc:
        status = getattr(exc, "http_status", None)
        cls = NotFound if status == 404 else StripeApiError
        user_message = getattr(exc, "user_message", None) or ""
        logger.warning("stripe request failed: %s (%s)", exc, status)
        raise cls(str(exc), user_message=user_message, status=status) from exc


# --- customers, coupons ----------------------------------------------------------------------


def ensure_customer(org, *, customer_id: str = "") -> str:
    """The Stripe customer id for `org`: `customer_id` if it still exists, else a new customer.

    Creation carries an idempotency key per organization, so two concurrent checkouts create
    one customer. The caller stores the id (billing.services.customer_ensure).
    """
    c = client()
    if customer_id:
        try:
            existing = _call(c.v1.customers.retrieve, customer_id)
        except NotFound:
            existing = {}
        if existing and not existing.get("deleted"):
            return customer_id
    params = {
        "name": org.name,
        "metadata": {"organization_id": str(org.pk), "organization_slug": org.slug},
    }
    if org.billing_email:
        params["email"] = org.billing_email
    created = _call(
        c.v1.customers.create,
        params,
        {"idempotency_key": f"clawfleet-customer-{org.pk}-{customer_id or 'new'}"},
    )
    return created["id"]


def first_month_coupon_id(plan) -> str:
    """Deterministic id of the once-only coupon that makes the first month cost
    plan.first_month_price_cents: amount_off = monthly - first month."""
    amount_off = plan.monthly_price_cents - plan.first_month_price_cents
    return f"clawfleet-{plan.slug}-first-month-{amount_off}"


def ensure_first_month_coupon(plan) -> str:
    """The coupon for the plan's first month (created once, by a deterministic id)."""
    if plan.stripe_first_month_coupon_id:
        return plan.stripe_first_month_coupon_id
    amount_off = plan.monthly_price_cents - plan.first_month_price_cents
    if amount_off <= 0:
        return ""
    coupon_id = first_month_coupon_id(plan)
    c = client()
    try:
        _call(c.v1.coupons.retrieve, coupon_id)
    except NotFound:
        _call(
            c.v1.coupons.create,
            {
                "id": coupon_id,
                "amount_off": amount_off,
                "currency": "usd",
                "duration": "once",
                "metadata": {"plan": plan.slug},
            },
        )
    return coupon_id


# --- checkout and portal ---------------------------------------------------------------------


def create_checkout_session(
    org,
    plan,
    success_url: str,
    cancel_url: str,
    *,
    customer_id: str,
    coupon_id: str = "",
    user_id: int | None = None,
) -> dict:
    """A Checkout Session (mode=subscription) for `plan`. Everything priced comes from our Plan
    row: the Stripe price id and the first-month coupon (only when the caller offers it: no
    coupon means no discount, and customers cannot enter promotion codes). Returns {"id",
    "url", ...}."""
    if not plan.stripe_price_id:
        raise StripeApiError(
            f"plan {plan.slug} has no stripe_price_id",
            user_message="This plan is not on sale yet. Contact support.",
        )
    metadata = {"organization_id": str(org.pk), "plan": plan.slug}
    if coupon_id:
        metadata["first_month"] = "1"
    if user_id is not None:
        metadata["user_id"] = str(user_id)
    params: dict[str, Any] = {
        "mode": "subscription",
        "customer": customer_id,
        "client_reference_id": str(org.pk),
        "line_items": [{"price": plan.stripe_price_id, "quantity": 1}],
        "success_url": success_url,
        "cancel_url": cancel_url,
        "metadata": metadata,
        "subscription_data": {"metadata": metadata},
    }
    if coupon_id:
        params["discounts"] = [{"coupon": coupon_id}]
    return _call(client().v1.checkout.sessions.create, params)


def create_portal_session(customer_id: str, return_url: str) -> dict:
    """A Billing Portal session (change plan, card, cancel). Returns {"id", "url", ...}."""
    return _call(
        client().v1.billing_portal.sessions.create,
        {"customer": customer_id, "return_url": return_url},
    )


def retrieve_subscription(subscription_id: str) -> dict:
    return _call(client().v1.subscriptions.retrieve, subscription_id)


# --- webhooks and meters ---------------------------------------------------------------------


def construct_event(payload: bytes, sig_header: str | None) -> dict:
    """Verify a webhook's signature on the raw body (within STRIPE_WEBHOOK_TOLERANCE seconds)
    and return the event as a dict. Raises InvalidSignature for anything that does not verify."""
    try:
        stripe.WebhookSignature.verify_header(
            payload.decode("utf-8"),
            sig_header or "",
            settings.STRIPE_WEBHOOK_SECRET,
            settings.STRIPE_WEBHOOK_TOLERANCE,
        )
        event = json.loads(payload)
    except (stripe.SignatureVerificationError, ValueError, UnicodeDecodeError, IndexError) as exc:
        raise InvalidSignature(str(exc)) from exc
    if not isinstance(event, dict) or not event.get("id") or not event.get("type"):
        raise InvalidSignature("not a Stripe event")
    return event


def report_meter_event(event_name: str, customer_id: str, value: int, identifier: str) -> dict:
    """Report usage to a Stripe billing meter. `identifier` makes Stripe drop duplicates."""
    return _call(
        client().v1.billing.meter_events.create,
        {
            "event_name": event_name,
            "identifier": identifier,
            "payload": {"stripe_customer_id": customer_id, "value": str(int(value))},
        },
        {"idempotency_key": identifier},
    )
