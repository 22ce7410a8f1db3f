"""The fleet overview for staff: /admin/instances/host/overview/ (named "admin:fleet_overview").

Served through HostAdmin.get_urls (instances/admin.py), so fleet/urls.py stays as it is, and
linked from the admin index (templates/admin/index.html). Also sets the admin site's titles.

Every block is one query (a handful in all, whatever the fleet's size):
hosts with capacity and use, instances by status (with a Chart.js bar chart), failed operations in
the last 24 hours, instances without a good backup for 26 hours, the costliest instances this
month (billing.UsageDay) and the costliest sessions active this month (Session.cost_usd).
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

admin.site.site_header = "Clawfleet staff"
admin.site.site_title = "Clawfleet staff"
admin.site.index_title = "Fleet administration"

TOP = 10


def _link(name: str, query: str = "") -> str | None:
    try:
        return reverse(name) + (f"?{query}" if query else "")
    except NoReverseMatch:
        return None


def overview_context(*, now=None) -> dict:
    from instances.admin import NOT_LIVE, backup_overdue, month_start, with_fleet_annotations
    from instances.models import Host, Instance, Operation
    from sessions_mgmt.models import Session

    now = now or timezone.now()
    live = ~Q(instances__status__in=NOT_LIVE)
    hosts = list(
        Host.objects.annotate(
            live_count=Count("instances", filter=live),
            memory_allocated=Coalesce(Sum("instances__memory_mb", filter=live), 0),
        ).order_by("name")
    )
    for host in hosts:
        host.memory_pct = (
            round(100 * host.memory_allocated / host.memory_mb) if host.memory_mb else 0
        )
        host.count_pct = (
            round(100 * host.live_count / host.max_instances) if host.max_instances else 0
        )

    labels = dict(Instance.Status.choices)
    by_status = [
        {"status": row["status"], "label": labels.get(row["status"], row["status"]), **row}
        for row in Instance.objects.order_by()
        .values("status")
        .annotate(count=Count("pk"))
        .order_by("-count", "status")
    ]

    since = now - timedelta(hours=24)
    failed_qs = Operation.objects.filter(
        state=Operation.State.FAILED, created_at__gte=since
    ).select_related("instance", "organization")
    failed = list(failed_qs[:50])

    annotated = with_fleet_annotations(
        Instance.objects.select_related("organization", "host"), today=timezone.localdate(now)
    )
    overdue = list(backup_overdue(annotated, now=now).order_by("last_good_backup_at")[:50])
    costliest = list(
        annotated.exclude(status=Instance.Status.PURGED)
        .filter(mtd_cost_usd__gt=0)
        .order_by("-mtd_cost_usd")[:TOP]
    )
    first_day = month_start(timezone.localdate(now))
    sessions = list(
        Session.objects.filter(last_activity_at__date__gte=first_day)
        .select_related("instance", "organization")
        .order_by("-cost_usd")[:TOP]
    )

    chart = {
        "status_labels": [r["label"] for r in by_status],
        "status_counts": [r["count"] for r in by_status],
        "host_labels": [h.name for h in hosts],
        "host_memory_allocated": [h.memory_allocated for h in hosts],
        "host_memory_free": [max(h.memory_mb - h.memory_allocated, 0) for h in hosts],
    }
    return {
        "now": now,
        "hosts": hosts,
        "by_status": by_status,
        "instance_total": sum(r["count"] for r in by_status),
        "failed_operations": failed,
        "failed_total": len(failed) if len(failed) < 50 else failed_qs.count(),
        "overdue": overdue,
        "costliest_instances": costliest,
        "costliest_sessions": sessions,
        "month_start": first_day,
        "chart": chart,
        "links": {
            "instances": _link("admin:instances_instance_changelist"),
            "overdue": _link("admin:instances_instance_changelist", "backup_overdue=yes"),
            "crash_looping": _link("admin:instances_instance_changelist", "crash_looping=yes"),
            "failed_ops": _link("admin:instances_operation_changelist", "state__exact=failed"),
            "sessions": _link("admin:sessions_mgmt_session_changelist"),
            "backups": _link("admin:sessions_mgmt_backup_changelist"),
            "audit": _link("admin:accounts_auditevent_changelist"),
            "stripe_events": _link("admin:billing_stripeevent_changelist"),
            "subscriptions": _link("admin:billing_subscription_changelist"),
            "plans": _link("admin:billing_plan_changelist"),
            "usage": _link("admin:billing_usageday_changelist"),
            "hosts": _link("admin:instances_host_changelist"),
        },
    }


def fleet_overview(request, *, admin_site=None):
    """Staff with view access to instances (superusers, the Support group)."""
    if not request.user.has_perm("instances.view_instance"):
        raise PermissionDenied
    site = admin_site or admin.site
    context = {
        **site.each_context(request),
        "title": "Fleet overview",
        **overview_context(),
    }
    return TemplateResponse(request, "admin/fleet_overview.html", context)
