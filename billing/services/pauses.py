"""Pauses billing asks for (grace period over, budget reached): the BillingPause row that makes
each happen once, and the call into the instances app (billing.capabilities.pause), which backs
the instance up and then stops it."""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction

from .. import capabilities
from ..models import BillingPause

logger = logging.getLogger(__name__)


def pause_record(instance, *, reason: str, month: str = "") -> BillingPause | None:
    """The pause row for this instance, or None if one already exists (budget: per month)."""
    try:
        with transaction.atomic():
            return BillingPause.objects.create(
                organization_id=instance.organization_id,
                instance_id=instance.pk,
                reason=reason,
                month=month,
            )
    except IntegrityError:
        return None


def pause_instance(instance, pause: BillingPause, why: str) -> bool:
    """Ask instances to pause; a failure is kept on the row (one instance failing must not stop
    the others). Returns whether the pause was requested."""
    try:
        capabilities.pause(instance, reason=why)
    except Exception as exc:  # recorded on the row; the next run retries
        logger.exception("billing could not pause instance %s", instance.pk)
        BillingPause.objects.filter(pk=pause.pk).update(error=str(exc)[:2000])
        return False
    BillingPause.objects.filter(pk=pause.pk).update(error="")
    return True
