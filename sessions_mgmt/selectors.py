"""Reads for sessions and backups. Every function takes the organization as a keyword."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from instances.models import Instance

from .models import Backup, Session

# An instance needs a backup when its newest good backup finished (never backed up: when it was
# created) more than BACKUP_MAX_AGE ago: the nightly run has had its chance and missed it.
BACKUP_MAX_AGE = timedelta(hours=26)
# Not backed up at all: not deployed yet (nothing to copy), or deleted.
NOT_BACKED_UP = (
    Instance.Status.PENDING,
    Instance.Status.DEPLOYING,
    Instance.Status.DELETED,
    Instance.Status.PURGED,
)


def needs_backup(queryset: QuerySet[Instance], *, now=None) -> QuerySet[Instance]:
    """The one rule of "which instances need a backup", as a filter over `queryset`.

    An instance is backed up when it is deployed and live (it has a host; its status is not
    pending, deploying, deleted or purged), running or not (a stopped one gets a cold copy). It
    needs a backup at `now` when it has no succeeded backup finished in the BACKUP_MAX_AGE
    before `now` and is older than that (one deployed an hour ago has not had its nightly run).

    Used by the nightly run (asked at the end of the coming cycle: every instance that would be
    overdue by then without tonight's backup), the freshness alert and the admin's overdue
    filter and overview (asked at the present: overdue now), so the three always agree.
    """
    cutoff = (now or timezone.now()) - BACKUP_MAX_AGE
    fresh = Backup.objects.filter(instance=OuterRef("pk"), state=Backup.State.SUCCEEDED).filter(
        Q(finished_at__gte=cutoff) | Q(finished_at__isnull=True, created_at__gte=cutoff)
    )
    return (
        queryset.filter(host__isnull=False, created_at__lt=cutoff)
        .exclude(status__in=NOT_BACKED_UP)
        .exclude(Exists(fresh))
    )


SORTS = {
    "recent": [F("last_activity_at").desc(nulls_last=True), "-id"],
    "oldest": [F("last_activity_at").asc(nulls_last=True), "id"],
    "cost": ["-cost_usd", "-id"],
    "cost_asc": ["cost_usd", "id"],
    "tokens": ["-input_tokens", "-output_tokens", "-id"],
}


def sessions_for(
    *,
    organization,
    instance=None,
    q: str = "",
    channel: str = "",
    status: str = "",
    start=None,
    end=None,
    sort: str = "recent",
) -> QuerySet[Session]:
    qs = Session.objects.filter(organization=organization).select_related("instance")
    if instance is not None:
        qs = qs.filter(instance=instance)
    if q:
        qs = qs.filter(Q(session_key__icontains=q) | Q(model__icontains=q))
    if channel:
        qs = qs.filter(channel=channel)
    if status:
        qs = qs.filter(status=status)
    tz = timezone.get_current_timezone()
    if start:
        qs = qs.filter(
            last_activity_at__gte=timezone.make_aware(datetime.combine(start, time.min), tz)
        )
    if end:
        qs = qs.filter(
            last_activity_at__lte=timezone.make_aware(datetime.combine(end, time.max), tz)
        )
    return qs.order_by(*SORTS.get(sort, SORTS["recent"]))


def session_for(*, organization, pk) -> Session:
    return Session.objects.select_related("instance", "instance__host").get(
        organization=organization, pk=pk
    )


def channels_for(*, organization) -> list[str]:
    return list(
        Session.objects.filter(organization=organization)
        .exclude(channel="")
        .order_by("channel")
        .values_list("channel", flat=True)
        .distinct()
    )


def backups_for(*, organization, instance) -> QuerySet[Backup]:
    return Backup.objects.filter(organization=organization, instance=instance).order_by(
        "-created_at"
    )


def backup_for(*, organization, instance, pk) -> Backup:
    return backups_for(organization=organization, instance=instance).get(pk=pk)


def last_good_backup(*, instance) -> Backup | None:
    return (
        Backup.objects.filter(instance=instance, state=Backup.State.SUCCEEDED)
        .order_by("-created_at")
        .first()
    )


def restorable_backups(*, instance) -> QuerySet[Backup]:
    """Every point a restore can choose (nightly, points in time, manual, safety backups): the
    succeeded backups with their objects in storage, newest first. A failed, running or expired
    backup is never offered."""
    return (
        Backup.objects.filter(
            instance=instance,
            organization_id=instance.organization_id,
            state=Backup.State.SUCCEEDED,
        )
        .exclude(storage_name="")
        .order_by("-created_at")
    )


def backup_status(*, instance) -> dict:
    """What the instance page says about its backups: where they are kept, the newest good one,
    and whether the latest attempts are failing (with since when and why)."""
    from . import backup_store

    last_good = last_good_backup(instance=instance)
    attempts = Backup.objects.filter(
        instance=instance, state__in=[Backup.State.SUCCEEDED, Backup.State.FAILED]
    ).order_by("-created_at")
    if last_good is not None:
        attempts = attempts.filter(created_at__gt=last_good.created_at)
    failed = list(attempts.filter(state=Backup.State.FAILED).order_by("created_at")[:1])
    latest_failed = attempts.filter(state=Backup.State.FAILED).first()
    message = latest_failed.error.split(" (")[0] if latest_failed else ""
    return {
        "where": backup_store.storage_description(),
        "off_machine": backup_store.is_off_machine(),
        "last_good": last_good,
        "failing": bool(failed),
        "failing_since": failed[0].created_at if failed else None,
        "message": message,
    }
