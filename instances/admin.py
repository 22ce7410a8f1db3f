"""Staff admin for hosts, instances, operations and events.

House style: nothing here saves a business field. Instances, operations and events are
view-only in admin; every change is an admin action (or a button on the change page) that calls
the same service function as the dashboard and the API (instances.services,
sessions_mgmt.services). A service's OperationInProgress or ValidationError becomes an admin error
message, never a 500.

Who may do what (see docs/admin.md):
- view: the model's Django "view" permission (the Support group has it);
- operate (restart, stop, start, upgrade, back up, prune, sync, restore): the permission
  "instances.change_instance" (superusers; Support does not have it).

Changelist query counts are flat (netbox's baselines, tests/admin/test_query_counts.py): month-to-
date cost and the last good backup are correlated subqueries in the one list query, relations are
select_related.
"""

from __future__ import annotations

import importlib
import logging
from datetime import timedelta
from decimal import Decimal

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import (
    Count,
    DecimalField,
    F,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

import fleet.admin  # noqa: F401 - the admin site's titles
from accounts.services import Actor
from billing.models import UsageDay
from sessions_mgmt.models import Backup, Session

from . import services as instance_services
from .models import Host, Instance, InstanceEvent, Operation
from .operations import OperationInProgress

log = logging.getLogger(__name__)

SECRET_FIELDS = ("gateway_token", "provider_api_key", "channel_token")
BACKUP_OVERDUE_AFTER = timedelta(hours=26)
NOT_LIVE = (Instance.Status.DELETED, Instance.Status.PURGED)
# The nightly run backs up every live instance except those not deployed yet
# (sessions_mgmt.tasks.nightly_backups): the same set can be overdue.
NOT_BACKED_UP = (*NOT_LIVE, Instance.Status.PENDING, Instance.Status.DEPLOYING)
OPERATE_PERMISSION = "instances.change_instance"
TRANSCRIPT_PERMISSION = "sessions_mgmt.view_transcript"
RECENT_SESSIONS = 50
RECENT_OPERATIONS = 20
RECENT_BACKUPS = 20
RECENT_EVENTS = 50
MONEY = DecimalField(max_digits=14, decimal_places=6)


# --- shared reads (also used by the fleet overview, fleet/admin.py) ----------------------------


def month_start(today=None):
    """The first day of the current month, as billing.selectors counts month to date."""
    return (today or timezone.localdate()).replace(day=1)


def with_fleet_annotations(qs: QuerySet[Instance], *, today=None) -> QuerySet[Instance]:
    """Annotate `mtd_cost_usd` (UsageDay this month) and `last_good_backup_at` (the newest
    succeeded backup) as correlated subqueries: still one query for the whole list."""
    today = today or timezone.localdate()
    usage = (
        UsageDay.objects.filter(instance=OuterRef("pk"), day__range=(month_start(today), today))
        .order_by()
        .values("instance")
        .annotate(total=Sum(F("compute_cost_usd") + F("llm_cost_usd")))
        .values("total")
    )
    last_backup = (
        Backup.objects.filter(instance=OuterRef("pk"), state=Backup.State.SUCCEEDED)
        .order_by()
        .values("instance")
        .annotate(newest=Max("finished_at"))
        .values("newest")
    )
    return qs.annotate(
        mtd_cost_usd=Coalesce(Subquery(usage, output_field=MONEY), Value(Decimal("0"))),
        last_good_backup_at=Subquery(last_backup),
    )


def backup_overdue(qs: QuerySet[Instance], *, now=None) -> QuerySet[Instance]:
    """Deployed, live instances older than 26 h without a succeeded backup finished in the last
    26 h. `qs` must carry `with_fleet_annotations`. An instance deployed less than 26 h ago is not
    overdue yet: the nightly run has not had its chance."""
    cutoff = (now or timezone.now()) - BACKUP_OVERDUE_AFTER
    return qs.exclude(status__in=NOT_BACKED_UP).filter(
        Q(last_good_backup_at__isnull=True) | Q(last_good_backup_at__lt=cutoff),
        created_at__lt=cutoff,
    )


def crash_looping(qs: QuerySet[Instance]) -> QuerySet[Instance]:
    return qs.filter(
        Q(status=Instance.Status.CRASH_LOOPING)
        | Q(crash_count__gte=settings.FLEET_CRASH_LOOP_THRESHOLD)
    )


def admin_actor(request) -> Actor:
    return Actor(user=request.user, ip=request.META.get("REMOTE_ADDR"), via="admin")


def sessions_service(name: str):
    """A function of sessions_mgmt.services, or None while it does not exist."""
    try:
        module = importlib.import_module("sessions_mgmt.services")
    except ImportError:
        return None
    return getattr(module, name, None)


def _plan_of(instance: Instance):
    org = instance.organization
    try:
        subscription = org.subscription
    except Exception:  # noqa: BLE001 - RelatedObjectDoesNotExist: no subscription yet
        return None
    return subscription.plan if subscription else None


def _money(value) -> str:
    return f"${Decimal(value or 0):,.2f}"


# --- list filters ------------------------------------------------------------------------------


class BackupOverdueFilter(admin.SimpleListFilter):
    title = "backup overdue (26 h)"
    parameter_name = "backup_overdue"

    def lookups(self, request, model_admin):
        return (("yes", "Overdue"), ("no", "Backed up"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return backup_overdue(queryset)
        if self.value() == "no":
            overdue = backup_overdue(queryset).values("pk")
            return queryset.exclude(pk__in=overdue)
        return queryset


class CrashLoopingFilter(admin.SimpleListFilter):
    title = "crash-looping"
    parameter_name = "crash_looping"

    def lookups(self, request, model_admin):
        return (("yes", "Crash-looping"), ("no", "Not crash-looping"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return crash_looping(queryset)
        if self.value() == "no":
            return queryset.exclude(pk__in=crash_looping(queryset).values("pk"))
        return queryset


class VersionFilter(admin.SimpleListFilter):
    """The versions we offer plus any still running (one distinct query)."""

    title = "OpenClaw version"
    parameter_name = "openclaw_version"

    def lookups(self, request, model_admin):
        running = Instance.objects.order_by().values_list("openclaw_version", flat=True).distinct()
        versions = sorted(set(settings.FLEET_OPENCLAW_VERSIONS) | set(running), reverse=True)
        return [(v, v) for v in versions if v]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(openclaw_version=self.value())
        return queryset


# --- forms for the intermediate pages -----------------------------------------------------------


class UpgradeForm(forms.Form):
    version = forms.ChoiceField(label="OpenClaw version")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["version"].choices = [(v, v) for v in settings.FLEET_OPENCLAW_VERSIONS]


class BackupChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Backup) -> str:
        when = timezone.localtime(obj.finished_at or obj.created_at).strftime("%Y-%m-%d %H:%M")
        return (
            f"{when} UTC · {obj.get_kind_display()} · {filesizeformat(obj.size_bytes)} · "
            f"{obj.session_count} sessions · OpenClaw {obj.openclaw_version or '?'}"
        )


class RestoreForm(forms.Form):
    backup = BackupChoiceField(
        queryset=Backup.objects.none(), widget=forms.RadioSelect, empty_label=None
    )
    confirm = forms.BooleanField(
        label="I understand that the instance's current state is replaced by this backup.",
        required=True,
    )

    def __init__(self, *args, instance: Instance, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["backup"].queryset = Backup.objects.filter(
            instance=instance, state=Backup.State.SUCCEEDED
        ).order_by("-finished_at", "-created_at")


# --- hosts -------------------------------------------------------------------------------------


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    """Engines and their capacity. Hosts are configuration, edited here; the fleet overview
    (/admin/instances/host/overview/) hangs off this admin's URLs."""

    list_display = [
        "name",
        "base_url",
        "is_active",
        "instances_used",
        "memory_used",
        "last_seen_at",
        "short_error",
    ]
    list_filter = ["is_active"]
    search_fields = ["name", "base_url"]
    readonly_fields = ["last_seen_at", "last_error", "created_at"]

    def get_queryset(self, request):
        live = ~Q(instances__status__in=NOT_LIVE)
        return (
            super()
            .get_queryset(request)
            .annotate(
                live_count=Count("instances", filter=live),
                memory_allocated=Coalesce(Sum("instances__memory_mb", filter=live), 0),
            )
        )

    @admin.display(description="instances", ordering="live_count")
    def instances_used(self, obj):
        return f"{obj.live_count} / {obj.max_instances}"

    @admin.display(description="memory allocated", ordering="memory_allocated")
    def memory_used(self, obj):
        pct = round(100 * obj.memory_allocated / obj.memory_mb) if obj.memory_mb else 0
        return f"{obj.memory_allocated:,} / {obj.memory_mb:,} MB ({pct} %)"

    @admin.display(description="last error")
    def short_error(self, obj):
        return (obj.last_error or "")[:80]

    def get_urls(self):
        from fleet.admin import fleet_overview

        overview = self.admin_site.admin_view(
            lambda request: fleet_overview(request, admin_site=self.admin_site)
        )
        return [path("overview/", overview, name="fleet_overview"), *super().get_urls()]


# --- instances ---------------------------------------------------------------------------------

SIMPLE_ACTIONS = {
    # name: (label, how to call it, the success message)
    "restart": ("Restart", "instance_restart", "Restart queued"),
    "stop": ("Stop", "instance_stop", "Stop queued"),
    "start": ("Start", "instance_start", "Start queued"),
    "backup": ("Back up now", "backup_request", "Backup queued"),
    "prune": ("Prune sessions now", "prune_sessions", "Pruning queued"),
    "sync": ("Sync sessions now", "sync_instance_sessions", "Sessions synced"),
}
# Not a button of its own: the upgrade page chooses the version first.
ACTIONS = {**SIMPLE_ACTIONS, "upgrade": ("Upgrade", "instance_upgrade", "Upgrade queued")}
BUTTONS = ["restart", "stop", "start", "backup", "prune", "sync"]


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "organization_link",
        "status_badge",
        "health",
        "host",
        "plan",
        "openclaw_version",
        "mtd_cost",
        "last_good_backup",
    ]
    list_display_links = ["name"]
    list_filter = [
        "status",
        "health",
        "host",
        ("organization__subscription__plan", admin.RelatedFieldListFilter),
        VersionFilter,
        BackupOverdueFilter,
        CrashLoopingFilter,
    ]
    search_fields = [
        "name",
        "client_name",
        "external_id",
        "organization__name",
        "organization__slug",
        "organization__memberships__user__email",
    ]
    list_select_related = ["host", "organization", "organization__subscription__plan"]
    list_per_page = 50
    ordering = ["organization__name", "name"]
    exclude = SECRET_FIELDS
    readonly_fields = ["plan", "mtd_cost", "last_good_backup", "short_id"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "name",
                    "short_id",
                    "organization",
                    "client_name",
                    "external_id",
                    "plan",
                    "mtd_cost",
                    "last_good_backup",
                ]
            },
        ),
        (
            "State",
            {
                "fields": [
                    "desired_state",
                    "status",
                    "health",
                    "status_message",
                    "openclaw_version",
                    "previous_version",
                    "crash_count",
                    "crash_window_started_at",
                    "running_since",
                    "last_ready_at",
                    "last_seen_at",
                ]
            },
        ),
        ("Placement", {"fields": ["host", "host_port", "memory_mb", "cpus"]}),
        ("Model", {"fields": ["provider", "model_name", "model_base_url"]}),
        (
            "Sessions and support",
            {
                "fields": [
                    "session_idle_days",
                    "session_max_count",
                    "archive_before_prune",
                    "support_transcript_access",
                    "sessions_synced_at",
                ]
            },
        ),
        (
            "Lifecycle",
            {"fields": ["created_by", "created_at", "updated_at", "deleted_at", "purge_after"]},
        ),
    ]
    actions = [
        "restart_instances",
        "stop_instances",
        "start_instances",
        "upgrade_instances",
        "backup_instances",
        "prune_instances",
        "sync_instances",
        "restore_instance",
    ]
    change_form_template = "admin/instances/instance/change_form.html"

    # -- permissions: view-only data, operations through services --

    def has_add_permission(self, request):
        return False  # instances are deployed by instances.services.instance_deploy

    def has_change_permission(self, request, obj=None):
        return False  # no field is saved from a form; actions call services

    def has_delete_permission(self, request, obj=None):
        return False  # delete is an operation (instance_delete), not a row delete

    def has_operate_permission(self, request, obj=None):
        return request.user.has_perm(OPERATE_PERMISSION)

    def get_queryset(self, request):
        return with_fleet_annotations(super().get_queryset(request))

    # -- columns --

    @admin.display(description="organization", ordering="organization__name")
    def organization_link(self, obj):
        url = reverse("admin:accounts_organization_change", args=[obj.organization_id])
        return format_html('<a href="{}">{}</a>', url, obj.organization.name)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return format_html(
            '<span class="cf-status cf-status-{}">{}</span>', obj.status, obj.get_status_display()
        )

    @admin.display(description="plan", ordering="organization__subscription__plan__name")
    def plan(self, obj):
        plan = _plan_of(obj)
        return plan.name if plan else "—"

    @admin.display(description="cost this month", ordering="mtd_cost_usd")
    def mtd_cost(self, obj):
        return _money(getattr(obj, "mtd_cost_usd", 0))

    @admin.display(description="last good backup", ordering="last_good_backup_at")
    def last_good_backup(self, obj):
        when = getattr(obj, "last_good_backup_at", None)
        cutoff = timezone.now() - BACKUP_OVERDUE_AFTER
        overdue = (
            obj.status not in NOT_BACKED_UP
            and obj.created_at < cutoff
            and (when is None or when < cutoff)
        )
        label = timezone.localtime(when).strftime("%Y-%m-%d %H:%M") if when else "never"
        if overdue:
            return format_html('<span class="cf-overdue" title="over 26 h">⚠ {}</span>', label)
        return label

    @admin.display(description="id")
    def short_id(self, obj):
        return obj.short_id

    # -- the change page: buttons and the related tables --

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = extra_context or {}
        instance = self.get_object(request, object_id)
        if instance is not None:
            extra_context.update(self._related_context(request, instance))
        return super().change_view(request, object_id, form_url, extra_context)

    def _related_context(self, request, instance: Instance) -> dict:
        sessions = (
            Session.objects.filter(instance=instance)
            .order_by(F("last_activity_at").desc(nulls_last=True), "-id")
            .only(
                "id",
                "session_key",
                "channel",
                "agent_id",
                "model",
                "status",
                "last_activity_at",
                "message_count",
                "input_tokens",
                "output_tokens",
                "cache_read_tokens",
                "cache_write_tokens",
                "cost_usd",
            )[:RECENT_SESSIONS]
        )
        operations = Operation.objects.filter(instance=instance).select_related("requested_by")[
            :RECENT_OPERATIONS
        ]
        backups = Backup.objects.filter(instance=instance)[:RECENT_BACKUPS]
        events = InstanceEvent.objects.filter(instance=instance)[:RECENT_EVENTS]
        return {
            "can_operate": self.has_operate_permission(request),
            "can_read_transcripts": request.user.has_perm(TRANSCRIPT_PERMISSION),
            "simple_actions": [(k, SIMPLE_ACTIONS[k][0]) for k in BUTTONS],
            "recent_sessions": sessions,
            "recent_operations": operations,
            "recent_backups": backups,
            "recent_events": events,
            "session_total": Session.objects.filter(instance=instance).count(),
            "sessions_url": reverse("admin:sessions_mgmt_session_changelist")
            + f"?instance__id__exact={instance.pk}",
            "operations_url": reverse("admin:instances_operation_changelist")
            + f"?instance__id__exact={instance.pk}",
            "backups_url": reverse("admin:sessions_mgmt_backup_changelist")
            + f"?instance__id__exact={instance.pk}",
            "events_url": reverse("admin:instances_instanceevent_changelist")
            + f"?instance__id__exact={instance.pk}",
        }

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        wrap = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/run/<str:action>/",
                wrap(self.run_view),
                name="{}_{}_run".format(*info),
            ),
            path(
                "<path:object_id>/upgrade/",
                wrap(self.upgrade_view),
                name="{}_{}_upgrade".format(*info),
            ),
            path(
                "<path:object_id>/restore/",
                wrap(self.restore_view),
                name="{}_{}_restore".format(*info),
            ),
            *super().get_urls(),
        ]

    # -- calling the services --

    def _call(self, request, instance: Instance, action: str, **kwargs):
        """Call one service for one instance; errors become admin messages. Returns the result
        (an Operation, or the SyncResult of a sync) or None when it failed."""
        label, func_name, _ = ACTIONS[action]
        if func_name in ("backup_request", "prune_sessions", "sync_instance_sessions"):
            func = sessions_service(func_name)
        else:
            func = getattr(instance_services, func_name, None)
        if func is None:
            messages.error(request, f"{label} is not available yet ({func_name} is missing).")
            return None
        try:
            if func_name == "sync_instance_sessions":
                return func(instance=instance)
            if func_name == "backup_request":
                kwargs.setdefault("kind", Backup.Kind.MANUAL)
            return func(actor=admin_actor(request), instance=instance, **kwargs)
        except OperationInProgress as exc:
            messages.error(request, f"{instance.name}: {exc}")
        except ValidationError as exc:
            messages.error(request, f"{instance.name}: {' '.join(exc.messages)}")
        except PermissionDenied as exc:
            messages.error(request, f"{instance.name}: {exc}")
        except Exception as exc:  # noqa: BLE001 - e.g. the engine is unreachable during a sync
            log.warning("admin %s of %s failed: %s", action, instance.pk, type(exc).__name__)
            messages.error(request, f"{instance.name}: {label} failed ({type(exc).__name__}).")
        return None

    def _run_many(self, request, queryset, action: str, **kwargs) -> None:
        done = []
        for instance in queryset:
            result = self._call(request, instance, action, **kwargs)
            if result is None:
                continue
            if action == "sync":
                self._report_sync(request, instance, result)
            else:
                done.append(instance.name)
        if done:
            what = ACTIONS[action][2]
            if action == "upgrade":
                what = f"{what} to {kwargs['version']}"
            more = f" and {len(done) - 20} more" if len(done) > 20 else ""
            messages.success(request, f"{what} for {', '.join(done[:20])}{more}.")

    def _report_sync(self, request, instance, result) -> None:
        if getattr(result, "skipped", False):
            messages.warning(
                request, f"{instance.name}: not synced (only a running instance can be read)."
            )
            return
        counts = ", ".join(
            f"{getattr(result, k)} {k}"
            for k in ("created", "updated", "unchanged", "pruned")
            if hasattr(result, k)
        )
        messages.success(request, f"{instance.name}: sessions synced ({counts or 'done'}).")

    def _check_operate(self, request):
        if not self.has_operate_permission(request):
            raise PermissionDenied

    def _change_url(self, instance) -> str:
        return reverse("admin:instances_instance_change", args=[instance.pk])

    def run_view(self, request, object_id, action):
        """A change-page button: POST only, one instance, one service call."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        self._check_operate(request)
        if action not in SIMPLE_ACTIONS:
            raise PermissionDenied
        instance = get_object_or_404(Instance.objects.select_related("organization"), pk=object_id)
        self._run_many(request, [instance], action)
        return HttpResponseRedirect(self._change_url(instance))

    # -- changelist actions --

    @admin.action(description="Restart selected instances", permissions=["operate"])
    def restart_instances(self, request, queryset):
        self._run_many(request, queryset, "restart")

    @admin.action(description="Stop selected instances", permissions=["operate"])
    def stop_instances(self, request, queryset):
        self._run_many(request, queryset, "stop")

    @admin.action(description="Start selected instances", permissions=["operate"])
    def start_instances(self, request, queryset):
        self._run_many(request, queryset, "start")

    @admin.action(description="Back up selected instances now", permissions=["operate"])
    def backup_instances(self, request, queryset):
        self._run_many(request, queryset, "backup")

    @admin.action(description="Prune sessions of selected instances now", permissions=["operate"])
    def prune_instances(self, request, queryset):
        self._run_many(request, queryset, "prune")

    @admin.action(description="Sync sessions of selected instances now", permissions=["operate"])
    def sync_instances(self, request, queryset):
        """One instance: synced now (a few seconds), with the counts. Several: one sync task each
        (the task calls the same service), so the request does not wait for all of them."""
        instances = list(queryset)
        if len(instances) <= 1:
            self._run_many(request, instances, "sync")
            return
        from sessions_mgmt.tasks import sync_instance_sessions_task

        ids = [str(i.pk) for i in instances]
        transaction.on_commit(lambda: [sync_instance_sessions_task.delay(pk) for pk in ids])
        messages.success(request, f"Session sync queued for {len(ids)} instances.")

    @admin.action(description="Upgrade selected instances…", permissions=["operate"])
    def upgrade_instances(self, request, queryset):
        form = UpgradeForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            self._run_many(request, queryset, "upgrade", version=form.cleaned_data["version"])
            return None
        return self._upgrade_page(request, list(queryset), form, action_flow=True)

    @admin.action(description="Restore one instance from a backup…", permissions=["operate"])
    def restore_instance(self, request, queryset):
        instances = list(queryset[:2])
        if len(instances) != 1:
            messages.error(request, "Choose exactly one instance to restore.")
            return None
        instance = instances[0]
        form = RestoreForm(request.POST if "apply" in request.POST else None, instance=instance)
        if "apply" in request.POST and form.is_valid():
            self._restore(request, instance, form.cleaned_data["backup"])
            return None
        return self._restore_page(request, instance, form, action_flow=True)

    # -- intermediate pages, also reachable from the change page --

    def upgrade_view(self, request, object_id):
        self._check_operate(request)
        instance = get_object_or_404(Instance.objects.select_related("organization"), pk=object_id)
        form = UpgradeForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            self._run_many(request, [instance], "upgrade", version=form.cleaned_data["version"])
            return HttpResponseRedirect(self._change_url(instance))
        return self._upgrade_page(request, [instance], form, action_flow=False)

    def restore_view(self, request, object_id):
        self._check_operate(request)
        instance = get_object_or_404(Instance.objects.select_related("organization"), pk=object_id)
        initial = {}
        if request.GET.get("backup"):
            initial["backup"] = request.GET["backup"]
        form = RestoreForm(
            request.POST if request.method == "POST" else None, instance=instance, initial=initial
        )
        if request.method == "POST" and form.is_valid():
            self._restore(request, instance, form.cleaned_data["backup"])
            return HttpResponseRedirect(self._change_url(instance))
        return self._restore_page(request, instance, form, action_flow=False)

    def _restore(self, request, instance, backup) -> None:
        func = sessions_service("restore_request")
        if func is None:
            messages.error(request, "Restore is not available yet (restore_request is missing).")
            return
        try:
            func(actor=admin_actor(request), instance=instance, backup=backup)
        except (OperationInProgress, ValidationError, PermissionDenied) as exc:
            text = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
            messages.error(request, f"{instance.name}: {text}")
        else:
            messages.success(request, f"Restore of {instance.name} from the backup queued.")

    def _page_context(self, request, title, **extra):
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            **extra,
        }

    def _upgrade_page(self, request, instances, form, *, action_flow: bool):
        context = self._page_context(
            request,
            "Upgrade OpenClaw",
            instances=instances,
            form=form,
            action_flow=action_flow,
            action_name="upgrade_instances",
        )
        return TemplateResponse(request, "admin/instances/instance/upgrade.html", context)

    def _restore_page(self, request, instance, form, *, action_flow: bool):
        context = self._page_context(
            request,
            f"Restore {instance.name} from a backup",
            instance=instance,
            instances=[instance],
            form=form,
            action_flow=action_flow,
            action_name="restore_instance",
            has_backups=form.fields["backup"].queryset.exists(),
        )
        return TemplateResponse(request, "admin/instances/instance/restore.html", context)


# --- operations and events ----------------------------------------------------------------------


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by services and workers only: staff look, never edit."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def render_steps(steps) -> str:
    if not steps:
        return "—"
    return format_html(
        '<table class="cf-steps"><thead><tr><th>step</th><th>state</th><th>started</th>'
        "<th>finished</th><th>detail</th></tr></thead><tbody>{}</tbody></table>",
        format_html_join(
            "",
            '<tr><td>{}</td><td class="cf-step-{}">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    s.get("name", ""),
                    s.get("state", ""),
                    s.get("state", ""),
                    (s.get("started_at") or "")[:19],
                    (s.get("finished_at") or "")[:19],
                    s.get("detail", ""),
                )
                for s in steps
                if isinstance(s, dict)
            ),
        ),
    )


@admin.register(Operation)
class OperationAdmin(ReadOnlyAdmin):
    show_facets = admin.ShowFacets.NEVER  # a big table: no count per filter choice

    list_display = [
        "created_at",
        "kind",
        "state",
        "instance",
        "organization",
        "requested_by",
        "requested_via",
        "duration",
        "short_error",
    ]
    list_filter = ["state", "kind", "requested_via", "created_at"]
    search_fields = ["instance__name", "organization__name", "organization__slug", "error"]
    list_select_related = ["instance", "organization", "requested_by"]
    date_hierarchy = "created_at"
    fields = [
        "kind",
        "state",
        "instance",
        "organization",
        "params",
        "steps_table",
        "error",
        "error_detail",
        "requested_by",
        "requested_via",
        "task_id",
        "attempts",
        "created_at",
        "started_at",
        "finished_at",
    ]
    readonly_fields = ["steps_table"]

    @admin.display(description="duration")
    def duration(self, obj):
        seconds = obj.duration_seconds
        return f"{seconds:.1f} s" if seconds is not None else "—"

    @admin.display(description="error")
    def short_error(self, obj):
        return (obj.error or "")[:80]

    @admin.display(description="steps")
    def steps_table(self, obj):
        return render_steps(obj.steps)


@admin.register(InstanceEvent)
class InstanceEventAdmin(ReadOnlyAdmin):
    show_facets = admin.ShowFacets.NEVER  # a big table: no count per filter choice

    list_display = ["created_at", "kind", "instance", "organization", "message"]
    list_filter = ["kind", "created_at"]
    search_fields = ["message", "instance__name", "instance__organization__name"]
    list_select_related = ["instance", "instance__organization"]
    date_hierarchy = "created_at"

    @admin.display(description="organization", ordering="instance__organization__name")
    def organization(self, obj):
        return obj.instance.organization.name
