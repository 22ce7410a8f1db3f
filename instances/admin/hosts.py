"""Hosts: the Docker engines and swarms we place instances on, their capacity and (a swarm's)
nodes.

Hosts are configuration staff edit here; the form's values are written by
instances.services.host_create / host_update / host_delete, which audit every change
("host.created", "host.updated" with each field's old and new value, "host.deleted").
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.utils.html import format_html, format_html_join

from .. import selectors, services
from ..models import Host
from ..runtime import RuntimeErrorBase, runtime_for
from .common import admin_actor


class HostForm(forms.ModelForm):
    class Meta:
        model = Host
        fields = list(services.HOST_FIELDS)

    def clean(self):
        cleaned = super().clean()
        problem = services.host_port_range_problem(
            cleaned.get("port_range_start"), cleaned.get("port_range_end")
        )
        if problem:
            self.add_error("port_range_end", problem)
        return cleaned


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    form = HostForm
    list_display = [
        "name",
        "kind",
        "base_url",
        "is_active",
        "instances_used",
        "memory_used",
        "last_seen_at",
        "short_error",
    ]
    list_filter = ["is_active", "kind"]
    actions = ["sync_swarm_nodes"]
    search_fields = ["name", "base_url"]
    readonly_fields = ["last_seen_at", "last_error", "created_at", "swarm_nodes"]
    fields = [*services.HOST_FIELDS, *readonly_fields]

    def get_queryset(self, request):
        return selectors.hosts_with_usage(super().get_queryset(request))

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # one at a time, through host_delete
        return actions

    @admin.display(description="instances", ordering="live_count")
    def instances_used(self, obj):
        return f"{obj.live_count} / {obj.max_instances}"

    @admin.display(description="memory allocated", ordering="memory_allocated")
    def memory_used(self, obj):
        pct = round(100 * obj.memory_allocated / obj.memory_mb) if obj.memory_mb else 0
        return f"{obj.memory_allocated:,} / {obj.memory_mb:,} MB ({pct} %)"

    @admin.display(description="nodes")
    def swarm_nodes(self, obj):
        """A swarm's nodes as Swarm last reported them ("Sync swarm nodes" refreshes them)."""
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} MB</td><td>{}</td>"
            "<td>{}</td></tr>",
            (
                (
                    n.hostname,
                    n.role,
                    n.address,
                    n.engine_url,
                    f"{n.memory_mb:,}",
                    n.availability,
                    n.state,
                )
                for n in obj.nodes.all()
            ),
        )
        if not rows:
            return "-"
        return format_html(
            "<table><tr><th>hostname</th><th>role</th><th>address</th><th>engine</th>"
            "<th>memory</th><th>availability</th><th>state</th></tr>{}</table>",
            rows,
        )

    @admin.display(description="last error")
    def short_error(self, obj):
        return (obj.last_error or "")[:80]

    # -- writes go through the services --

    @admin.action(description="Sync swarm nodes")
    def sync_swarm_nodes(self, request, queryset):
        for host in queryset.filter(kind=Host.Kind.SWARM):
            try:
                rows = services.host_nodes_sync(host=host, nodes=runtime_for(host).nodes())
            except RuntimeErrorBase as exc:
                messages.error(request, f"{host.name}: {exc}")
                continue
            messages.success(request, f"{host.name}: {len(rows)} node(s)")

    def save_model(self, request, obj, form, change):
        values = {name: form.cleaned_data[name] for name in services.HOST_FIELDS}
        if change:
            services.host_update(actor=admin_actor(request), host=obj, **values)
        else:
            created = services.host_create(actor=admin_actor(request), **values)
            obj.pk = created.pk  # the admin's redirect and message name the new row

    def delete_model(self, request, obj):
        try:
            services.host_delete(actor=admin_actor(request), host=obj)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))

    def delete_queryset(self, request, queryset):
        for host in queryset:
            self.delete_model(request, host)
