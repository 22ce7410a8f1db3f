"""Thin Celery tasks for billing: ids in, call the service (routed to the "billing" queue)."""

from __future__ import annotations

import datetime as dt

from celery import shared_task
from django.utils import timezone

from . import stripe_api
from .services import enforcement, grace, stripe_events, usage


@shared_task(
    acks_late=True,
    autoretry_for=(stripe_api.StripeApiError,),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=8,
    soft_time_limit=60,
    time_limit=90,
)
def process_stripe_event(event_pk: int) -> str:
    """Apply one stored Stripe event (exactly once; a redelivery is a no-op)."""
    return stripe_events.process_event(event_pk)


@shared_task(acks_late=True, soft_time_limit=600, time_limit=900)
def rollup_usage() -> dict:
    """Hourly: rebuild the cost ledger for yesterday and today (idempotent)."""
    today = timezone.localdate()
    yesterday = today - dt.timedelta(days=1)
    return {
        str(yesterday): usage.rollup_usage(day=yesterday),
        str(today): usage.rollup_usage(day=today),
    }


@shared_task(acks_late=True, soft_time_limit=300, time_limit=600)
def enforce_grace_periods() -> int:
    """Every 15 minutes: pause (after a backup) instances of organizations past their grace,
    and those whose announced pause (plan ended, more instances than the plan) is due."""
    return grace.enforce_grace_periods() + enforcement.enforce_announced_pauses()


@shared_task(acks_late=True, soft_time_limit=300, time_limit=600)
def resume_after_payment(organization_id: int) -> int:
    """After a paid invoice: resume what billing paused for non-payment."""
    return grace.resume_after_payment(organization_id=organization_id)
