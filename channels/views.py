"""Dashboard pages of an instance's channels: connect, change the policy, remove, and decide
the DM pairing requests OpenClaw holds. Thin: scoped by the current membership (another
organization's instance or channel is a 404), one service call per action."""

from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts import roles
from accounts.forms import apply_service_errors
from accounts.services import Actor
from accounts.views import current_membership
from instances.gateway_calls import GatewayBusy
from instances.models import Instance
from instances.openclaw.client import OpenClawError

from . import selectors, services
from .forms import ConnectForm, PolicyForm
from .models import Channel

log = logging.getLogger(__name__)


def get_instance_for_user(request, pk, permission: str = roles.VIEW):
    membership = current_membership(request, permission)
    try:
        instance = Instance.objects.select_related("host", "organization").get(
            organization=membership.organization, pk=pk
        )
    except Instance.DoesNotExist:
        raise Http404("No such instance")
    return membership, instance


def get_channel_for_user(request, pk, channel_pk, permission: str = roles.OPERATE):
    membership, instance = get_instance_for_user(request, pk, permission)
    try:
        channel = selectors.channel_for(
            organization=membership.organization, instance=instance, pk=channel_pk
        )
    except Channel.DoesNotExist:
        raise Http404("No such channel")
    return membership, instance, channel


def _pairing(channel: Channel) -> tuple[list, str]:
    if channel.instance.status != "running" or channel.status == Channel.Status.REMOVING:
        return [], ""
    if channel.dm_policy != Channel.DmPolicy.PAIRING:
        return [], ""
    try:
        return services.pairing_list(channel), ""
    except GatewayBusy:
        return [], "The instance is busy; reload in a moment to see pairing requests."
    except OpenClawError:
        return [], "The instance did not answer; pairing requests are not shown."


@login_required
@require_http_methods(["GET", "POST"])
def channel_list(request, pk):
    permission = roles.OPERATE if request.method == "POST" else roles.VIEW
    membership, instance = get_instance_for_user(request, pk, permission)
    can_operate = roles.role_allows(membership.role, roles.OPERATE)
    form = ConnectForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                channel = services.channel_connect(
                    actor=Actor.from_request(request),
                    instance=instance,
                    kind=data["kind"],
                    token=data["token"],
                    extra_token=data.get("app_token", ""),
                    dm_policy=data["dm_policy"],
                    allow_from=data.get("allow_from", ""),
                )
            except ValidationError as exc:
                apply_service_errors(form, exc)
            else:
                messages.success(
                    request,
                    f"{channel} connected; OpenClaw applies it without a restart. Its health "
                    "shows here in a few seconds.",
                )
                return redirect("channels:list", pk=instance.pk)
        status = 400
    channels = list(selectors.channels_for(organization=membership.organization, instance=instance))
    rows = []
    for channel in channels:
        pairing, pairing_note = _pairing(channel) if can_operate else ([], "")
        policy = PolicyForm(
            initial={"dm_policy": channel.dm_policy, "allow_from": " ".join(channel.allow_from)},
            prefix=str(channel.pk)[:8],
        )
        rows.append(
            {"channel": channel, "pairing": pairing, "pairing_note": pairing_note, "policy": policy}
        )
    context = {"instance": instance, "rows": rows, "form": form, "can_operate": can_operate}
    return render(request, "channels/list.html", context, status=status)


@login_required
@require_POST
def channel_policy(request, pk, channel_pk):
    _, instance, channel = get_channel_for_user(request, pk, channel_pk)
    form = PolicyForm(request.POST, prefix=str(channel.pk)[:8])
    if not form.is_valid():
        messages.error(request, "Choose who may talk to the bot.")
        return redirect("channels:list", pk=instance.pk)
    try:
        services.channel_update(
            actor=Actor.from_request(request),
            channel=channel,
            dm_policy=form.cleaned_data["dm_policy"],
            allow_from=form.cleaned_data.get("allow_from", ""),
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"{channel}: policy saved.")
    return redirect("channels:list", pk=instance.pk)


@login_required
@require_POST
def channel_remove(request, pk, channel_pk):
    _, instance, channel = get_channel_for_user(request, pk, channel_pk)
    services.channel_remove(actor=Actor.from_request(request), channel=channel)
    messages.success(request, f"{channel} is being removed: its token leaves the instance.")
    return redirect("channels:list", pk=instance.pk)


@login_required
@require_POST
def pairing_decide(request, pk, channel_pk, decision: str):
    if decision not in ("approve", "reject"):
        raise Http404("No such decision")
    _, instance, channel = get_channel_for_user(request, pk, channel_pk)
    decide = services.pairing_approve if decision == "approve" else services.pairing_reject
    try:
        decide(
            actor=Actor.from_request(request),
            channel=channel,
            request_id=request.POST.get("request_id", ""),
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    except (GatewayBusy, OpenClawError):
        messages.error(request, "The instance did not answer; try again in a moment.")
    except PermissionDenied:
        raise
    else:
        done = "approved: they can talk to the bot now" if decision == "approve" else "rejected"
        messages.success(request, f"Request {done}.")
    return redirect("channels:list", pk=instance.pk)
