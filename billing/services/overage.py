"""LLM usage beyond a plan's monthly credit, reported to Stripe as meter events: one
MeterReport per organization and settled day, with a deterministic identifier, so the report is
idempotent here (unique identifier) and at Stripe (the same identifier)."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from .. import stripe_api
from ..models import MeterReport, Subscription, UsageDay


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
    event_name = settings.STRIPE_LLM_METER_EVENT
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
