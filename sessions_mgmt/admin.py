"""Staff admin for the session mirror and backups, the staff transcript view, and what sessions
add to the instance admin.

Sessions and backups are rows the sync and the backup operations write: view-only here.

The instance admin (instances/admin/) knows nothing of sessions: this module extends it through
its extension point (instances.admin.extend, at the end of this file) with the last good backup
column, the "backup overdue" filter (sessions_mgmt.selectors.needs_backup, the one rule the
nightly run and the freshness alert use too), the back up / prune / sync actions, the restore
action and page, and the sessions and backups tables of the change page.

Transcripts (docs/admin.md, "Staff roles"): /admin/sessions_mgmt/session/<id>/transcript/
- needs the permission "sessions_mgmt.view_transcript" (created by accounts/migrations/0002,
  given to the Support group): without it a 403, by link and by URL;
- when the customer has not allowed support access (Instance.support_transcript_access), the
  staff member states a reason first (a form; the reason is POSTed, never put in a URL);
- each page read goes through sessions_mgmt.services.transcript_for_staff, which audits every
  attempt with the staff member's client IP: "transcript.viewed_by_staff" with the reason, or
  "transcript.view_failed_by_staff" when the read fails (instance not running, the gateway not
  answering). Nothing here writes an audit row itself.
"""

from __future__ import annotations

import logging

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Exists, F, Max, OuterRef, Subquery
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from accounts.admin import OrganizationSlugFilter
from instances.admin import (
    InstanceAction,
    InstanceAdminExtension,
    InstancePanel,
    ReadOnlyAdmin,
    admin_actor,
    extend,
    render_steps,
)
from instances.models import Instance
from instances.operations import OperationInProgress

from . import backup_store, services
from .models import Backup, BackupProof, Session
from .selectors import needs_backup

log = logging.getLogger(__name__)

TRANSCRIPT_PERMISSION = "sessions_mgmt.view_transcript"
TRANSCRIPT_PAGE = 50
RECENT_SESSIONS = 50
RECENT_BACKUPS = 20


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
        actor = admin_actor(request)
        try:
            page, older = services.transcript_for_staff(
                staff_user=request.user,
                ip=actor.ip,
                instance=instance,
                session_key=session.session_key,
                reason=reason,
                before=before,
                limit=TRANSCRIPT_PAGE,
            )
        except PermissionDenied:
            raise
        except services.TranscriptUnavailable as exc:
            context["error"] = str(exc)
            return
        except Exception as exc:  # noqa: BLE001 - a gateway that does not answer in time
            log.info("staff transcript read of %s failed: %s", instance.pk, type(exc).__name__)
            context["error"] = f"The transcript could not be read ({type(exc).__name__})."
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
        "location",
        "restore_link",
    ]
    readonly_fields = ["progress_table", "restore_link", "location"]

    @admin.display(description="kept at")
    def location(self, obj):
        if not obj.storage_name:
            return "—"
        return backup_store.object_location(obj.storage_name)

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


