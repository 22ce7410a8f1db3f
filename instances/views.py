"""Instance dashboard views: the fleet list, the deploy wizard, the instance page, its live
partials (htmx), its actions and the operation progress page.

Thin: each view checks the role with current_membership(), finds objects through the
organization-scoped selectors (another tenant's id is a 404, never a 403), calls one service and
renders. Every action is a POST with CSRF; a viewer gets 403 before anything is looked up or
changed. The gateway logs can hold customer content: they are shown only to roles that may read
transcripts, never cached, and never written to our own logs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime
from itertools import groupby

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.template import TemplateDoesNotExist
from django.template.loader import select_template
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from accounts import roles
from accounts.forms import apply_service_errors
from accounts.services import Actor
from accounts.views import current_membership

from . import gateway_calls, runtime, selectors, services
from .forms import (
    PRICE_FIELDS,
    PROVIDER_HINTS,
    DeleteForm,
    DeployForm,
    PricesForm,
    RevealTokenForm,
    UpgradeForm,
)
from .models import Instance, Operation
from .operations import OperationInProgress

log = logging.getLogger(__name__)

S = Instance.Status
# Statuses in which something is changing: the pages poll faster while an instance is in one.
BUSY_STATUSES = {
    S.PENDING,
    S.DEPLOYING,
    S.STARTING,
    S.RESTARTING,
    S.UPGRADING,
    S.RESTORING,
    S.STOPPING,
    S.DELETING,
}
ATTENTION_STATUSES = {S.FAILED, S.CRASH_LOOPING}
GONE_STATUSES = {S.DELETED, S.PURGED}
FAST_POLL = "every 1500ms"
SLOW_POLL = "every 10s"
LOG_LINES_DEFAULT = 200
LOG_LINES_MAX = 1000

# Cards other apps contribute to the instance page; the first template that exists is used.
CARD_TEMPLATES = {
    "sessions_card": [
        "sessions_mgmt/_sessions_card.html",
        "sessions_mgmt/_instance_sessions_card.html",
        "sessions_mgmt/_instance_sessions.html",
    ],
    "backups_card": ["sessions_mgmt/_backups_card.html", "sessions_mgmt/_instance_backups.html"],
    "channels_card": ["channels/_instance_channels_card.html"],
    "costs_card": [
        "billing/_instance_costs_card.html",
        "billing/_costs_card.html",
        "billing/_instance_costs.html",
    ],
}


# --- helpers ----------------------------------------------------------------------------------


def get_instance_for_user(request, pk, permission: str = roles.VIEW):
    """(membership, instance) of the caller's current organization, else 404 (never 403).

    The role is checked first, so a viewer's POST is a 403 whatever the id."""
    membership = current_membership(request, permission)
    try:
        instance = selectors.instance_for(organization=membership.organization, pk=pk)
    except Instance.DoesNotExist:
        raise Http404("No such instance")
    return membership, instance


def get_operation_for_user(request, pk, op_id):
    membership, instance = get_instance_for_user(request, pk)
    try:
        op = (
            selectors.operations_for(organization=membership.organization, instance=instance)
            .select_related("requested_by")
            .get(pk=op_id)
        )
    except Operation.DoesNotExist:
        raise Http404("No such operation")
    return membership, instance, op


def _entitled(organization) -> tuple[bool, object]:
    from billing.entitlements import entitled_subscription

    sub = entitled_subscription(organization)
    return sub is not None, sub


def _costs_by_instance(organization) -> dict | None:
    """{instance_id: total USD this month}, or None when billing has no cost reads."""
    try:
        from billing.selectors import month_to_date_by_instance
    except ImportError:
        return None
    try:
        rows = month_to_date_by_instance(organization=organization)
        return {row["instance_id"]: row["total_usd"] for row in rows}
    except Exception:  # noqa: BLE001 - costs are a nicety on this page, never a 500
        log.warning("month-to-date costs unavailable", exc_info=True)
        return None


