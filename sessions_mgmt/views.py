"""Dashboard views for sessions, transcripts and backups. Thin: scope by the current
membership's organization (another organization's object is a 404), then call a service."""

from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import roles
from accounts.services import Actor
from accounts.views import current_membership
from instances.models import Instance
from instances.operations import OperationError, OperationInProgress

from . import selectors, services
from .forms import RestoreForm, RetentionForm, SessionFilterForm
from .models import Backup, Session
from .services import quotas

log = logging.getLogger(__name__)
PAGE_SIZE = 50


def get_instance_for_user(request, pk, permission: str = roles.VIEW):
    membership = current_membership(request, permission)
    try:
        instance = Instance.objects.select_related("host", "organization").get(
            organization=membership.organization, pk=pk
        )
    except Instance.DoesNotExist:
        raise Http404("No such instance")
    return membership, instance


def get_session_for_user(request, pk, permission: str = roles.VIEW):
    membership = current_membership(request, permission)
    try:
        session = selectors.session_for(organization=membership.organization, pk=pk)
    except Session.DoesNotExist:
        raise Http404("No such session")
    return membership, session


@login_required
@require_GET
def session_list(request):
    membership = current_membership(request)
    org = membership.organization
    instances = list(Instance.objects.filter(organization=org).order_by("name"))
    form = SessionFilterForm(
        request.GET or None,
        instances=instances,
        channels=selectors.channels_for(organization=org),
    )
    filters = form.cleaned_data if form.is_bound and form.is_valid() else {}
    instance = next((i for i in instances if str(i.pk) == filters.get("instance")), None)
    qs = selectors.sessions_for(
        organization=org,
        instance=instance,
        q=filters.get("q", ""),
        channel=filters.get("channel", ""),
        status=filters.get("status", ""),
        start=filters.get("start"),
        end=filters.get("end"),
        sort=filters.get("sort") or "recent",
    )
    page = Paginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "form": form,
        "page": page,
        "sessions": page.object_list,
        "query": query.urlencode(),
        "has_instances": bool(instances),
    }
    return render(request, "sessions_mgmt/list.html", context)


@login_required
@require_GET
def session_detail(request, pk):
    membership, session = get_session_for_user(request, pk)
    context = {
        "session": session,
        "instance": session.instance,
        "can_read": roles.role_allows(membership.role, roles.VIEW_TRANSCRIPTS),
    }
    return render(request, "sessions_mgmt/detail.html", context)


@login_required
@require_GET
def transcript(request, pk):
    """One page of a transcript (htmx partial): newest page first, "load older" pages back."""
    membership, session = get_session_for_user(request, pk, roles.VIEW_TRANSCRIPTS)
    error = ""
    messages_, older = [], None
    try:
        messages_, older = services.transcript_for_member(
            membership=membership,
            instance=session.instance,
            session_key=session.session_key,
            before=request.GET.get("before"),
            limit=PAGE_SIZE,
        )
    except services.TranscriptUnavailable as exc:
        error = str(exc)
    except Session.DoesNotExist:
        raise Http404("No such session")
    except Exception as exc:  # noqa: BLE001 - an instance that misbehaves is a message, not a 500
        log.warning("transcript of session %s unavailable: %s", session.pk, type(exc).__name__)
        error = "The transcript could not be loaded from the instance. Try again in a minute."
    return render(
        request,
        "sessions_mgmt/_transcript_page.html",
        {"session": session, "messages_page": messages_, "older": older, "error": error},
    )


@login_required
@require_GET
def backup_list(request, pk):
    membership, instance = get_instance_for_user(request, pk)
    backups = selectors.backups_for(organization=membership.organization, instance=instance)
    page = Paginator(backups, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "instance": instance,
        "page": page,
        "backups": page.object_list,
        "can_operate": roles.role_allows(membership.role, roles.OPERATE),
        "storage": quotas.storage(instance),
    }
    return render(request, "sessions_mgmt/backups.html", context)


def _operation_redirect(instance, op):
    try:
        return redirect(reverse("instances:operation", args=[instance.pk, op.pk]))
    except Exception:  # noqa: BLE001 - the instances pages may not be wired yet
        return redirect("sessions_mgmt:backups", pk=instance.pk)


@login_required
@require_POST
def backup_now(request, pk):
    _membership, instance = get_instance_for_user(request, pk, roles.OPERATE)
    try:
        op = services.backup_request(actor=Actor.from_request(request), instance=instance)
    except (OperationInProgress, ValidationError) as exc:
        messages.error(request, _message(exc))
        return redirect("sessions_mgmt:backups", pk=instance.pk)
    messages.success(request, "Backup started.")
    return _operation_redirect(instance, op)


@login_required
@require_http_methods(["GET", "POST"])
def restore(request, pk, backup_id):
    membership, instance = get_instance_for_user(request, pk, roles.OPERATE)
    try:
        backup = selectors.backup_for(
            organization=membership.organization, instance=instance, pk=backup_id
        )
    except (Backup.DoesNotExist, ValidationError):
        raise Http404("No such backup")
    form = RestoreForm(request.POST or None, instance=instance)
    if request.method == "POST" and form.is_valid():
        try:
            op = services.restore_request(
                actor=Actor.from_request(request), instance=instance, backup=backup
            )
        except (OperationInProgress, ValidationError) as exc:
            form.add_error(None, _message(exc))
        else:
            messages.success(request, "Restore started.")
            return _operation_redirect(instance, op)
    return render(
        request,
        "sessions_mgmt/restore.html",
        {"instance": instance, "backup": backup, "form": form},
        status=400 if request.method == "POST" else 200,
    )


@login_required
@require_http_methods(["GET", "POST"])
def retention(request, pk):
    permission = roles.OPERATE if request.method == "POST" else roles.VIEW
    membership, instance = get_instance_for_user(request, pk, permission)
    initial = {
        "session_idle_days": instance.session_idle_days,
        "session_max_count": instance.session_max_count,
        "archive_before_prune": instance.archive_before_prune,
        "support_transcript_access": instance.support_transcript_access,
    }
    form = RetentionForm(request.POST or None, initial=initial)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            from instances.services import instance_update

            try:
                instance_update(
                    actor=Actor.from_request(request), instance=instance, **form.cleaned_data
                )
            except ValidationError as exc:
                _apply_errors(form, exc)
            else:
                messages.success(request, "Retention settings saved.")
                return redirect("sessions_mgmt:retention", pk=instance.pk)
        status = 400
    context = {
        "instance": instance,
        "form": form,
        "preview_count": len(services.prune_preview(instance=instance)),
        "can_operate": roles.role_allows(membership.role, roles.OPERATE),
    }
    return render(request, "sessions_mgmt/retention.html", context, status=status)


@login_required
@require_POST
def prune(request, pk):
    _membership, instance = get_instance_for_user(request, pk, roles.OPERATE)
    try:
        op = services.prune_sessions(actor=Actor.from_request(request), instance=instance)
    except (OperationInProgress, ValidationError, OperationError) as exc:
        messages.error(request, _message(exc))
        return redirect("sessions_mgmt:retention", pk=instance.pk)
    messages.success(request, "Pruning started.")
    return _operation_redirect(instance, op)


def _message(exc) -> str:
    if isinstance(exc, ValidationError):
        return " ".join(exc.messages)
    return getattr(exc, "public", None) or str(exc)


def _apply_errors(form, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for field, errors in exc.error_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc)


__all__ = ["PermissionDenied"]
