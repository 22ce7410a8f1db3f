"""Plans stay enforced after they end or shrink (issue 12, docs/billing.md "When a plan ends").

- A subscription that stops paying for a plan (canceled, unpaid, a staff comp ended) is
  entitled to nothing from that moment: nothing starts again (instances.services checks the
  plan). What runs keeps running for BILLING_END_NOTICE_DAYS, announced by mail, then is paused:
  a backup first, then stopped, never deleted (a BillingPause "ended" with its due time).
- A plan change that leaves more instances than the new plan allows marks the excess, the
  newest first, and pauses them after the same notice (BillingPause "over_plan").
- Coming back (a plan again, a bigger plan) cancels what is still announced and resumes what
  was paused for that reason. `enforce_announced_pauses` (the billing beat task) does the due
  pauses; every step is safe to repeat.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.services import SYSTEM, audit

from .. import capabilities
from ..models import BillingPause, Subscription
from .common import email_on_commit
from .pauses import pause_instance

logger = logging.getLogger(__name__)
ANNOUNCED = (BillingPause.Reason.ENDED, BillingPause.Reason.OVER_PLAN)


def notice() -> dt.timedelta:
    return dt.timedelta(days=settings.BILLING_END_NOTICE_DAYS)


def _announce(sub: Subscription, instances, reason: str, due: dt.datetime) -> list:
    announced = []
    for instance in instances:
        pause, created = BillingPause.objects.get_or_create(
            instance_id=instance.pk,
            reason=reason,
            resumed_at__isnull=True,
            defaults={"organization_id": sub.organization_id, "due_at": due},
        )
        if created:
            announced.append(instance)
    return announced


def subscription_changed(sub: Subscription, *, was_entitled: bool, old_plan_id) -> None:
    """After any change of the row (Stripe, staff): announce, cancel or resume pauses."""
    now = timezone.now()
    if was_entitled and not sub.is_entitled:
        Subscription.objects.filter(pk=sub.pk).update(ended_at=now)
        sub.ended_at = now
        due = now + notice()
        names = [
            i.name
            for i in _announce(
                sub, capabilities.pausable(sub.organization_id), BillingPause.Reason.ENDED, due
            )
        ]
        if names:
            email_on_commit(
                sub.organization,
                "Your Clawfleet plan has ended",
                (
                    "Your subscription has ended. Your assistants keep running until "
                    f"{due:%Y-%m-%d %H:%M} UTC; then each is backed up and paused, never deleted: "
                    f"{', '.join(names)}. Choose a plan before then to keep them running."
                ),
            )
        audit(
            actor=SYSTEM,
            action="subscription.ended",
            organization=sub.organization,
            target=sub,
            data={"status": sub.status, "pause_due": due.isoformat(), "instances": names},
        )
        return
    if sub.is_entitled and sub.ended_at is not None:
        Subscription.objects.filter(pk=sub.pk).update(ended_at=None)
        sub.ended_at = None
        _lift(sub.organization_id, BillingPause.Reason.ENDED)
    if sub.is_entitled and (old_plan_id != sub.plan_id or not was_entitled):
        _check_instance_count(sub)


def _check_instance_count(sub: Subscription) -> None:
    allowed = sub.plan.max_instances
    live = list(
        capabilities.instances(sub.organization_id).order_by("-created_at", "-pk")
    )  # newest first
    open_over = BillingPause.objects.filter(
        organization_id=sub.organization_id,
        reason=BillingPause.Reason.OVER_PLAN,
        resumed_at__isnull=True,
    )
    already = set(open_over.values_list("instance_id", flat=True))
    excess = len(live) - allowed
    if excess <= 0:
        _lift(sub.organization_id, BillingPause.Reason.OVER_PLAN)
        return
    # The newest `excess` instances are over the plan; earlier marks that are no longer among
    # them (an instance was deleted) are lifted.
    over = live[:excess]
    keep = {i.pk for i in over}
    for pause in open_over.exclude(instance_id__in=keep):
        _lift_one(pause)
    due = timezone.now() + notice()
    marked = _announce(sub, over, BillingPause.Reason.OVER_PLAN, due)
    if marked:
        names = ", ".join(i.name for i in marked)
        email_on_commit(
            sub.organization,
            "More assistants than your plan allows",
            (
                f"Your plan ({sub.plan.name}) allows {allowed} instance"
                f"{'s' if allowed != 1 else ''}; you have {len(live)}. Unless you delete some or "
                f"choose a larger plan, these are backed up and paused on "
                f"{due:%Y-%m-%d %H:%M} UTC: {names}."
            ),
        )
        audit(
            actor=SYSTEM,
            action="subscription.over_plan",
            organization=sub.organization,
            target=sub,
            data={
                "allowed": allowed,
                "instances": [str(i.pk) for i in marked],
                "pause_due": due.isoformat(),
                "already_marked": len(already),
            },
        )


def _lift(organization_id: int, reason: str) -> None:
    for pause in BillingPause.objects.filter(
        organization_id=organization_id, reason=reason, resumed_at__isnull=True
    ).select_related("instance"):
        _lift_one(pause)


def _lift_one(pause: BillingPause) -> None:
    """An announced pause no longer applies: not yet done, it is withdrawn; done, the instance
    is resumed (a pause still in flight is retried by the next run)."""
    if pause.paused_at is None:
        BillingPause.objects.filter(pk=pause.pk).delete()
        return
    try:
        done = capabilities.resume(pause.instance)
    except Exception as exc:  # noqa: BLE001 - recorded; the next run retries
        logger.exception("billing could not resume instance %s", pause.instance_id)
        BillingPause.objects.filter(pk=pause.pk).update(error=str(exc)[:2000])
        return
    if done:
        BillingPause.objects.filter(pk=pause.pk).update(resumed_at=timezone.now(), error="")


def enforce_announced_pauses(*, now: dt.datetime | None = None) -> int:
    """Pause (backup first) every instance whose announced pause is due. Returns how many."""
    now = now or timezone.now()
    paused = 0
    due = BillingPause.objects.filter(
        reason__in=ANNOUNCED, resumed_at__isnull=True, paused_at__isnull=True, due_at__lte=now
    ).select_related("instance", "organization")
    for pause in due:
        sub = Subscription.objects.filter(organization_id=pause.organization_id).first()
        if pause.reason == BillingPause.Reason.ENDED and sub is not None and sub.is_entitled:
            _lift_one(pause)  # a plan again since: withdraw
            continue
        why = (
            "The subscription ended."
            if pause.reason == BillingPause.Reason.ENDED
            else "More instances than the plan allows."
        )
        if not pause.instance.is_live:
            BillingPause.objects.filter(pk=pause.pk).delete()
            continue
        with transaction.atomic():
            if not pause_instance(pause.instance, pause, why):
                continue
            BillingPause.objects.filter(pk=pause.pk).update(paused_at=now)
        paused += 1
        audit(
            actor=SYSTEM,
            action="instance.billing_paused",
            organization=pause.organization,
            target=pause.instance,
            data={"reason": pause.reason, "due_at": pause.due_at.isoformat()},
        )
    return paused
