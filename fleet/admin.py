"""The staff admin site: its titles, the staff door and the fleet overview.

FleetAdminSite is the default admin site (fleet/apps.py, `default_site`), so every app's
`@admin.register` lands on it. This module is imported while the apps' admin modules register,
so it imports no app at module level (the overview imports what it reads when it runs).

The staff door (docs/admin.md, issue 12):
- /admin/ signs in through allauth's login view, so allauth's rate limits and its MFA stage
  apply; the admin's own password form is never shown (its login and password pages redirect to
  allauth's);
- a staff member who has not enrolled an authenticator app (TOTP) is sent to enrol
  (mfa_activate_totp) before any admin page renders; one who has, but whose session did not use
  it (e.g. a session from another sign-in path), confirms a code first (mfa_reauthenticate).
  settings.FLEET_STAFF_MFA_REQUIRED=false turns this off, refused unless DEBUG is on.

The fleet overview: /admin/overview/ (named "admin:fleet_overview"), linked from the admin
index. Every block is one query (a handful in all, whatever the fleet's size): hosts with
capacity and use, instances by status (with a Chart.js bar chart), failed operations in the last
24 hours, instances that need a backup (sessions_mgmt.selectors.needs_backup), the costliest
instances this month (billing.UsageDay) and the costliest sessions active this month.
"""

from __future__ import annotations

from datetime import timedelta
from functools import wraps
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone
from django.views.generic import RedirectView

TOP = 10
FAILED_SHOWN = 50


# --- the staff door ----------------------------------------------------------------------------


def staff_mfa_required() -> bool:
    """TOTP is required of staff unless a development machine turned it off."""
    return bool(getattr(settings, "FLEET_STAFF_MFA_REQUIRED", True) or not settings.DEBUG)


def staff_door(request) -> str | None:
    """Where a signed-in staff member must go before an admin page renders, or None.

    No TOTP enrolled: allauth's enrolment page. Enrolled, but this session was not confirmed
    with a code (allauth records each authentication step in the session): allauth's
    "confirm with a code" page, which comes back here."""
    if not staff_mfa_required():
        return None
    from allauth.account.authentication import get_authentication_records
    from allauth.mfa.models import Authenticator
    from allauth.mfa.utils import is_mfa_enabled

    user = request.user
    if not is_mfa_enabled(user, [Authenticator.Type.TOTP]):
        return reverse("mfa_activate_totp")
    if not any(r.get("method") == "mfa" for r in get_authentication_records(request, user)):
        query = urlencode({REDIRECT_FIELD_NAME: request.get_full_path()})
        return f"{reverse('mfa_reauthenticate')}?{query}"
    return None


class FleetAdminSite(admin.AdminSite):
    site_header = "Clawfleet staff"
    site_title = "Clawfleet staff"
    index_title = "Fleet administration"

    def admin_view(self, view, cacheable=False):
        """Every admin page (the site's, each ModelAdmin's, their extra views) passes the staff
        door first; Django's own checks (signed in, staff) come before it."""
        inner = super().admin_view(view, cacheable)

        @wraps(inner)
        def door(request, *args, **kwargs):
            match = request.resolver_match
            if self.has_permission(request) and not (match and match.url_name == "logout"):
                to = staff_door(request)
                if to is not None:
                    return HttpResponseRedirect(to)
            return inner(request, *args, **kwargs)

        return door

    def login(self, request, extra_context=None):
        """allauth signs staff in (its rate limits, its MFA stage); this form is never shown."""
        if request.user.is_authenticated:
            if not self.has_permission(request):
                raise PermissionDenied("This account is not staff.")
            return HttpResponseRedirect(reverse("admin:index", current_app=self.name))
        target = request.GET.get(REDIRECT_FIELD_NAME) or reverse(
            "admin:index", current_app=self.name
        )
        return redirect_to_login(target, reverse("account_login"))

    def password_change(self, request, extra_context=None):
        return HttpResponseRedirect(reverse("account_change_password"))

    def password_change_done(self, request, extra_context=None):
        return HttpResponseRedirect(reverse("account_change_password"))

    def get_urls(self):
        # Before the models' URLs: "instances/host/<id>/" would otherwise take the old path.
        return [
            path("overview/", self.admin_view(self.overview_view), name="fleet_overview"),
            path(  # the overview's address until it moved to the site
                "instances/host/overview/",
                RedirectView.as_view(pattern_name="admin:fleet_overview", permanent=True),
            ),
            *super().get_urls(),
        ]

    def overview_view(self, request):
        """Staff with view access to instances (superusers, the Support group)."""
        if not request.user.has_perm("instances.view_instance"):
            raise PermissionDenied
        context = {
            **self.each_context(request),
            "title": "Fleet overview",
            **overview_context(),
        }
        return TemplateResponse(request, "admin/fleet_overview.html", context)


# --- the fleet overview ------------------------------------------------------------------------


def _link(name: str, query: str = "") -> str | None:
    try:
        return reverse(name) + (f"?{query}" if query else "")
    except NoReverseMatch:
        return None


def overview_context(*, now=None) -> dict:
    from instances import pool, selectors
    from instances.models import Instance, Operation
    from sessions_mgmt.admin import with_backup_annotations
    from sessions_mgmt.models import Session
    from sessions_mgmt.selectors import needs_backup

    now = now or timezone.now()
    hosts = list(selectors.hosts_with_usage().order_by("name"))
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
    failed = list(failed_qs[:FAILED_SHOWN])

    today = timezone.localdate(now)
    annotated = with_backup_annotations(
        selectors.with_fleet_annotations(
            Instance.objects.select_related("organization", "host"), today=today
        ),
        now=now,
    )
    overdue = list(needs_backup(annotated, now=now).order_by("last_good_backup_at")[:50])
    costliest = list(
        annotated.exclude(status=Instance.Status.PURGED)
        .filter(mtd_cost_usd__gt=0)
        .order_by("-mtd_cost_usd")[:TOP]
    )
    first_day = selectors.month_start(today)
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
        "pool": pool.overview(now=now),
        "by_status": by_status,
        "instance_total": sum(r["count"] for r in by_status),
        "failed_operations": failed,
        "failed_total": len(failed) if len(failed) < FAILED_SHOWN else failed_qs.count(),
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
