"""Quotas against abuse of backups and restores (issue 12, docs/backups.md "Quotas").

- Manual backups and restores are rate-limited per instance (FLEET_MANUAL_BACKUPS_PER_HOUR,
  FLEET_RESTORES_PER_HOUR), counted from the Operation rows themselves, like invitations.
- Backup storage: the plan's `backup_storage_mb` per instance holds its backups (every kind) and
  the volume copies a restore keeps (counted as the state they hold: their pre-restore backup's
  archive size, until FLEET_PRERESTORE_KEEP_DAYS removes them). A manual backup or a restore that
  would add to a full allowance is refused with a message; scheduled backups are never refused
  (a conversation is worth more than the allowance) and retention brings the total down.
- Disk: the plan's `disk_mb` is the state volume's allowance. Docker's local volume driver on
  this engine cannot cap a volume (decision 38), so a volume past it is reported: an instance
  event and one mail to the owners per crossing, and the dashboard shows it.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Sum
from django.utils import timezone

from accounts.services import RateLimited
from instances.models import Instance, InstanceEvent, Operation

from ..models import Backup

MB = 1024 * 1024


def _plan(instance: Instance):
    from billing.entitlements import plan_for

    return plan_for(instance.organization_id)


def _rate(instance: Instance, *, kind: str, limit: int, what: str, manual_only: bool) -> None:
    since = timezone.now() - timedelta(hours=1)
    rows = Operation.objects.filter(instance=instance, kind=kind, created_at__gte=since)
    if manual_only:
        rows = rows.filter(params__kind=Backup.Kind.MANUAL)
    if rows.count() < limit:
        return
    oldest = rows.order_by("created_at").values_list("created_at", flat=True)[0]
    wait = max(1, int((oldest + timedelta(hours=1) - timezone.now()).total_seconds()) + 1)
    minutes = max(1, round(wait / 60))
    raise RateLimited(
        f"Too many {what} of {instance.name} in the last hour ({limit}). "
        f"Try again in about {minutes} minute{'s' if minutes != 1 else ''}.",
        retry_after=wait,
    )


def storage_used_bytes(instance: Instance) -> int:
    """What the instance's backups and kept pre-restore volumes hold now."""
    kept = Backup.objects.filter(instance=instance, state=Backup.State.SUCCEEDED)
    used = kept.aggregate(total=Sum("size_bytes"))["total"] or 0
    since = timezone.now() - timedelta(days=int(settings.FLEET_PRERESTORE_KEEP_DAYS))
    for manifest in kept.filter(kind=Backup.Kind.PRE_RESTORE, created_at__gte=since).values_list(
        "manifest", flat=True
    ):
        used += int((manifest or {}).get("archive_size") or 0)
    return used


def storage(instance: Instance) -> dict:
    """The allowance as the dashboard shows it: used and allowed bytes, percent, full."""
    plan = _plan(instance)
    allowed = plan.backup_storage_mb * MB if plan else 0
    used = storage_used_bytes(instance)
    disk_used = latest_state_size(instance)
    disk_allowed = plan.disk_mb * MB if plan else 0
    return {
        "used": used,
        "allowed": allowed,
        "percent": min(100, round(100 * used / allowed)) if allowed else 0,
        "full": bool(allowed) and used >= allowed,
        "disk_used": disk_used,
        "disk_allowed": disk_allowed,
        "disk_over": bool(disk_allowed) and disk_used > disk_allowed,
    }


def _check_storage(instance: Instance, verb: str) -> None:
    info = storage(instance)
    if info["full"]:
        raise ValidationError(
            f"Cannot {verb}: the backups of {instance.name} use "
            f"{info['used'] // MB} MB of the plan's {info['allowed'] // MB} MB. "
            "Delete older backups or choose a larger plan.",
            code="storage_full",
        )


def check_manual_backup(instance: Instance) -> None:
    """Before a manual backup is queued: the hourly limit, then the storage allowance."""
    _rate(
        instance,
        kind=Operation.Kind.BACKUP,
        limit=int(settings.FLEET_MANUAL_BACKUPS_PER_HOUR),
        what="manual backups",
        manual_only=True,
    )
    _check_storage(instance, "back up")


def check_restore(instance: Instance) -> None:
    """Before a restore is queued: a plan (it starts the gateway), the hourly limit, and room
    for the pre-restore backup and volume copy it keeps."""
    if _plan(instance) is None:
        raise ValidationError(
            {
                "plan": ValidationError(
                    f"Cannot restore {instance.name}: this organization has no active plan. "
                    "Choose a plan, then try again.",
                    code="no_plan",
                )
            }
        )
    _rate(
        instance,
        kind=Operation.Kind.RESTORE,
        limit=int(settings.FLEET_RESTORES_PER_HOUR),
        what="restores",
        manual_only=False,
    )
    _check_storage(instance, "restore")


def latest_state_size(instance: Instance) -> int:
    """The state volume's size as its newest backup measured it (the uncompressed archive)."""
    manifest = (
        Backup.objects.filter(instance=instance, state=Backup.State.SUCCEEDED)
        .exclude(kind=Backup.Kind.INCREMENTAL)
        .order_by("-created_at")
        .values_list("manifest", flat=True)
        .first()
    )
    return int((manifest or {}).get("archive_size") or 0)


def report_disk_usage(*, instance: Instance, backup: Backup) -> bool:
    """After a backup: a state past the plan's disk allowance is reported once per crossing
    (an instance event, a mail to the owners). True when it is over."""
    plan = _plan(instance)
    size = int((backup.manifest or {}).get("archive_size") or 0)
    if plan is None or not size:
        return False
    over = size > plan.disk_mb * MB
    last = (
        InstanceEvent.objects.filter(instance=instance, kind__in=["disk_over", "disk_ok"])
        .order_by("-created_at")
        .values_list("kind", flat=True)
        .first()
    )
    if over and last != "disk_over":
        InstanceEvent.objects.create(
            instance=instance,
            kind="disk_over",
            message=(
                f"The assistant's state is {size // MB} MB, over the plan's "
                f"{plan.disk_mb} MB disk allowance."
            ),
            data={"bytes": size, "allowed_mb": plan.disk_mb},
        )
        _mail_owners(instance, size, plan.disk_mb)
    elif not over and last == "disk_over":
        InstanceEvent.objects.create(
            instance=instance,
            kind="disk_ok",
            message="The assistant's state is back within the plan's disk allowance.",
            data={"bytes": size, "allowed_mb": plan.disk_mb},
        )
    return over


def _mail_owners(instance: Instance, size: int, allowed_mb: int) -> None:
    from django.core.mail import send_mail

    from accounts.models import Membership, Role

    emails = list(
        Membership.objects.filter(organization_id=instance.organization_id, role=Role.OWNER)
        .values_list("user__email", flat=True)
        .distinct()
    )
    if not emails:
        return
    send_mail(
        f"{instance.name} is over its disk allowance",
        (
            f"The state of your assistant {instance.name} is {size // MB} MB, over the "
            f"{allowed_mb} MB your plan includes. Prune old sessions or choose a larger plan."
        ),
        None,
        emails,
        fail_silently=True,
    )
