"""Reads for instances. Every function takes the organization as a keyword and returns a
queryset scoped to it, so a caller cannot forget the tenant."""

from __future__ import annotations

from django.db.models import QuerySet

from .models import Instance, InstanceEvent, Operation


def instances_for(*, organization, include_purged: bool = False) -> QuerySet[Instance]:
    qs = Instance.objects.filter(organization=organization).select_related("host")
    if not include_purged:
        qs = qs.exclude(status=Instance.Status.PURGED)
    return qs


def instance_for(*, organization, pk) -> Instance:
    """One instance of the organization; Instance.DoesNotExist for another tenant's (a 404)."""
    return instances_for(organization=organization, include_purged=True).get(pk=pk)


def operations_for(*, organization, instance: Instance | None = None) -> QuerySet[Operation]:
    qs = Operation.objects.filter(organization=organization).select_related("instance")
    if instance is not None:
        qs = qs.filter(instance=instance)
    return qs


def active_operation_for(*, organization, instance: Instance) -> Operation | None:
    return (
        operations_for(organization=organization, instance=instance)
        .filter(state__in=Operation.ACTIVE_STATES)
        .first()
    )


def events_for(
    *, organization, instance: Instance | None = None, kind: str | None = None
) -> QuerySet[InstanceEvent]:
    qs = InstanceEvent.objects.filter(instance__organization=organization).select_related(
        "instance"
    )
    if instance is not None:
        qs = qs.filter(instance=instance)
    if kind:
        qs = qs.filter(kind=kind)
    return qs
