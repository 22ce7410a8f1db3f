"""Operations: the long actions (deploy, start, upgrade, backup, restore, ...) with their steps
and errors. Rows the services and workers write: view-only here."""

from __future__ import annotations

from django.contrib import admin

from ..models import Operation
from .common import ReadOnlyAdmin, render_steps


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
