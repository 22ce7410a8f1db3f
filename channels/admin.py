"""Staff admin for channels: rows the services write, view-only; the actions call the same
services and tasks as the dashboard and the API (a staff member acts as themselves, audited)."""

from __future__ import annotations

from django.contrib import admin, messages

from accounts.admin import ReadOnlyAdmin
from instances.admin import admin_actor
from instances.admin.common import OPERATE_PERMISSION
from instances.openclaw.client import OpenClawError

from . import services, tasks
from .models import Channel


@admin.register(Channel)
class ChannelAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "instance", "organization", "kind", "status", "last_checked_at")
    list_filter = ("kind", "status", "dm_policy")
    search_fields = ("bot_name", "instance__name", "organization__slug")
    readonly_fields = ("last_error",)
    exclude = ("secret", "secret_extra")
    actions = ["check_health", "remove_channels"]

    def has_operate_permission(self, request, obj=None):
        return request.user.has_perm(OPERATE_PERMISSION)

    @admin.action(description="Read health from OpenClaw now", permissions=["operate"])
    def check_health(self, request, queryset):
        for instance_id in set(queryset.values_list("instance_id", flat=True)):
            try:
                tasks.check_channels_of(instance_id)
            except OpenClawError as exc:
                messages.error(request, f"Instance {instance_id}: {exc}")
        messages.info(request, "Health read.")

    @admin.action(description="Remove these channels (config and secrets)", permissions=["operate"])
    def remove_channels(self, request, queryset):
        actor = admin_actor(request)
        for channel in queryset.select_related("organization", "instance"):
            services.channel_remove(actor=actor, channel=channel)
        messages.info(request, "Removal queued.")
