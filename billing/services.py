"""Writes for billing: subscriptions mirrored from Stripe, checkout and portal, the payment grace
period, the usage rollup and cost ledger, meter events for LLM overage, budgets.

Stripe is reached only through billing.stripe_api; instances are paused and resumed only through
instances.services (imported lazily: instances imports billing.entitlements).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from accounts.models import Membership, Organization, Role
from accounts.services import SYSTEM, Actor, audit

from . import entitlements, pricing, stripe_api
from .models import (
    BillingPause,
    Budget,
    MeterReport,
    Plan,
    SessionUsageDay,
    StripeEvent,
    Subscription,
    UsageDay,
)

logger = logging.getLogger(__name__)

# Stripe subscription statuses that our mirror stores as something else.
_STATUS_MAP = {
    "incomplete_expired": Subscription.Status.CANCELED,
    "paused": Subscription.Status.UNPAID,
}
TERMINAL = (Subscription.Status.CANCELED,)


# --- small helpers ---------------------------------------------------------------------------


def _recipients(organization: Organization) -> list[str]:
    if organization.billing_email:
        return [organization.billing_email]
    return list(
        Membership.objects.filter(organization=organization, role=Role.OWNER).values_list(
            "user__email", flat=True
        )
    )


def _email_on_commit(organization: Organization, subject: str, body: str) -> None:
    to = _recipients(organization)
    if not to:
        return
    transaction.on_commit(lambda: send_mail(f"[Clawfleet] {subject}", body, None, to))


def _ts(value) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(int(value), tz=dt.UTC) if value else None


def _month(day: dt.date) -> str:
    return day.strftime("%Y-%m")


def _day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = timezone.make_aware(dt.datetime.combine(day, dt.time.min))
    return start, start + dt.timedelta(days=1)


def _locked_subscription(organization: Organization) -> Subscription:
    sub, _ = Subscription.objects.get_or_create(organization=organization)
    return Subscription.objects.select_for_update().get(pk=sub.pk)


# --- seams to instances.services (lazy imports) ----------------------------------------------


def _pause_instance(instance, *, reason: str):
    """Pause through the instances app: it takes a backup first, then stops (an Operation)."""
    from instances import services as instance_services

    return instance_services.instance_pause(actor=SYSTEM, instance=instance, reason=reason)


def _resume_instance(instance):
    from instances import services as instance_services

    return instance_services.instance_resume(actor=SYSTEM, instance=instance)


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
    )
    audit(
        actor=actor,
        action="billing.checkout_started",
        organization=organization,
        target=plan,
        data={"plan": plan.slug, "checkout_session": session.get("id", "")},
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
    sub = _locked_subscription(organization)
    sub.plan = plan
    sub.status = Subscription.Status.COMPED
    sub.payment_failed_at = None
    sub.grace_until = None
    sub.save()
    audit(
        actor=actor,
        action="subscription.comped",
        organization=organization,
        target=sub,
        data={"plan": plan.slug},
    )
    return sub


# --- Stripe events ---------------------------------------------------------------------------


def stripe_event_record(event: dict) -> tuple[StripeEvent, bool]:
    """Store a verified event by its id. A new one is queued for processing after commit;
    a duplicate id is returned as is (created=False) and never queued again."""
    from .tasks import process_stripe_event

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
    from .tasks import process_stripe_event

    changed = StripeEvent.objects.filter(
        pk=event.pk, state__in=[StripeEvent.State.FAILED, StripeEvent.State.RECEIVED]
    ).update(state=StripeEvent.State.RECEIVED, error="")
    if changed:
        pk = event.pk
        transaction.on_commit(lambda: process_stripe_event.delay(pk))
        audit(actor=actor, action="stripe_event.retried", target=event)
    return bool(changed)


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
    sub = _locked_subscription(organization)
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
    plan = _plan_from_stripe(stripe_sub) or sub.plan
    before = (sub.status, sub.plan_id)
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
    if payload is None:
        return Subscription.objects.get_or_create(organization=organization)[0], "ignored"
    return subscription_apply_stripe(
        organization=organization, stripe_sub=payload, event_created=event_created, fresh=False
    )


@transaction.atomic
def payment_failed(
    *, organization: Organization, event_created: int, invoice_id: str = ""
) -> tuple[Subscription, str]:
    """invoice.payment_failed: start the grace period (once per streak of failures) and email."""
    sub = _locked_subscription(organization)
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
        _email_on_commit(
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
    sub = _locked_subscription(organization)
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
        from .tasks import resume_after_payment

        org_id = organization.pk
        transaction.on_commit(lambda: resume_after_payment.delay(org_id))
    return sub, "applied"


# --- grace period enforcement ----------------------------------------------------------------


# Instances billing pauses: meant to run and up (or trying to be). Once paused, desired_state is
# stopped, so a second run of the grace task or a budget check never pauses them twice.
_RUNNING_STATUSES = ("running", "starting", "restarting", "crash_looping")


def _meant_to_run(organization):
    from instances.models import Instance

    return Instance.objects.filter(
        organization=organization,
        desired_state=Instance.DesiredState.RUNNING,
        status__in=_RUNNING_STATUSES,
    ).order_by("name")


def _record_pause(instance, *, reason: str, month: str = "") -> BillingPause | None:
    """The pause row for this instance, or None if one already exists (budget: per month)."""
    try:
        with transaction.atomic():
            return BillingPause.objects.create(
                organization_id=instance.organization_id,
                instance=instance,
                reason=reason,
                month=month,
            )
    except IntegrityError:
        return None


def _pause(instance, pause: BillingPause, why: str) -> bool:
    try:
        _pause_instance(instance, reason=why)
    except Exception as exc:  # one instance failing must not stop the others
        logger.exception("billing could not pause instance %s", instance.pk)
        BillingPause.objects.filter(pk=pause.pk).update(error=str(exc)[:2000])
        return False
    BillingPause.objects.filter(pk=pause.pk).update(error="")
    return True


def enforce_grace_periods(*, now: dt.datetime | None = None) -> int:
    """Pause (backup first, in instances.services) every running instance of organizations whose
    grace period is over; resume what a recovered payment left paused. Returns pauses requested.
    Safe to run any number of times: only instances still running are paused."""
    now = now or timezone.now()
    paused = 0
    due = (
        Subscription.objects.filter(payment_failed_at__isnull=False, grace_until__lte=now)
        .exclude(status=Subscription.Status.COMPED)
        .select_related("organization")
    )
    for sub in due:
        for instance in _meant_to_run(sub.organization):
            pause = BillingPause.objects.filter(
                instance=instance, reason=BillingPause.Reason.GRACE, resumed_at__isnull=True
            ).first() or _record_pause(instance, reason=BillingPause.Reason.GRACE)
            if pause is None:
                continue
            if _pause(instance, pause, "Payment overdue: the grace period has ended."):
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
    from instances.models import Instance

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
        instance = pause.instance
        if instance.status == Instance.Status.PAUSED:
            try:
                _resume_instance(instance)
            except Exception as exc:
                logger.exception("billing could not resume instance %s", instance.pk)
                BillingPause.objects.filter(pk=pause.pk).update(error=str(exc)[:2000])
                continue
        elif instance.status in (Instance.Status.RUNNING, Instance.Status.STOPPING) and (
            instance.operations.filter(state__in=["queued", "running"], kind="pause").exists()
        ):
            continue  # the pause has not finished yet
        if BillingPause.objects.filter(pk=pause.pk, resumed_at__isnull=True).update(
            resumed_at=timezone.now(), error=""
        ):
            resumed += 1
    return resumed


# --- usage rollup ----------------------------------------------------------------------------

_UP_KINDS = ("deploy", "start", "restart", "upgrade", "restore")
_DOWN_KINDS = ("stop", "pause", "delete", "purge")
_HISTORY_DAYS = 60


def _running_seconds(instance, transitions, start: dt.datetime, end: dt.datetime) -> int:
    """Seconds the instance ran in [start, end): replay up/down transitions (sorted by time).

    Up: a deploy/start/restart/upgrade/restore operation that succeeded (at finished_at), and
    Instance.running_since while the instance is running (covers restarts by the reconcile loop).
    Down: a stop/pause/delete/purge operation that started (at started_at)."""
    events = list(transitions)
    if instance.status == "running" and instance.running_since:
        events.append((instance.running_since, True))
    events.sort(key=lambda e: e[0])
    up_since = None
    total = 0.0
    for at, up in events:
        if up and up_since is None:
            up_since = at
        elif not up and up_since is not None:
            total += _overlap(up_since, at, start, end)
            up_since = None
    if up_since is not None:
        total += _overlap(up_since, end, start, end)
    return int(total)


def _overlap(a: dt.datetime, b: dt.datetime, start: dt.datetime, end: dt.datetime) -> float:
    lo, hi = max(a, start), min(b, end)
    return max(0.0, (hi - lo).total_seconds())


def _transitions(instance_ids, start: dt.datetime, end: dt.datetime) -> dict:
    from instances.models import Operation

    by_instance: dict = defaultdict(list)
    ops = Operation.objects.filter(
        instance_id__in=instance_ids,
        kind__in=_UP_KINDS + _DOWN_KINDS,
        created_at__gte=start - dt.timedelta(days=_HISTORY_DAYS),
        created_at__lt=end,
    ).values("instance_id", "kind", "state", "created_at", "started_at", "finished_at")
    for op in ops:
        if op["kind"] in _UP_KINDS and op["state"] == "succeeded" and op["finished_at"]:
            by_instance[op["instance_id"]].append((op["finished_at"], True))
        elif op["kind"] in _DOWN_KINDS and op["state"] in ("running", "succeeded"):
            by_instance[op["instance_id"]].append((op["started_at"] or op["created_at"], False))
    return by_instance


def _snapshot_sessions(day: dt.date, start: dt.datetime, end: dt.datetime) -> None:
    """Upsert today's SessionUsageDay for each session last active on `day`: its counters now,
    and the usage since its previous snapshot, priced at `day`'s price."""
    from sessions_mgmt.models import Session

    sessions = list(
        Session.objects.filter(
            last_activity_at__gte=start, last_activity_at__lt=end
        ).select_related("instance")
    )
    if not sessions:
        return
    previous: dict[int, SessionUsageDay] = {}
    for row in SessionUsageDay.objects.filter(
        session_id__in=[s.pk for s in sessions], day__lt=day
    ).order_by("session_id", "day"):
        previous[row.session_id] = row  # the last one per session wins (latest day)
    fields = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
    for s in sessions:
        prev = previous.get(s.pk)
        seen = {f: getattr(s, f) for f in fields}
        delta = {f: max(0, seen[f] - (getattr(prev, f"seen_{f}") if prev else 0)) for f in fields}
        cost = pricing.price_usage(
            s.instance.provider,
            s.model or s.instance.model_name,
            delta["input_tokens"],
            delta["output_tokens"],
            delta["cache_read_tokens"],
            delta["cache_write_tokens"],
            day,
        )
        SessionUsageDay.objects.update_or_create(
            session=s,
            day=day,
            defaults={
                "instance_id": s.instance_id,
                "organization_id": s.organization_id,
                **{f"seen_{f}": v for f, v in seen.items()},
                **delta,
                "llm_cost_usd": cost,
            },
        )


