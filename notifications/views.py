"""Dashboard pages: webhook endpoints (the secret shown once), their deliveries and attempts,
redelivery by hand, and each person's email preferences. Thin: services do the writes."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accounts import roles
from accounts.forms import apply_service_errors
from accounts.services import Actor
from accounts.views import current_membership

from . import services
from .forms import PreferencesForm, WebhookEndpointForm
from .models import EmailOptOut, WebhookDelivery, WebhookEndpoint


def get_endpoint_for_user(request, endpoint_id) -> WebhookEndpoint:
    membership = current_membership(request, roles.MANAGE_TOKENS)
    return get_object_or_404(WebhookEndpoint, pk=endpoint_id, organization=membership.organization)


@login_required
def webhooks(request):
    membership = current_membership(request, roles.MANAGE_TOKENS)
    org = membership.organization
    form = WebhookEndpointForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            endpoint, secret = services.endpoint_create(
                actor=Actor.from_request(request), organization=org, **form.cleaned_data
            )
        except ValidationError as exc:
            apply_service_errors(form, exc)
        else:
            # The secret is shown on this response only (never stored in clear, never again).
            return render(
                request,
                "notifications/webhook_detail.html",
                _detail_context(endpoint, secret=secret),
                status=201,
            )
    endpoints = WebhookEndpoint.objects.filter(organization=org).order_by("created_at")
    return render(request, "notifications/webhooks.html", {"form": form, "endpoints": endpoints})


def _detail_context(endpoint, secret=None) -> dict:
    deliveries = (
        WebhookDelivery.objects.filter(endpoint=endpoint)
        .prefetch_related("attempts")
        .order_by("-created_at")[:50]
    )
    return {"endpoint": endpoint, "deliveries": deliveries, "secret": secret}


@login_required
def webhook_detail(request, endpoint_id):
    endpoint = get_endpoint_for_user(request, endpoint_id)
    return render(request, "notifications/webhook_detail.html", _detail_context(endpoint))


@login_required
@require_POST
def webhook_toggle(request, endpoint_id):
    endpoint = get_endpoint_for_user(request, endpoint_id)
    services.endpoint_update(
        actor=Actor.from_request(request), endpoint=endpoint, is_active=not endpoint.is_active
    )
    messages.success(request, "Endpoint enabled." if not endpoint.is_active else "Disabled.")
    return redirect("notifications:webhook_detail", endpoint_id=endpoint.pk)


@login_required
@require_POST
def webhook_delete(request, endpoint_id):
    endpoint = get_endpoint_for_user(request, endpoint_id)
    services.endpoint_delete(actor=Actor.from_request(request), endpoint=endpoint)
    messages.success(request, "Endpoint deleted.")
    return redirect("notifications:webhooks")


@login_required
@require_POST
def redeliver(request, endpoint_id, delivery_id):
    endpoint = get_endpoint_for_user(request, endpoint_id)
    delivery = get_object_or_404(WebhookDelivery, pk=delivery_id, endpoint=endpoint)
    try:
        services.delivery_redeliver(actor=Actor.from_request(request), delivery=delivery)
    except services.Conflict as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Queued again, with the same delivery id.")
    return redirect("notifications:webhook_detail", endpoint_id=endpoint.pk)


@login_required
def preferences(request):
    membership = current_membership(request)
    org, user = membership.organization, request.user
    opted_out = set(
        EmailOptOut.objects.filter(user=user, organization=org).values_list("kind", flat=True)
    )
    form = PreferencesForm(request.POST or None, opted_out=opted_out)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            for kind, wanted in form.cleaned_data.items():
                if wanted:
                    EmailOptOut.objects.filter(user=user, organization=org, kind=kind).delete()
                else:
                    EmailOptOut.objects.get_or_create(user=user, organization=org, kind=kind)
        messages.success(request, "Email preferences saved.")
        return redirect("notifications:preferences")
    return render(
        request,
        "notifications/preferences.html",
        {"form": form, "receives": membership.role in ("owner", "admin")},
    )
