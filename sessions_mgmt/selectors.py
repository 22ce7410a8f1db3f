"""Reads for sessions and backups. Every function takes the organization as a keyword."""

from __future__ import annotations

from datetime import datetime, time

from django.db.models import F, Q, QuerySet
from django.utils import timezone

from .models import Backup, Session

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