def rollup_usage(*, day: dt.date, now: dt.datetime | None = None) -> int:
    """Rebuild the UsageDay rows of `day` (idempotent: running it twice changes nothing), then
    report LLM overage of settled days and check budgets. Returns the number of rows."""
    from instances.models import Instance

    now = now or timezone.now()
    start, end = _day_bounds(day)
    if start > now:
        return 0
    lock = f"billing:rollup:{day.isoformat()}"
    if not cache.add(lock, "1", timeout=600):
        logger.info("rollup of %s already running", day)
        return 0
    try:
        with transaction.atomic():
            _snapshot_sessions(day, start, end)
            instances = list(
                Instance.objects.filter(created_at__lt=end).filter(
                    Q(deleted_at__isnull=True) | Q(deleted_at__gte=start)
                )
            )
            transitions = _transitions([i.pk for i in instances], start, end)
            tokens = {
                row["instance_id"]: row
                for row in SessionUsageDay.objects.filter(day=day)
                .values("instance_id")
                .annotate(
                    input=Sum("input_tokens"),
                    output=Sum("output_tokens"),
                    cache_read=Sum("cache_read_tokens"),
                    cache_write=Sum("cache_write_tokens"),
                    cost=Sum("llm_cost_usd"),
                )
            }
            rates: dict[int, Decimal] = {}
            kept = []
            for instance in instances:
                seconds = _running_seconds(
                    instance, transitions.get(instance.pk, []), start, min(end, now)
                )
                t = tokens.get(instance.pk)
                if not seconds and not t:
                    continue
                org_id = instance.organization_id
                if org_id not in rates:
                    plan = entitlements.plan_for(instance.organization)
                    rates[org_id] = (
                        plan.compute_cents_per_hour if plan else Plan().compute_cents_per_hour
                    )
                compute = (Decimal(seconds) / 3600 * rates[org_id] / 100).quantize(
                    pricing.SIX_PLACES, rounding=ROUND_HALF_UP
                )
                UsageDay.objects.update_or_create(
                    instance=instance,
                    day=day,
                    defaults={
                        "organization_id": org_id,
                        "running_seconds": seconds,
                        "input_tokens": (t or {}).get("input") or 0,
                        "output_tokens": (t or {}).get("output") or 0,
                        "cache_read_tokens": (t or {}).get("cache_read") or 0,
                        "cache_write_tokens": (t or {}).get("cache_write") or 0,
                        "compute_cost_usd": compute,
                        "llm_cost_usd": (t or {}).get("cost") or Decimal(0),
                    },
                )
                kept.append(instance.pk)
            UsageDay.objects.filter(day=day).exclude(instance_id__in=kept).delete()
    finally:
        cache.delete(lock)
    if now >= end + dt.timedelta(hours=1):
        report_overage(day=day)
    if _month(day) == _month(timezone.localdate(now)):
        check_budgets(day=day)
    return len(kept)