@admin.register(BackupProof)
class BackupProofAdmin(ReadOnlyAdmin):
    """The nightly restore proofs; the title says the fleet's share proven in the last 7 days."""

    list_display = ["created_at", "instance", "organization", "backup_kind", "ok", "short_error"]
    list_filter = [OrganizationSlugFilter, "ok", "created_at"]
    search_fields = ["instance__name", "organization__slug", "error"]
    list_select_related = ["instance", "organization", "backup"]
    fields = ["instance", "organization", "backup", "ok", "checks", "error", "seconds"]
    fields += ["created_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).order_by(F("created_at").desc())

    @admin.display(description="backup")
    def backup_kind(self, obj):
        return obj.backup.get_kind_display() if obj.backup else "—"

    @admin.display(description="error")
    def short_error(self, obj):
        return obj.error[:120]

    def changelist_view(self, request, extra_context=None):
        from .services.proofs import proven_share

        proven, total = proven_share()
        share = f"{100 * proven / total:.0f}%" if total else "—"
        title = f"Backup proofs: {proven} of {total} instances proven in the last 7 days ({share})"
        return super().changelist_view(request, {**(extra_context or {}), "title": title})


# --- what sessions add to the instance admin ---------------------------------------------------


def with_backup_annotations(qs, *, now=None):
    """Annotate `last_good_backup_at` (the newest succeeded backup) and `backup_overdue` (the
    instance needs a backup now, by selectors.needs_backup): correlated subqueries, so a list of
    instances stays one query. Also used by the fleet overview (fleet/admin.py)."""
    last_backup = (
        Backup.objects.filter(instance=OuterRef("pk"), state=Backup.State.SUCCEEDED)
        .order_by()
        .values("instance")
        .annotate(newest=Max("finished_at"))
        .values("newest")
    )
    overdue = needs_backup(Instance.objects.filter(pk=OuterRef("pk")), now=now)
    proof = BackupProof.objects.filter(instance=OuterRef("pk")).order_by("-created_at")
    return qs.annotate(
        last_good_backup_at=Subquery(last_backup),
        backup_overdue=Exists(overdue),
        last_proof_at=Subquery(proof.values("created_at")[:1]),
        last_proof_ok=Subquery(proof.values("ok")[:1]),
    )


class BackupOverdueFilter(admin.SimpleListFilter):
    title = "backup overdue (26 h)"
    parameter_name = "backup_overdue"

    def lookups(self, request, model_admin):
        return (("yes", "Overdue"), ("no", "Backed up"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return needs_backup(queryset)
        if self.value() == "no":
            return queryset.exclude(pk__in=needs_backup(queryset).values("pk"))
        return queryset


@admin.display(description="last good backup", ordering="last_good_backup_at")
def last_good_backup(obj):
    when = getattr(obj, "last_good_backup_at", None)
    label = timezone.localtime(when).strftime("%Y-%m-%d %H:%M") if when else "never"
    if getattr(obj, "backup_overdue", False):
        return format_html('<span class="cf-overdue" title="over 26 h">⚠ {}</span>', label)
    return label


@admin.display(description="last restore proof", ordering="last_proof_at")
def last_proof(obj):
    when = getattr(obj, "last_proof_at", None)
    if when is None:
        return "never"
    label = timezone.localtime(when).strftime("%Y-%m-%d %H:%M")
    if not getattr(obj, "last_proof_ok", False):
        return format_html('<span class="cf-overdue">✗ failed {}</span>', label)
    return f"✓ {label}"


@admin.display(description="backups kept at")
def backups_kept_at(obj):
    return f"{backup_store.storage_description()}: " + backup_store.instance_location(
        obj.organization_id, obj.pk.hex
    )


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


def _restore(request, instance, backup) -> None:
    try:
        services.restore_request(actor=admin_actor(request), instance=instance, backup=backup)
    except (OperationInProgress, ValidationError, PermissionDenied) as exc:
        text = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        messages.error(request, f"{instance.name}: {text}")
    else:
        messages.success(request, f"Restore of {instance.name} from the backup queued.")


def _restore_page(model_admin, request, instance, form, *, action_flow: bool):
    return model_admin.action_page(
        request,
        "admin/sessions_mgmt/instance/restore.html",
        f"Restore {instance.name} from a backup",
        instance=instance,
        instances=[instance],
        form=form,
        action_flow=action_flow,
        action_name="restore_instance",
        has_backups=form.fields["backup"].queryset.exists(),
    )


@admin.action(description="Restore one instance from a backup…", permissions=["operate"])
def restore_instance(model_admin, request, queryset):
    instances = list(queryset[:2])
    if len(instances) != 1:
        messages.error(request, "Choose exactly one instance to restore.")
        return None
    instance = instances[0]
    form = RestoreForm(request.POST if "apply" in request.POST else None, instance=instance)
    if "apply" in request.POST and form.is_valid():
        _restore(request, instance, form.cleaned_data["backup"])
        return None
    return _restore_page(model_admin, request, instance, form, action_flow=True)


def _restore_urls(model_admin):
    def restore_view(request, object_id):
        instance = model_admin.operated_instance(request, object_id)
        initial = {"backup": request.GET["backup"]} if request.GET.get("backup") else {}
        data = request.POST if request.method == "POST" else None
        form = RestoreForm(data, instance=instance, initial=initial)
        if request.method == "POST" and form.is_valid():
            _restore(request, instance, form.cleaned_data["backup"])
            return HttpResponseRedirect(model_admin.change_url(instance))
        return _restore_page(model_admin, request, instance, form, action_flow=False)

    view = model_admin.admin_site.admin_view(restore_view)
    return [path("<path:object_id>/restore/", view, name="instances_instance_restore")]


def _report_sync(request, instance, result) -> None:
    if result.skipped:
        messages.warning(
            request, f"{instance.name}: not synced (only a running instance can be read)."
        )
        return
    counts = ", ".join(
        f"{getattr(result, k)} {k}" for k in ("created", "updated", "unchanged", "pruned")
    )
    messages.success(request, f"{instance.name}: sessions synced ({counts}).")


def _sync_many(model_admin, request, instances) -> bool:
    """Several instances: one sync task each (the task calls the same service), so the request
    does not wait for all of them."""
    from .tasks import sync_instance_sessions_task

    ids = [str(i.pk) for i in instances]
    transaction.on_commit(lambda: [sync_instance_sessions_task.delay(pk) for pk in ids])
    messages.success(request, f"Session sync queued for {len(ids)} instances.")
    return True


def _sessions_panel(request, instance, model_admin) -> dict:
    rows = (
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
    return {
        "rows": rows,
        "total": Session.objects.filter(instance=instance).count(),
        "can_read_transcripts": request.user.has_perm(TRANSCRIPT_PERMISSION),
        "all_url": reverse("admin:sessions_mgmt_session_changelist")
        + f"?instance__id__exact={instance.pk}",
    }


def _backups_panel(request, instance, model_admin) -> dict:
    return {
        "rows": Backup.objects.filter(instance=instance)[:RECENT_BACKUPS],
        "all_url": reverse("admin:sessions_mgmt_backup_changelist")
        + f"?instance__id__exact={instance.pk}",
    }


extend(
    InstanceAdminExtension(
        name="sessions",
        annotate=with_backup_annotations,
        displays={
            "last_good_backup": last_good_backup,
            "last_proof": last_proof,
            "backups_kept_at": backups_kept_at,
        },
        list_display=["last_good_backup", "last_proof"],
        detail_fields=["last_good_backup", "last_proof", "backups_kept_at"],
        list_filter=[BackupOverdueFilter],
        actions=[
            InstanceAction(
                "backup",
                "Back up now",
                "Back up selected instances now",
                lambda *, actor, instance: services.backup_request(
                    actor=actor, instance=instance, kind=Backup.Kind.MANUAL
                ),
                "Backup queued",
            ),
            InstanceAction(
                "prune",
                "Prune sessions now",
                "Prune sessions of selected instances now",
                services.prune_sessions,
                "Pruning queued",
            ),
            InstanceAction(
                "sync",
                "Sync sessions now",
                "Sync sessions of selected instances now",
                lambda *, actor, instance: services.sync_instance_sessions(instance=instance),
                "Sessions synced",
                report=_report_sync,
                run_many=_sync_many,
            ),
        ],
        admin_actions=[restore_instance],
        urls=_restore_urls,
        links=[("Restore…", "admin:instances_instance_restore")],
        panels=[
            InstancePanel("admin/sessions_mgmt/instance/_sessions.html", _sessions_panel, order=10),
            InstancePanel("admin/sessions_mgmt/instance/_backups.html", _backups_panel, order=30),
        ],
    )
)