def _card_templates() -> dict:
    found = {}
    for key, names in CARD_TEMPLATES.items():
        try:
            found[key] = select_template(names).template.name
        except TemplateDoesNotExist:
            found[key] = None
    return found


def _parse_time(value):
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None


def step_rows(op: Operation) -> list[dict]:
    """The operation's recorded steps, with durations, for the steps include."""
    rows = []
    for raw in op.steps or []:
        started, finished = _parse_time(raw.get("started_at")), _parse_time(raw.get("finished_at"))
        duration = (finished - started).total_seconds() if started and finished else None
        rows.append(
            {
                "name": raw.get("name", ""),
                "state": raw.get("state", "running"),
                "detail": raw.get("detail", ""),
                "started_at": started,
                "duration": duration,
            }
        )
    if op.state == Operation.State.FAILED and rows and rows[-1]["state"] == "running":
        rows[-1]["state"] = "failed"
    return rows


def operation_context(op: Operation) -> dict:
    rows = step_rows(op)
    done = sum(1 for r in rows if r["state"] == "done")
    if op.state == Operation.State.SUCCEEDED:
        percent = 100
    elif rows:
        # We do not know how many steps are left; never show a finished bar before the end.
        percent = min(90, int(100 * done / (len(rows) + 1)))
    else:
        percent = 3
    return {
        "op": op,
        "steps": rows,
        "percent": percent,
        "poll": FAST_POLL if op.is_active else "",
        "version": fingerprint(op.state, op.steps, op.error),
    }


def _can(membership, permission: str) -> bool:
    return roles.role_allows(membership.role, permission)


def _status_context(membership, instance: Instance) -> dict:
    org = membership.organization
    active = selectors.active_operation_for(organization=org, instance=instance)
    busy = active is not None or instance.status in BUSY_STATUSES
    gone = instance.status in GONE_STATUSES and active is None
    return {
        "instance": instance,
        "active": operation_context(active) if active else None,
        "can_operate": _can(membership, roles.OPERATE),
        "can_open_assistant": _can(membership, roles.VIEW_TRANSCRIPTS),
        "poll": "" if gone else (FAST_POLL if busy else SLOW_POLL),
        "can_start": instance.status in services.STARTABLE,
        "can_stop": instance.status in services.STOPPABLE,
        "can_restart": instance.status in services.RESTARTABLE,
        "can_resume": instance.status == S.PAUSED,
        "busy": busy,
        "version": fingerprint(
            instance.status,
            instance.health,
            instance.status_message,
            instance.openclaw_version,
            instance.crash_count,
            instance.running_since,
            active and (active.pk, active.state, active.steps, active.error),
        ),
    }


