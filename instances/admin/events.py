"""Instance events: every status transition (instances.state) and every correction the
reconcile loop made. Rows the services and workers write: view-only here."""

from __future__ import annotations

from django.contrib import admin

from ..models import InstanceEvent
from .common import ReadOnlyAdmin


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
