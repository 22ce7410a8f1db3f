"""The instance admin: view-only rows, every change an action that calls a service.

Nothing here saves a business field. Every change is an admin action (or a button on the change
page) that calls the same service function as the dashboard and the API (instances.services);
a service's OperationInProgress or ValidationError becomes an admin error message, never a 500.
Apps above instances add their own columns, filters, actions, panels and views through
`instances.admin.extensions` (sessions_mgmt/admin.py adds sessions and backups).

Changelist query counts are flat (tests/admin/test_query_counts.py): month-to-date cost (and
what extensions annotate) are correlated subqueries in the one list query, relations are
select_related.
"""

from __future__ import annotations

import logging

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from .. import selectors
from .. import services as instance_services
from ..models import Instance, InstanceEvent, Operation
from ..operations import OperationInProgress
from . import extensions
from .common import OPERATE_PERMISSION, admin_actor, money
from .extensions import InstanceAction, InstancePanel

log = logging.getLogger(__name__)

SECRET_FIELDS = ("gateway_token", "provider_api_key", "channel_token")
RECENT_OPERATIONS = 20
RECENT_EVENTS = 50
MORE_NAMES = 20  # a success message names at most this many instances


# --- list filters ------------------------------------------------------------------------------


class CrashLoopingFilter(admin.SimpleListFilter):
    title = "crash-looping"
    parameter_name = "crash_looping"

    def lookups(self, request, model_admin):
        return (("yes", "Crash-looping"), ("no", "Not crash-looping"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return selectors.crash_looping(queryset)
        if self.value() == "no":
            return queryset.exclude(pk__in=selectors.crash_looping(queryset).values("pk"))
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


class UpgradeForm(forms.Form):
    version = forms.ChoiceField(label="OpenClaw version")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["version"].choices = [(v, v) for v in settings.FLEET_OPENCLAW_VERSIONS]


# --- the instance's own actions and panels ------------------------------------------------------

ACTIONS = [
    InstanceAction(
        "restart",
        "Restart",
        "Restart selected instances",
        instance_services.instance_restart,
        "Restart queued",
    ),
    InstanceAction(
        "stop", "Stop", "Stop selected instances", instance_services.instance_stop, "Stop queued"
    ),
    InstanceAction(
        "start",
        "Start",
        "Start selected instances",
        instance_services.instance_start,
        "Start queued",
    ),
]
# Not a button of its own: the upgrade page chooses the version first.
UPGRADE = InstanceAction(
    "upgrade",
    "Upgrade",
    "Upgrade selected instances…",
    instance_services.instance_upgrade,
    "Upgrade queued to {version}",
    button=False,
)


def _operations_panel(request, instance, model_admin) -> dict:
    return {
        "rows": Operation.objects.filter(instance=instance).select_related("requested_by")[
            :RECENT_OPERATIONS
        ],
        "all_url": reverse("admin:instances_operation_changelist")
        + f"?instance__id__exact={instance.pk}",
    }


def _events_panel(request, instance, model_admin) -> dict:
    return {
        "rows": InstanceEvent.objects.filter(instance=instance)[:RECENT_EVENTS],
        "all_url": reverse("admin:instances_instanceevent_changelist")
        + f"?instance__id__exact={instance.pk}",
    }


PANELS = [
    InstancePanel("admin/instances/instance/_operations.html", _operations_panel, order=20),
    InstancePanel("admin/instances/instance/_events.html", _events_panel, order=40),
]


def _changelist_action(action: InstanceAction):
    """A Django admin action (named "<name>_instances") running `action` on the selection."""

    def run(model_admin, request, queryset):
        model_admin.run_action(request, list(queryset), action)

    run.__name__ = f"{action.name}_instances"
    return admin.action(description=action.description, permissions=["operate"])(run)


# --- the admin ---------------------------------------------------------------------------------


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
    ]
    list_display_links = ["name"]
    list_filter = [
        "status",
        "health",
        "host",
        ("organization__subscription__plan", admin.RelatedFieldListFilter),
        VersionFilter,
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
    readonly_fields = ["plan", "mtd_cost", "short_id"]
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
    change_form_template = "admin/instances/instance/change_form.html"

    # -- what extensions add (read on every request: see extensions.py) --

    @property
    def actions(self):
        names = [_changelist_action(a) for a in ACTIONS] + ["upgrade_instances"]
        for extension in extensions.extensions():
            names += [_changelist_action(a) for a in extension.actions]
            names += list(extension.admin_actions)
        return names

    def instance_actions(self) -> dict[str, InstanceAction]:
        found = {a.name: a for a in [*ACTIONS, UPGRADE]}
        for extension in extensions.extensions():
            found.update({a.name: a for a in extension.actions})
        return found

    def __getattr__(self, name):
        # Extension displays are columns and fields by name, like this class's own methods.
        func = extensions.display(name)
        if func is None:
            raise AttributeError(name)
        return func

    def get_list_display(self, request):
        columns = list(super().get_list_display(request))
        for extension in extensions.extensions():
            columns += list(extension.list_display)
        return columns

    def get_list_filter(self, request):
        filters = list(super().get_list_filter(request))
        for extension in extensions.extensions():
            filters += list(extension.list_filter)
        return filters

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        for extension in extensions.extensions():
            fields += list(extension.detail_fields)
        return fields

    def get_fieldsets(self, request, obj=None):
        (title, first), *rest = super().get_fieldsets(request, obj)
        extra = [name for e in extensions.extensions() for name in e.detail_fields]
        return [(title, {**first, "fields": [*first["fields"], *extra]}), *rest]

    def get_queryset(self, request):
        qs = selectors.with_fleet_annotations(super().get_queryset(request))
        for extension in extensions.extensions():
            if extension.annotate is not None:
                qs = extension.annotate(qs)
        return qs

    # -- permissions: view-only data, operations through services --

    def has_add_permission(self, request):
        return False  # instances are deployed by instances.services.instance_deploy

    def has_change_permission(self, request, obj=None):
        return False  # no field is saved from a form; actions call services

    def has_delete_permission(self, request, obj=None):
        return False  # delete is an operation (instance_delete), not a row delete

    def has_operate_permission(self, request, obj=None):
        return request.user.has_perm(OPERATE_PERMISSION)

    def check_operate(self, request) -> None:
        if not self.has_operate_permission(request):
            raise PermissionDenied

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
        try:
            subscription = obj.organization.subscription
        except Exception:  # noqa: BLE001 - RelatedObjectDoesNotExist: no subscription yet
            return "—"
        return subscription.plan.name if subscription and subscription.plan else "—"

    @admin.display(description="cost this month", ordering="mtd_cost_usd")
    def mtd_cost(self, obj):
        return money(getattr(obj, "mtd_cost_usd", 0))

    @admin.display(description="id")
    def short_id(self, obj):
        return obj.short_id

    # -- the change page: buttons and the related tables --

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = extra_context or {}
        instance = self.get_object(request, object_id)
        if instance is not None:
            extra_context.update(self._change_page_context(request, instance))
        return super().change_view(request, object_id, form_url, extra_context)

    def _change_page_context(self, request, instance: Instance) -> dict:
        can_operate = self.has_operate_permission(request)
        panels = list(PANELS)
        links = [("Upgrade…", "admin:instances_instance_upgrade")]
        for extension in extensions.extensions():
            panels += list(extension.panels)
            links += list(extension.links)
        panels.sort(key=lambda p: p.order)
        return {
            "can_operate": can_operate,
            "simple_actions": [
                (a.name, a.label) for a in self.instance_actions().values() if a.button
            ],
            "tool_links": [(label, reverse(name, args=[instance.pk])) for label, name in links],
            "panels": [
                {"template": p.template, **p.context(request, instance, self)} for p in panels
            ],
        }

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        wrap = self.admin_site.admin_view
        extra = []
        for extension in extensions.extensions():
            if extension.urls is not None:
                extra += extension.urls(self)
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
            *extra,
            *super().get_urls(),
        ]

    # -- calling the services --

    def call(self, request, instance: Instance, action: InstanceAction, **kwargs):
        """Call one service for one instance; errors become admin messages. Returns the result
        (usually the Operation queued) or None when it failed."""
        try:
            return action.run(actor=admin_actor(request), instance=instance, **kwargs)
        except OperationInProgress as exc:
            messages.error(request, f"{instance.name}: {exc}")
        except ValidationError as exc:
            messages.error(request, f"{instance.name}: {' '.join(exc.messages)}")
        except PermissionDenied as exc:
            messages.error(request, f"{instance.name}: {exc}")
        except Exception as exc:  # noqa: BLE001 - e.g. the engine is unreachable during a sync
            log.warning("admin %s of %s failed: %s", action.name, instance.pk, type(exc).__name__)
            messages.error(
                request, f"{instance.name}: {action.label} failed ({type(exc).__name__})."
            )
        return None

    def run_action(self, request, instances, action: InstanceAction, **kwargs) -> None:
        if len(instances) > 1 and action.run_many and action.run_many(self, request, instances):
            return
        done = []
        for instance in instances:
            result = self.call(request, instance, action, **kwargs)
            if result is None:
                continue
            if action.report is not None:
                action.report(request, instance, result)
            else:
                done.append(instance.name)
        if done:
            more = f" and {len(done) - MORE_NAMES} more" if len(done) > MORE_NAMES else ""
            what = action.done.format(**kwargs)
            messages.success(request, f"{what} for {', '.join(done[:MORE_NAMES])}{more}.")

    def change_url(self, instance) -> str:
        return reverse("admin:instances_instance_change", args=[instance.pk])

    def operated_instance(self, request, object_id) -> Instance:
        """The instance of a change-page view that operates it (403 without the permission)."""
        self.check_operate(request)
        return get_object_or_404(Instance.objects.select_related("organization"), pk=object_id)

    def run_view(self, request, object_id, action):
        """A change-page button: POST only, one instance, one service call."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        self.check_operate(request)
        found = self.instance_actions().get(action)
        if found is None or not found.button:
            raise PermissionDenied
        instance = self.operated_instance(request, object_id)
        self.run_action(request, [instance], found)
        return HttpResponseRedirect(self.change_url(instance))

    # -- upgrade: a changelist action and a change-page view, both choosing the version --

    @admin.action(description="Upgrade selected instances…", permissions=["operate"])
    def upgrade_instances(self, request, queryset):
        form = UpgradeForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            self.run_action(request, list(queryset), UPGRADE, version=form.cleaned_data["version"])
            return None
        return self._upgrade_page(request, list(queryset), form, action_flow=True)

    def upgrade_view(self, request, object_id):
        instance = self.operated_instance(request, object_id)
        form = UpgradeForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            self.run_action(request, [instance], UPGRADE, version=form.cleaned_data["version"])
            return HttpResponseRedirect(self.change_url(instance))
        return self._upgrade_page(request, [instance], form, action_flow=False)

    def _upgrade_page(self, request, instances, form, *, action_flow: bool):
        return self.action_page(
            request,
            "admin/instances/instance/upgrade.html",
            "Upgrade OpenClaw",
            instances=instances,
            form=form,
            action_flow=action_flow,
            action_name="upgrade_instances",
        )

    def action_page(self, request, template: str, title: str, **extra) -> TemplateResponse:
        """An intermediate page of an action (the upgrade's version, a restore's backup), in
        the admin's layout; extensions use it for their own pages."""
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            **extra,
        }
        return TemplateResponse(request, template, context)
