"""The usage rollup: the cost ledger (UsageDay, one row per instance per day) rebuilt from

- compute time: the seconds each instance spent in a billable status, from its recorded state
  transitions (the instances app answers billing.capabilities.compute_seconds from
  instances.state.running_seconds), so a crash loop the reconcile loop found stops the clock
  although no Operation says so;
- LLM tokens: per session per day (SessionUsageDay), recorded by `session_usage_record` when the
  session mirror answers billing.capabilities.snapshot_sessions.

Idempotent: running it twice for a day changes nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.core.cache import cache
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from .. import capabilities, entitlements, pricing
from ..models import Plan, SessionUsageDay, UsageDay
from . import budgets, overage
from .common import day_bounds, month

logger = logging.getLogger(__name__)

TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


@dataclass(frozen=True)
class SessionTotals:
    """One session's cumulative token counters as the session mirror sees them now
    (session_id is the Session row's primary key, as in SessionUsageDay.session_id)."""

    session_id: int
    instance_id: object
    organization_id: int
    provider: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    own_price: pricing.OwnPrice | None = None  # the instance's own prices, if it has any


def session_usage_record(*, day: dt.date, sessions: Iterable[SessionTotals]) -> int:
    """Upsert `day`'s SessionUsageDay for each session: its counters now, and the usage since its
    previous snapshot (never negative), priced at `day`'s price. Returns the rows written."""
    sessions = list(sessions)
    if not sessions:
        return 0
    previous: dict[int, SessionUsageDay] = {}
    for row in SessionUsageDay.objects.filter(
        session_id__in=[s.session_id for s in sessions], day__lt=day
    ).order_by("session_id", "day"):
        previous[row.session_id] = row  # the last one per session wins (latest day)
    for s in sessions:
        prev = previous.get(s.session_id)
        seen = {f: getattr(s, f) for f in TOKEN_FIELDS}
        delta = {
            f: max(0, seen[f] - (getattr(prev, f"seen_{f}") if prev else 0)) for f in TOKEN_FIELDS
        }
        cost = pricing.price_usage(
            s.provider,
            s.model,
            delta["input_tokens"],
            delta["output_tokens"],
            delta["cache_read_tokens"],
            delta["cache_write_tokens"],
            day,
            own=s.own_price,
        )
        SessionUsageDay.objects.update_or_create(
            session_id=s.session_id,
            day=day,
            defaults={
                "instance_id": s.instance_id,
                "organization_id": s.organization_id,
                **{f"seen_{f}": v for f, v in seen.items()},
                **delta,
                "llm_cost_usd": cost,
            },
        )
    return len(sessions)


def _compute_rate(organization_id: int) -> Decimal:
    plan = entitlements.plan_for(organization_id)
    return plan.compute_cents_per_hour if plan else Plan().compute_cents_per_hour


def rollup_usage(*, day: dt.date, now: dt.datetime | None = None) -> int:
    """Rebuild the UsageDay rows of `day` (idempotent: running it twice changes nothing), then
    report LLM overage of settled days and check budgets. Returns the number of rows."""
    now = now or timezone.now()
    start, end = day_bounds(day)
    if start > now:
        return 0
    lock = f"billing:rollup:{day.isoformat()}"
    if not cache.add(lock, "1", timeout=600):
        logger.info("rollup of %s already running", day)
        return 0
    try:
        with transaction.atomic():
            capabilities.snapshot_sessions(day, start, end)
            compute = capabilities.compute_seconds(start, min(end, now))
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
            for instance_id, (org_id, seconds) in compute.items():
                t = tokens.get(instance_id)
                if not seconds and not t:
                    continue
                if org_id not in rates:
                    rates[org_id] = _compute_rate(org_id)
                cost = (Decimal(seconds) / 3600 * rates[org_id] / 100).quantize(
                    pricing.SIX_PLACES, rounding=ROUND_HALF_UP
                )
                UsageDay.objects.update_or_create(
                    instance_id=instance_id,
                    day=day,
                    defaults={
                        "organization_id": org_id,
                        "running_seconds": seconds,
                        "input_tokens": (t or {}).get("input") or 0,
                        "output_tokens": (t or {}).get("output") or 0,
                        "cache_read_tokens": (t or {}).get("cache_read") or 0,
                        "cache_write_tokens": (t or {}).get("cache_write") or 0,
                        "compute_cost_usd": cost,
                        "llm_cost_usd": (t or {}).get("cost") or Decimal(0),
                    },
                )
                kept.append(instance_id)
            UsageDay.objects.filter(day=day).exclude(instance_id__in=kept).delete()
    finally:
        cache.delete(lock)
    if now >= end + dt.timedelta(hours=1):
        overage.report_overage(day=day)
    if month(day) == month(timezone.localdate(now)):
        budgets.check_budgets(day=day)
    return len(kept)
