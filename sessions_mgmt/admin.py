"""Staff admin for the session mirror and backups, and the staff transcript view.

Sessions and backups are rows the sync and the backup operations write: view-only here. Restore
is an action on the instance (instances/admin.py); a succeeded backup links to it.

Transcripts (docs/admin.md, "Staff roles"): /admin/sessions_mgmt/session/<id>/transcript/
- needs the permission "sessions_mgmt.view_transcript" (created by accounts/migrations/0002,
  given to the Support group): without it a 403, by link and by URL;
- when the customer has not allowed support access (Instance.support_transcript_access), the
  staff member states a reason first (a form; the reason is POSTed, never put in a URL);
- each page read goes through sessions_mgmt.services.transcript_for_staff, which audits it
  ("transcript.viewed_by_staff" with the reason). When the read fails (instance not running, the
  gateway not answering) the attempt is audited here as "transcript.view_failed_by_staff", so
  every attempt leaves one audit row either way.
"""

from __future__ import annotations

import logging

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import F
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from accounts.admin import OrganizationSlugFilter
from accounts.services import Actor, audit
from instances.admin import TRANSCRIPT_PERMISSION, ReadOnlyAdmin, render_steps, sessions_service

from .models import Backup, Session

log = logging.getLogger(__name__)

TRANSCRIPT_PAGE = 50


class TranscriptReasonForm(forms.Form):
    reason = forms.CharField(
        label="Why do you need to read this conversation?",
        help_text="Recorded in the audit log with your name; the customer can see it. "
        "Cite the support ticket.",
        min_length=8,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
    )