# --- LLM overage meter events ----------------------------------------------------------------


def _cents(usd: Decimal) -> int:
    return int((usd * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _llm_through(organization_id: int, first: dt.date, last: dt.date) -> Decimal:
    if last < first:
        return Decimal(0)
    total = UsageDay.objects.filter(
        organization_id=organization_id, day__gte=first, day__lte=last
    ).aggregate(s=Sum("llm_cost_usd"))["s"]
    return total or Decimal(0)


def overage_cents(*, organization_id: int, credit_cents: int, day: dt.date) -> int:
    """Cents of LLM usage beyond the plan's monthly credit that `day` added."""
    first = day.replace(day=1)
    through_day = _llm_through(organization_id, first, day)
    through_before = _llm_through(organization_id, first, day - dt.timedelta(days=1))
    over_day = max(0, _cents(through_day) - credit_cents)
    over_before = max(0, _cents(through_before) - credit_cents)
    return max(0, over_day - over_before)


def meter_identifier(organization_id: int, day: dt.date) -> str:
    return f"clawfleet-llm-{organization_id}-{day.isoformat()}"


def report_overage(*, day: dt.date) -> int:
    """Create one MeterReport per organization and settled day (deterministic identifier) and
    send the unsent ones to Stripe. Idempotent here (unique identifier) and at Stripe (the same
    identifier). Returns the number sent."""
    event_name = getattr(settings, "STRIPE_LLM_METER_EVENT", "clawfleet_llm_overage_cents")
    subs = (
        Subscription.objects.filter(status__in=Subscription.ENTITLED, plan__isnull=False)
        .exclude(status=Subscription.Status.COMPED)
        .exclude(stripe_customer_id="")
        .select_related("plan")
    )
    for sub in subs:
        cents = overage_cents(
            organization_id=sub.organization_id,
            credit_cents=sub.plan.included_llm_credit_cents,
            day=day,
        )
        if cents > 0:
            MeterReport.objects.get_or_create(
                identifier=meter_identifier(sub.organization_id, day),
                defaults={"organization_id": sub.organization_id, "day": day, "value_cents": cents},
            )
    sent = 0
    customers = dict(
        Subscription.objects.exclude(stripe_customer_id="").values_list(
            "organization_id", "stripe_customer_id"
        )
    )
    for report in MeterReport.objects.filter(reported_at__isnull=True):
        customer = customers.get(report.organization_id)
        if not customer:
            continue
        try:
            stripe_api.report_meter_event(
                event_name, customer, report.value_cents, report.identifier
            )
        except stripe_api.StripeApiError as exc:
            MeterReport.objects.filter(pk=report.pk).update(error=str(exc)[:2000])
            continue
        if MeterReport.objects.filter(pk=report.pk, reported_at__isnull=True).update(
            reported_at=timezone.now(), error=""
        ):
            sent += 1
    return sent


# --- budgets ---------------------------------------------------------------------------------


def _spent(budget: Budget, first: dt.date, last: dt.date) -> Decimal:
    qs = UsageDay.objects.filter(organization_id=budget.organization_id, day__range=(first, last))
    if budget.instance_id:
        qs = qs.filter(instance_id=budget.instance_id)
    row = qs.aggregate(c=Sum("compute_cost_usd"), llm=Sum("llm_cost_usd"))
    return (row["c"] or Decimal(0)) + (row["llm"] or Decimal(0))


def check_budgets(*, day: dt.date) -> dict:
    """Alerts at 80 % (one email a month), and at 100 %: NOTIFY emails once, PAUSE pauses the
    instance (or, for an organization budget, its running instances) once a month, backup first.
    Conditional updates on alerted_*_month make each alert happen once even if runs overlap."""
    month = _month(day)
    first = day.replace(day=1)
    done = {"alerted_80": 0, "alerted_100": 0, "paused": 0}
    budgets = Budget.objects.select_related("organization", "instance")
    for budget in budgets:
        cap = budget.monthly_cap_usd
        if cap <= 0:
            continue
        spent = _spent(budget, first, day)
        what = f"instance {budget.instance.name}" if budget.instance_id else "your organization"
        org = budget.organization
        if spent >= cap:
            claimed = (
                Budget.objects.filter(pk=budget.pk)
                .exclude(alerted_100_month=month)
                .update(alerted_100_month=month, alerted_80_month=month)
            )
            if not claimed:
                continue
            done["alerted_100"] += 1
            pausing = budget.action == Budget.Action.PAUSE
            _email_on_commit(
                org,
                f"Budget reached for {what}",
                f"{what.capitalize()} has spent {spent:.2f} USD this month, reaching its "
                f"budget of {cap:.2f} USD.\n\n"
                + (
                    "As the budget asks, we back up and pause the affected instances. Resume "
                    "them from the dashboard after raising the budget.\n"
                    if pausing
                    else "Nothing was stopped (the budget only notifies).\n"
                ),
            )
            if not pausing:
                continue
            targets = _meant_to_run(org)
            if budget.instance_id:
                targets = targets.filter(pk=budget.instance_id)
            for instance in targets:
                pause = _record_pause(instance, reason=BillingPause.Reason.BUDGET, month=month)
                if pause is None:
                    continue
                if _pause(instance, pause, f"Monthly budget of {cap:.2f} USD reached."):
                    done["paused"] += 1
                    audit(
                        actor=SYSTEM,
                        action="instance.budget_paused",
                        organization=org,
                        target=instance,
                        data={"budget": budget.pk, "spent": str(spent), "month": month},
                    )
        elif spent >= cap * Decimal("0.8"):
            claimed = (
                Budget.objects.filter(pk=budget.pk)
                .exclude(alerted_80_month=month)
                .update(alerted_80_month=month)
            )
            if claimed:
                done["alerted_80"] += 1
                _email_on_commit(
                    org,
                    f"80 % of the budget used for {what}",
                    f"{what.capitalize()} has spent {spent:.2f} USD of its {cap:.2f} USD "
                    "monthly budget.\n",
                )
    return done


@transaction.atomic
def budget_set(
    *,
    actor: Actor,
    organization: Organization,
    monthly_cap_usd: Decimal,
    action: str,
    instance=None,
) -> Budget:
    """Create or change the organization's budget, or one instance's."""
    if instance is not None and instance.organization_id != organization.pk:
        raise ValidationError({"instance": "Choose one of your instances."})
    if monthly_cap_usd is None or monthly_cap_usd <= 0:
        raise ValidationError({"monthly_cap_usd": "Enter a budget above 0 USD."})
    if action not in Budget.Action.values:
        raise ValidationError({"action": "Choose notify or pause."})
    budget, created = Budget.objects.select_for_update().get_or_create(
        organization=organization,
        instance=instance,
        defaults={"monthly_cap_usd": monthly_cap_usd, "action": action},
    )
    if not created:
        raised = monthly_cap_usd > budget.monthly_cap_usd
        budget.monthly_cap_usd = monthly_cap_usd
        budget.action = action
        if raised:  # a raised cap may alert again this month
            budget.alerted_80_month = ""
            budget.alerted_100_month = ""
        budget.save()
    audit(
        actor=actor,
        action="budget.set",
        organization=organization,
        target=budget,
        data={"monthly_cap_usd": str(monthly_cap_usd), "action": action},
    )
    return budget


@transaction.atomic
def budget_delete(*, actor: Actor, budget: Budget) -> None:
    audit(
        actor=actor,
        action="budget.deleted",
        organization=budget.organization,
        target=budget,
        data={"monthly_cap_usd": str(budget.monthly_cap_usd)},
    )
    budget.delete()
