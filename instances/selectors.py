"""Reads for instances. Every function takes the organization as a keyword and returns a
queryset scoped to it, so a caller cannot forget the tenant; the staff reads at the end (for the
admin, across organizations) take a queryset the admin already chose."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db.models import (
    Count,
    DecimalField,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing.models import UsageDay

from .models import Host, Instance, InstanceEvent, Operation


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


# --- staff reads (the admin and the fleet overview) -------------------------------------------
# Staff look across organizations, so these take a queryset (already chosen by the admin) instead
# of an organization. They stay one query however many rows: correlated subqueries, no per-row
# reads (tests/admin/test_query_counts.py).

NOT_LIVE = (Instance.Status.DELETED, Instance.Status.PURGED)
MONEY = DecimalField(max_digits=14, decimal_places=6)


def month_start(today=None):
    """The first day of the current month, as billing.selectors counts month to date."""
    return (today or timezone.localdate()).replace(day=1)


def with_fleet_annotations(qs: QuerySet[Instance], *, today=None) -> QuerySet[Instance]:
    """Annotate `mtd_cost_usd`: the instance's UsageDay rows this month (compute and LLM), as a
    correlated subquery, so a list of instances stays one query."""
    today = today or timezone.localdate()
    usage = (
        UsageDay.objects.filter(instance=OuterRef("pk"), day__range=(month_start(today), today))
        .order_by()
        .values("instance")
        .annotate(total=Sum(F("compute_cost_usd") + F("llm_cost_usd")))
        .values("total")
    )
    return qs.annotate(
        mtd_cost_usd=Coalesce(Subquery(usage, output_field=MONEY), Value(Decimal("0")))
    )


def crash_looping(qs: QuerySet[Instance]) -> QuerySet[Instance]:
    """Instances the reconcile loop found crash-looping, or about to be (the crash count)."""
    return qs.filter(
        Q(status=Instance.Status.CRASH_LOOPING)
        | Q(crash_count__gte=settings.FLEET_CRASH_LOOP_THRESHOLD)
    )


def hosts_with_usage(qs: QuerySet[Host] | None = None) -> QuerySet[Host]:
    """Hosts annotated with `live_count` and `memory_allocated` (MB) by their live instances."""
    live = ~Q(instances__status__in=NOT_LIVE)
    qs = Host.objects.all() if qs is None else qs
    return qs.annotate(
        live_count=Count("instances", filter=live),
        memory_allocated=Coalesce(Sum("instances__memory_mb", filter=live), 0),
    )
