"""Reads for billing. Every function takes the organization (or an instance of it) by keyword."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db.models import F, QuerySet, Sum
from django.utils import timezone

from .models import Budget, Plan, SessionUsageDay, Subscription, UsageDay

_ZERO = Decimal("0")


def _month_start(today: dt.date | None) -> tuple[dt.date, dt.date]:
    today = today or timezone.localdate()
    return today.replace(day=1), today


def _totals(qs) -> dict:
    row = qs.aggregate(
        compute=Sum("compute_cost_usd"),
        llm=Sum("llm_cost_usd"),
        running_seconds=Sum("running_seconds"),
        input_tokens=Sum("input_tokens"),
        output_tokens=Sum("output_tokens"),
        cache_read_tokens=Sum("cache_read_tokens"),
        cache_write_tokens=Sum("cache_write_tokens"),
    )
    compute, llm = row["compute"] or _ZERO, row["llm"] or _ZERO
    return {
        "compute_usd": compute,
        "llm_usd": llm,
        "total_usd": compute + llm,
        "running_hours": Decimal(row["running_seconds"] or 0) / 3600,
        "tokens": sum(
            row[k] or 0
            for k in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
        ),
    }


def plans_on_sale() -> QuerySet[Plan]:
    return Plan.objects.filter(is_active=True)


def subscription_for(*, organization) -> Subscription | None:
    return Subscription.objects.select_related("plan").filter(organization=organization).first()


def month_to_date_for_instance(*, instance, today: dt.date | None = None) -> dict:
    first, last = _month_start(today)
    return _totals(
        UsageDay.objects.filter(
            organization_id=instance.organization_id, instance=instance, day__range=(first, last)
        )
    )


def month_to_date_for_organization(*, organization, today: dt.date | None = None) -> dict:
    first, last = _month_start(today)
    return _totals(UsageDay.objects.filter(organization=organization, day__range=(first, last)))


def usage_by_instance(*, organization, start: dt.date, end: dt.date, instance=None) -> QuerySet:
    """One row per instance between two days: name, costs, running time and tokens, most
    expensive first. The dashboard, the API and admin all read per-instance costs here."""
    rows = UsageDay.objects.filter(organization=organization, day__range=(start, end))
    if instance is not None:
        rows = rows.filter(instance=instance)
    return (
        rows.values("instance_id", "instance__name", "instance__client_name")
        .annotate(
            compute_usd=Sum("compute_cost_usd"),
            llm_usd=Sum("llm_cost_usd"),
            running_seconds=Sum("running_seconds"),
            tokens=Sum(
                F("input_tokens")
                + F("output_tokens")
                + F("cache_read_tokens")
                + F("cache_write_tokens")
            ),
        )
        .annotate(total_usd=F("compute_usd") + F("llm_usd"))
        .order_by("-total_usd", "instance__name")
    )


def month_to_date_by_instance(*, organization, today: dt.date | None = None) -> QuerySet:
    """One row per instance: name, costs and tokens this month, most expensive first."""
    first, last = _month_start(today)
    return usage_by_instance(organization=organization, start=first, end=last)


def month_to_date_by_session(
    *, organization, today: dt.date | None = None, instance=None, limit: int = 50
) -> QuerySet:
    """The sessions that cost most this month (LLM tokens attributed to this month's days)."""
    first, last = _month_start(today)
    qs = SessionUsageDay.objects.filter(organization=organization, day__range=(first, last))
    if instance is not None:
        qs = qs.filter(instance=instance)
    return (
        qs.values(
            "session_id",
            "session__session_key",
            "session__channel",
            "session__model",
            "instance__name",
        )
        .annotate(
            llm_usd=Sum("llm_cost_usd"),
            tokens=Sum(
                F("input_tokens")
                + F("output_tokens")
                + F("cache_read_tokens")
                + F("cache_write_tokens")
            ),
        )
        .order_by("-llm_usd", "session_id")[:limit]
    )


def daily_costs(*, organization, start: dt.date, end: dt.date, instance=None) -> list[dict]:
    """Every day from start to end inclusive (zeros where nothing ran), for charts."""
    qs = UsageDay.objects.filter(organization=organization, day__range=(start, end))
    if instance is not None:
        qs = qs.filter(instance=instance)
    rows = {
        r["day"]: r
        for r in qs.values("day").annotate(compute=Sum("compute_cost_usd"), llm=Sum("llm_cost_usd"))
    }
    out = []
    day = start
    while day <= end:
        r = rows.get(day, {})
        compute, llm = r.get("compute") or _ZERO, r.get("llm") or _ZERO
        out.append({"day": day, "compute_usd": compute, "llm_usd": llm, "total_usd": compute + llm})
        day += dt.timedelta(days=1)
    return out


def budgets_for(*, organization) -> QuerySet[Budget]:
    return (
        Budget.objects.filter(organization=organization)
        .select_related("instance")
        .order_by(F("instance__name").asc(nulls_first=True))
    )