@admin.register(Session)
class SessionAdmin(ReadOnlyAdmin):
    show_facets = admin.ShowFacets.NEVER  # a big table: no count per filter choice

    list_display = [
        "short_key",
        "instance_link",
        "organization",
        "channel",
        "model",
        "status",
        "last_activity_at",
        "message_count",
        "tokens",
        "cost",
    ]
    list_filter = [OrganizationSlugFilter, "status", "channel", "last_activity_at"]
    search_fields = [
        "session_key",
        "instance__name",
        "organization__name",
        "organization__slug",
    ]
    list_select_related = ["instance", "organization"]
    list_per_page = 100
    show_full_result_count = False  # a COUNT(*) over every session is not worth its time
    fields = [
        "session_key",
        "session_id",
        "instance",
        "organization",
        "agent_id",
        "channel",
        "model",
        "status",
        "started_at",
        "last_activity_at",
        "message_count",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "cost_usd",
        "openclaw_cost_usd",
        "first_seen_at",
        "synced_at",
        "pruned_at",
        "transcript_access",
    ]
    readonly_fields = ["transcript_access"]
    change_form_template = "admin/sessions_mgmt/session/change_form.html"

    def get_list_display(self, request):
        columns = list(super().get_list_display(request))
        if request.user.has_perm(TRANSCRIPT_PERMISSION):
            columns.append("transcript_link")
        return columns

    @admin.display(description="session", ordering="session_key")
    def short_key(self, obj):
        return obj.session_key if len(obj.session_key) <= 48 else obj.session_key[:47] + "…"

    @admin.display(description="instance", ordering="instance__name")
    def instance_link(self, obj):
        url = reverse("admin:instances_instance_change", args=[obj.instance_id])
        return format_html('<a href="{}">{}</a>', url, obj.instance.name)

    @admin.display(description="tokens")
    def tokens(self, obj):
        return f"{obj.total_tokens:,}"

    @admin.display(description="cost (USD)", ordering="cost_usd")
    def cost(self, obj):
        return f"{obj.cost_usd:.4f}"

    @admin.display(description="transcript")
    def transcript_link(self, obj):
        url = reverse("admin:sessions_mgmt_session_transcript", args=[obj.pk])
        return format_html('<a href="{}">open…</a>', url)

    @admin.display(description="customer allows support to read transcripts")
    def transcript_access(self, obj):
        return "yes" if obj.instance.support_transcript_access else "no (a reason is required)"

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_read_transcripts": request.user.has_perm(TRANSCRIPT_PERMISSION),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        return [
            path(
                "<path:object_id>/transcript/",
                self.admin_site.admin_view(self.transcript_view),
                name="sessions_mgmt_session_transcript",
            ),
            *super().get_urls(),
        ]

    # -- the staff transcript view --

    def transcript_view(self, request, object_id):
        if not request.user.has_perm(TRANSCRIPT_PERMISSION):
            raise PermissionDenied("You may not read customers' transcripts.")
        session = get_object_or_404(
            Session.objects.select_related("instance", "instance__organization"), pk=object_id
        )
        instance = session.instance
        granted = instance.support_transcript_access
        data = request.POST if request.method == "POST" else None
        form = TranscriptReasonForm(data)
        before = (request.POST or request.GET).get("before") or None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Transcript of {session.session_key}",
            "session": session,
            "instance": instance,
            "granted": granted,
            "form": form,
            "reason": "",
            "messages_page": None,
            "older": None,
            "error": "",
        }
        if granted:
            reason = form.cleaned_data["reason"] if data and form.is_valid() else ""
        elif data and form.is_valid():
            reason = form.cleaned_data["reason"]
        else:
            # No customer grant and no (valid) reason yet: ask for one; nothing is read.
            return TemplateResponse(request, "admin/sessions_mgmt/session/transcript.html", context)
        context["reason"] = reason
        self._read(request, context, session, reason, before)
        response = TemplateResponse(request, "admin/sessions_mgmt/session/transcript.html", context)
        response["Cache-Control"] = "no-store"
        return response

    def _read(self, request, context, session, reason, before) -> None:
        instance = session.instance
        read = sessions_service("transcript_for_staff")
        try:
            if read is None:
                raise RuntimeError("transcript_for_staff is not available")
            page, older = read(
                staff_user=request.user,
                instance=instance,
                session_key=session.session_key,
                reason=reason,
                before=before,
                limit=TRANSCRIPT_PAGE,
            )
        except PermissionDenied:
            raise
        except Exception as exc:  # noqa: BLE001 - a stopped instance, a gateway that does not answer
            log.info("staff transcript read of %s failed: %s", instance.pk, type(exc).__name__)
            context["error"] = (
                str(exc)
                if type(exc).__name__ == "TranscriptUnavailable"
                else f"The transcript could not be read ({type(exc).__name__})."
            )
            audit(
                actor=Actor(user=request.user, ip=request.META.get("REMOTE_ADDR"), via="admin"),
                action="transcript.view_failed_by_staff",
                organization=instance.organization,
                target=instance,
                data={
                    "session_key": session.session_key,
                    "reason": reason[:500],
                    "customer_allowed": instance.support_transcript_access,
                    "error": type(exc).__name__,
                },
            )
            return
        context["messages_page"] = page
        context["older"] = older


@admin.register(Backup)
class BackupAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "instance",
        "organization",
        "kind",
        "state",
        "size",
        "session_count",
        "openclaw_version",
        "verified_at",
        "finished_at",
    ]
    list_filter = [OrganizationSlugFilter, "state", "kind", "created_at"]
    search_fields = ["instance__name", "organization__name", "organization__slug", "sha256"]
    list_select_related = ["instance", "organization"]
    date_hierarchy = "created_at"
    fields = [
        "instance",
        "organization",
        "kind",
        "state",
        "nightly_date",
        "storage_name",
        "size_bytes",
        "sha256",
        "session_count",
        "openclaw_version",
        "verified_at",
        "error",
        "progress_table",
        "manifest",
        "operation",
        "created_at",
        "finished_at",
        "restore_link",
    ]
    readonly_fields = ["progress_table", "restore_link"]

    def get_queryset(self, request):
        return super().get_queryset(request).order_by(F("created_at").desc())

    @admin.display(description="size", ordering="size_bytes")
    def size(self, obj):
        return filesizeformat(obj.size_bytes)

    @admin.display(description="progress")
    def progress_table(self, obj):
        return render_steps(obj.progress)

    @admin.display(description="restore")
    def restore_link(self, obj):
        if obj.state != Backup.State.SUCCEEDED:
            return "Only a succeeded backup can be restored."
        url = reverse("admin:instances_instance_restore", args=[obj.instance_id])
        return format_html(
            '<a href="{}?backup={}">Restore {} from this backup…</a>', url, obj.pk, obj.instance
        )