def fingerprint(*parts) -> str:
    """A short digest of what a live partial shows. The partial carries it back on the next
    poll (hx-vals); an unchanged fingerprint answers 204, so htmx swaps nothing and screen
    readers hear only real changes in the aria-live regions."""
    raw = json.dumps(parts, default=str, sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _unchanged(request, version: str) -> bool:
    return bool(request.htmx) and request.GET.get("v") == version


def _no_store(response):
    response["Cache-Control"] = "no-store, private"
    return response


# --- the fleet --------------------------------------------------------------------------------


def _fleet_context(membership) -> dict:
    org = membership.organization
    instances = list(selectors.instances_for(organization=org).order_by("client_name", "name"))
    costs = _costs_by_instance(org)
    for instance in instances:
        instance.cost_mtd = costs.get(instance.pk) if costs is not None else None
    has_clients = any(i.client_name for i in instances)
    groups = [
        {"client": client, "instances": list(members)}
        for client, members in groupby(instances, key=lambda i: i.client_name)
    ]
    # Instances without a client come last under their own heading.
    groups.sort(key=lambda g: (g["client"] == "", g["client"].lower()))
    busy = any(i.status in BUSY_STATUSES for i in instances)
    return {
        "instances": instances,
        "groups": groups,
        "has_clients": has_clients,
        "show_costs": costs is not None,
        "poll": FAST_POLL if busy else SLOW_POLL,
        "can_operate": _can(membership, roles.OPERATE),
        # With the edge on, customers see public addresses, never the host's 127.0.0.1:PORT.
        "edge_on": bool(settings.FLEET_EDGE_ADMIN_URL),
        "version": fingerprint(
            [
                (i.pk, i.name, i.client_name, i.status, i.health, i.openclaw_version, i.cost_mtd)
                for i in instances
            ]
        ),
    }


@login_required
def dashboard(request):
    membership = current_membership(request)
    org = membership.organization
    entitled, subscription = _entitled(org)
    context = _fleet_context(membership)
    live = [i for i in context["instances"] if i.status not in GONE_STATUSES]
    cost_total = None
    if context["show_costs"]:
        cost_total = sum((i.cost_mtd or 0) for i in context["instances"])
    context.update(
        {
            "entitled": entitled,
            "subscription": subscription,
            "plan": subscription.plan if subscription else None,
            "live_count": len(live),
            "running_count": sum(1 for i in live if i.status == S.RUNNING),
            "attention_count": sum(
                1 for i in live if i.status in ATTENTION_STATUSES or i.health == "unhealthy"
            ),
            "cost_total": cost_total,
            "can_manage_members": _can(membership, roles.MANAGE_MEMBERS),
            "can_manage_tokens": _can(membership, roles.MANAGE_TOKENS),
            "can_manage_billing": _can(membership, roles.MANAGE_BILLING),
            "is_agency": org.kind == "agency",
        }
    )
    return render(request, "instances/dashboard.html", context)


@login_required
@require_GET
def fleet_partial(request):
    """The instance table of the dashboard, polled by htmx."""
    membership = current_membership(request)
    context = _fleet_context(membership)
    if _unchanged(request, context["version"]):
        return HttpResponse(status=204)
    return render(request, "instances/_fleet.html", context)


# --- deploy -----------------------------------------------------------------------------------


@login_required
def deploy(request):
    membership = current_membership(request, roles.OPERATE)
    org = membership.organization
    entitled, _ = _entitled(org)
    if request.method == "GET" and not entitled:
        messages.info(request, "Choose a plan to deploy your assistant. The first month is $1.")
        return redirect("billing:plans")
    form = DeployForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            op = services.instance_deploy(
                actor=Actor.from_request(request), organization=org, **form.service_kwargs()
            )
        except ValidationError as exc:
            apply_service_errors(form, exc)
        else:
            return redirect("instances:operation", pk=op.instance_id, op_id=op.pk)
    # "Choose a plan", "upgrade your plan": a link to the plans page beside the message.
    plan_error = any("plan" in str(e).lower() for e in form.non_field_errors())
    return render(
        request,
        "instances/deploy.html",
        {
            "form": form,
            "provider_hints": {str(k): v for k, v in PROVIDER_HINTS.items()},
            "plan_error": plan_error,
            "entitled": entitled,
        },
    )


# --- one instance -----------------------------------------------------------------------------


@login_required
def instance_detail(request, pk):
    membership, instance = get_instance_for_user(request, pk)
    org = membership.organization
    operations = list(
        selectors.operations_for(organization=org, instance=instance).select_related(
            "requested_by"
        )[:10]
    )
    cost_mtd = None
    try:
        from billing.selectors import month_to_date_for_instance

        cost_mtd = month_to_date_for_instance(instance=instance)
    except Exception:  # noqa: BLE001 - costs are optional on this page
        log.debug("instance costs unavailable", exc_info=True)
    context = {
        **_status_context(membership, instance),
        **_card_templates(),
        "operations": [(op, step_rows(op)) for op in operations],
        "events": selectors.events_for(organization=org, instance=instance)[:20],
        "upgrade_form": UpgradeForm(current=instance.openclaw_version),
        "delete_form": DeleteForm(instance=instance),
        "reveal_form": RevealTokenForm(),
        "can_view_logs": _can(membership, roles.VIEW_TRANSCRIPTS),
        "can_upgrade": instance.status in services.UPGRADABLE,
        "can_delete": instance.status in services.DELETABLE,
        "gone": instance.status in GONE_STATUSES,
        "cost_mtd": cost_mtd,
        "grace_days": settings.FLEET_DELETE_GRACE_DAYS,
        "edge_on": bool(settings.FLEET_EDGE_ADMIN_URL),
        "prices_form": PricesForm(
            initial={k: getattr(instance, k) for k in PRICE_FIELDS}, prefix="prices"
        ),
        "price_source": _price_source(instance),
    }
    return render(request, "instances/detail.html", context)


def _price_source(instance) -> str:
    """ "own", "table" or "none" (the page then says "no price" rather than $0)."""
    from billing.pricing import own_price, price_for

    if own_price(instance) is not None:
        return "own"
    return "table" if price_for(instance.provider, instance.model_name) is not None else "none"


@login_required
@require_POST
def instance_prices(request, pk):
    """The instance's own token prices (instances/prices.py; services.instance_update)."""
    _, instance = get_instance_for_user(request, pk, roles.OPERATE)
    form = PricesForm(request.POST, prefix="prices")
    form.is_valid()
    try:
        services.instance_update(
            actor=Actor.from_request(request),
            instance=instance,
            **{k: form.cleaned_data.get(k) or None for k in PRICE_FIELDS},
        )
    except ValidationError as exc:
        _service_error(request, exc)
    else:
        messages.success(
            request,
            "Prices saved: new conversations are priced with them (OpenClaw's own estimate from "
            "its next start).",
        )
    return redirect("instances:detail", pk=instance.pk)


@login_required
@require_GET
def status_partial(request, pk):
    membership, instance = get_instance_for_user(request, pk)
    context = _status_context(membership, instance)
    if _unchanged(request, context["version"]):
        return HttpResponse(status=204)
    return render(request, "instances/_status.html", context)


@login_required
@require_GET
@never_cache
def logs_partial(request, pk):
    """The tail of the gateway's logs. Customer content: read-only for roles that may read
    transcripts, never cached, never logged by us."""
    membership, instance = get_instance_for_user(request, pk, roles.VIEW_TRANSCRIPTS)
    try:
        lines = min(max(int(request.GET.get("lines", LOG_LINES_DEFAULT)), 10), LOG_LINES_MAX)
    except ValueError:
        lines = LOG_LINES_DEFAULT
    text, problem = "", ""
    if instance.host is None or instance.status in (S.PENDING, S.PURGED):
        problem = "No logs yet: the container has not been created."
    else:
        try:
            with gateway_calls.slot(instance.organization_id):
                text = gateway_calls.cap(
                    runtime.runtime_for(instance.host).logs_tail(
                        instance.container_name, lines=lines
                    )
                )
        except gateway_calls.GatewayBusy as exc:
            problem = exc.public
        except Exception as exc:  # noqa: BLE001 - any engine trouble is shown, never a 500
            # Only the exception type: its text could echo what the engine returned.
            log.info("logs of %s unavailable: %s", instance.pk, type(exc).__name__)
            if type(exc).__name__ == "ContainerNotFound":
                problem = "No logs: the container is not there (stopped and removed, or deleted)."
            else:
                problem = (
                    "The Docker engine for this instance is unreachable right now. "
                    "Logs will be back when it answers; your assistant may still be running."
                )
    response = render(
        request,
        "instances/_logs.html",
        {"instance": instance, "text": text, "problem": problem, "lines": lines},
    )
    return _no_store(response)


# --- actions ----------------------------------------------------------------------------------

ACTIONS = {
    "start": (services.instance_start, "Starting {name}."),
    "stop": (services.instance_stop, "Stopping {name}."),
    "restart": (services.instance_restart, "Restarting {name}."),
    "resume": (services.instance_resume, "Resuming {name}."),
}


def _service_error(request, exc: Exception) -> None:
    if isinstance(exc, ValidationError):
        messages.error(request, " ".join(exc.messages))
    else:
        messages.error(request, str(exc))


@login_required
@require_POST
def instance_action(request, pk, action: str):
    if action not in ACTIONS:
        raise Http404("No such action")
    _, instance = get_instance_for_user(request, pk, roles.OPERATE)
    service, done = ACTIONS[action]
    try:
        service(actor=Actor.from_request(request), instance=instance)
    except (ValidationError, OperationInProgress) as exc:
        _service_error(request, exc)
    else:
        messages.success(request, done.format(name=instance.name))
    return redirect("instances:detail", pk=instance.pk)


@login_required
@require_POST
def instance_upgrade(request, pk):
    _, instance = get_instance_for_user(request, pk, roles.OPERATE)
    form = UpgradeForm(request.POST, current=instance.openclaw_version)
    if not form.is_valid():
        messages.error(request, "Choose the version to upgrade to.")
        return redirect("instances:detail", pk=instance.pk)
    version = form.cleaned_data["version"]
    try:
        services.instance_upgrade(
            actor=Actor.from_request(request), instance=instance, version=version
        )
    except (ValidationError, OperationInProgress) as exc:
        _service_error(request, exc)
    else:
        messages.success(
            request,
            f"Upgrading {instance.name} to {version}. A backup is taken first; if the new "
            "version does not start, it rolls back.",
        )
    return redirect("instances:detail", pk=instance.pk)


@login_required
@require_POST
def instance_delete(request, pk):
    _, instance = get_instance_for_user(request, pk, roles.OPERATE)
    form = DeleteForm(request.POST, instance=instance)
    if not form.is_valid():
        messages.error(request, " ".join(form.errors.get("confirm", ["Confirm the name."])))
        return redirect(reverse("instances:detail", args=[instance.pk]) + "#danger")
    try:
        services.instance_delete(actor=Actor.from_request(request), instance=instance)
    except (ValidationError, OperationInProgress) as exc:
        _service_error(request, exc)
        return redirect("instances:detail", pk=instance.pk)
    messages.success(
        request,
        f"Deleting {instance.name}. Its data is kept for {settings.FLEET_DELETE_GRACE_DAYS} days "
        "before it is purged.",
    )
    return redirect("instances:detail", pk=instance.pk)


@login_required
@require_POST
@never_cache
def reveal_token(request, pk):
    """Show the gateway token once, after a confirmation; audited. Never cached."""
    membership, instance = get_instance_for_user(request, pk, roles.OPERATE)
    form = RevealTokenForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Tick the box to confirm before revealing the token.")
        return redirect(reverse("instances:detail", args=[instance.pk]) + "#connect")
    token = services.instance_token_reveal(actor=Actor.from_request(request), instance=instance)
    response = render(request, "instances/token.html", {"instance": instance, "token": token})
    return _no_store(response)


# --- operations -------------------------------------------------------------------------------


@login_required
def operation_detail(request, pk, op_id):
    membership, instance, op = get_operation_for_user(request, pk, op_id)
    context = {
        **operation_context(op),
        "instance": instance,
        "can_operate": _can(membership, roles.OPERATE),
        "can_open_assistant": _can(membership, roles.VIEW_TRANSCRIPTS),
        "reveal_form": RevealTokenForm(),
    }
    return render(request, "instances/operation.html", context)


@login_required
@require_GET
def operation_partial(request, pk, op_id):
    membership, instance, op = get_operation_for_user(request, pk, op_id)
    context = {
        **operation_context(op),
        "instance": instance,
        "can_operate": _can(membership, roles.OPERATE),
        "can_open_assistant": _can(membership, roles.VIEW_TRANSCRIPTS),
        "reveal_form": RevealTokenForm(),
    }
    if _unchanged(request, context["version"]):
        return HttpResponse(status=204)
    return render(request, "instances/_operation.html", context)
