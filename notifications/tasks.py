"""Thin tasks: ids in, the service does the work (queue: maintenance, fleet/settings.py)."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(acks_late=True, soft_time_limit=60, time_limit=90)
def deliver_webhook(delivery_id: str, manual: bool = False) -> str:
    """One try of one delivery (a no-op when it is not due: sent, claimed, or scheduled later)."""
    attempt = services.delivery_attempt(delivery_id=delivery_id, manual=manual)
    if attempt is None:
        return "not due"
    return str(attempt.status_code or attempt.error)


@shared_task(acks_late=True, soft_time_limit=60, time_limit=90)
def deliver_due_webhooks() -> int:
    """Every minute: queue the deliveries whose next try is due (the long back-off waits are
    not left in the broker, whose visibility timeout would redeliver them)."""
    ids = services.due_deliveries()
    for pk in ids:
        deliver_webhook.delay(str(pk))
    return len(ids)
