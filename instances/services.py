"""Writes for instances: the one implementation the dashboard, the API, admin actions, tasks and
management commands all call.

Every function is keyword-only, takes `actor` (accounts.services.Actor), runs in one
transaction, writes one audit row, and queues its side effects as an Operation
(operations.operation_request → the Celery task after commit). A second request while an
operation is queued or running raises `operations.OperationInProgress`. Invalid input or a state
that does not allow the action raises django's ValidationError (per field where a form has one;
code "invalid_state" for a lifecycle conflict).

Decisions written down:
- API key: required for openai, anthropic and openrouter. The "custom" provider (any
  OpenAI-compatible endpoint, e.g. a self-hosted vLLM/Ollama or the mock LLM) needs a base URL and
  a model name, and its key is optional (local endpoints usually have none; we write a
  placeholder so OpenClaw has a value).
- Memory: at least rules.MIN_MEMORY_MB (OpenClaw is OOM-killed in a loop at 768 MB); default 2048 MB
  capped by the plan. Changing memory or CPUs with instance_update() on a running instance is
  applied at once by a restart operation that recreates the container (same volume, same
  hostname); on a stopped instance it applies at the next start.
- Retention changes are saved at once (sessions_mgmt prunes by them) and written into the
  instance's config (session.maintenance) on its next start/restart/upgrade.
- Delete keeps the volume (and the port and the name) for FLEET_DELETE_GRACE_DAYS; purge removes
  container and volume and releases the port; the name is free again after purge.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.services import Actor, audit
from fleet import hooks

from . import edge, placement, rules
from . import prices as instance_prices
from .models import Host, HostNode, Instance, Operation
from .operations import OperationInProgress, active_operation, operation_request
from .specs import image_for  # noqa: F401 - part of this module's API (sessions_mgmt uses it)

log = logging.getLogger(__name__)

__all__ = [
    "OperationInProgress",
    "instance_delete",
    "instance_deploy",
    "instance_pause",
    "instance_purge",
    "instance_restart",
    "instance_resume",
    "instance_start",
    "instance_stop",
    "instance_update",
    "instance_upgrade",
    "image_for",
]

# OpenAI-compatible base URLs of the providers we know; "custom" brings its own.
PROVIDER_BASE_URLS = {
    Instance.Provider.OPENAI: "https://api.openai.com/v1",
    Instance.Provider.ANTHROPIC: "https://api.anthropic.com/v1",
    Instance.Provider.OPENROUTER: "https://openrouter.ai/api/v1",
}
S = Instance.Status


# --- helpers ----------------------------------------------------------------------------------


def _invalid_state(message: str) -> ValidationError:
    return ValidationError(message, code="invalid_state")


def _require_status(instance: Instance, allowed, action: str) -> None:
    if instance.status not in allowed:
        raise _invalid_state(
            f"Cannot {action} {instance.name} while it is {instance.get_status_display().lower()}."
        )


def _check_not_busy(instance: Instance) -> None:
    active = active_operation(instance)
    if active is not None:
        raise OperationInProgress(active)


def _lock(instance: Instance) -> Instance:
    """Re-read the instance under a row lock so two requests decide on the same state."""
    fresh = Instance.objects.select_for_update().get(pk=instance.pk)
    for field in ("status", "desired_state", "openclaw_version", "memory_mb", "cpus", "name"):
        setattr(instance, field, getattr(fresh, field))
    return fresh


def _request(actor: Actor, instance: Instance, kind: str, params: dict | None = None):
    return operation_request(actor=actor, instance=instance, kind=kind, params=params or {})


def _audit(actor: Actor, action: str, instance: Instance, op: Operation | None = None, **data):
    if op is not None:
        data["operation"] = str(op.pk)
    audit(
        actor=actor,
        action=action,
        organization=instance.organization,
        target=instance,
        data=data,
    )


def _parse_cpus(cpus, errors: dict) -> Decimal | None:
    try:
        value = Decimal(str(cpus))
    except (InvalidOperation, ValueError, TypeError):
        errors["cpus"] = ValidationError("Enter the number of CPUs, e.g. 1 or 0.5.", code="invalid")
        return None
    if not rules.MIN_CPUS <= value <= rules.MAX_CPUS or value != value.quantize(rules.MIN_CPUS):
        errors["cpus"] = ValidationError(
            "Enter a number of CPUs above 0 with at most two decimals.", code="invalid"
        )
        return None
    return value


def _parse_memory(memory_mb, errors: dict) -> int | None:
    try:
        value = int(memory_mb)
    except (TypeError, ValueError):
        errors["memory_mb"] = ValidationError("Enter the memory in MB.", code="invalid")
        return None
    if value < rules.MIN_MEMORY_MB:
        errors["memory_mb"] = ValidationError(
            f"OpenClaw needs at least {rules.MIN_MEMORY_MB} MB of memory.", code="min_value"
        )
        return None
    if value > rules.MAX_MEMORY_MB:
        errors["memory_mb"] = ValidationError(
            f"Ask for at most {rules.MAX_MEMORY_MB} MB of memory.", code="max_value"
        )
        return None
    return value


def _validate_name(organization, name: str, errors: dict, *, exclude_pk=None) -> str:
    name = (name or "").strip()
    if not rules.NAME_RE.match(name):
        errors["name"] = ValidationError(rules.NAME_HELP, code="invalid")
        return name
    taken = Instance.objects.filter(organization=organization, name=name).exclude(status=S.PURGED)
    if exclude_pk is not None:
        taken = taken.exclude(pk=exclude_pk)
    if taken.exists():
        errors["name"] = ValidationError(
            f"The name {name} is taken in this organization.", code="taken"
        )
    return name


def _merge_billing_errors(exc: ValidationError, errors: dict) -> None:
    if hasattr(exc, "error_dict"):
        for key, errs in exc.error_dict.items():
            errors.setdefault(key, errs)
    else:
        errors.setdefault("plan", exc.messages)


def _check_plan(organization, memory_mb, cpus, errors: dict, *, exclude_instance_id=None):
    from billing.entitlements import check_instance_allowed

    try:
        return check_instance_allowed(
            organization=organization,
            memory_mb=memory_mb if memory_mb is not None else 0,
            cpus=cpus if cpus is not None else 0,
            exclude_instance_id=exclude_instance_id,
        )
    except ValidationError as exc:
        _merge_billing_errors(exc, errors)
        return None


# --- deploy -----------------------------------------------------------------------------------


@transaction.atomic
def instance_deploy(
    *,
    actor: Actor,
    organization,
    name: str,
    openclaw_version: str | None = None,
    memory_mb: int | None = None,
    cpus=None,
    provider: str,
    model_name: str,
    api_key: str,
    model_base_url: str = "",
    channel_token: str = "",
    external_id: str | None = None,
    client_name: str = "",
    prices: dict | None = None,
) -> Operation:
    """Validate, record the Instance (placed on a host with a port) and a deploy Operation.
    `prices`: the instance's own token prices (instances.prices.FIELDS), for custom models.

    Raises ValidationError with one message per field; nothing is created then."""
    from billing.entitlements import plan_for, retention_for

    errors: dict = {}
    name = _validate_name(organization, name, errors)

    version = (openclaw_version or settings.FLEET_DEFAULT_VERSION).strip()
    if version not in settings.FLEET_OPENCLAW_VERSIONS:
        errors["openclaw_version"] = ValidationError(
            f"Unknown version {version}. Choose one of: "
            + ", ".join(settings.FLEET_OPENCLAW_VERSIONS)
            + ".",
            code="unknown_version",
        )

    plan = plan_for(organization)
    if memory_mb in (None, ""):
        memory_mb = rules.DEFAULT_MEMORY_MB
        memory_mb = min(memory_mb, plan.max_memory_mb) if plan else memory_mb
    if cpus in (None, ""):
        cpus = min(rules.DEFAULT_CPUS, plan.max_cpus) if plan else rules.DEFAULT_CPUS
    memory = _parse_memory(memory_mb, errors)
    cpu_count = _parse_cpus(cpus, errors)

    provider = (provider or "").strip().lower()
    model_name = (model_name or "").strip()
    api_key = (api_key or "").strip()
    model_base_url = (model_base_url or "").strip()
    if provider not in Instance.Provider.values:
        errors["provider"] = ValidationError(
            "Choose a provider: " + ", ".join(Instance.Provider.values) + ".", code="invalid"
        )
    if not model_name:
        errors["model_name"] = ValidationError("Enter the model to use.", code="required")
    elif len(model_name) > 100:
        errors["model_name"] = ValidationError("At most 100 characters.", code="max_length")
    if provider == Instance.Provider.CUSTOM:
        if not model_base_url:
            errors["model_base_url"] = ValidationError(
                "A custom provider needs the base URL of its OpenAI-compatible API.",
                code="required",
            )
    elif provider and not api_key:
        errors["api_key"] = ValidationError(f"Enter your {provider} API key.", code="required")
    if model_base_url:
        try:
            URLValidator(schemes=["http", "https"])(model_base_url)
        except ValidationError:
            errors["model_base_url"] = ValidationError(
                "Enter an http(s) URL, e.g. https://llm.example.com/v1.", code="invalid"
            )
        else:
            refused = _refused_endpoint(model_base_url)
            if refused:
                errors["model_base_url"] = ValidationError(refused, code="refused")
    external_id = (external_id or "").strip() or None
    if rules.external_id_taken(organization, external_id):
        errors["external_id"] = ValidationError(
            f"The external id {external_id} is taken in this organization.", code="taken"
        )

    own_prices = instance_prices.parse(prices or {}, errors)
    _check_plan(organization, memory, cpu_count, errors)
    if errors:
        raise ValidationError(errors)

    retention = retention_for(organization)
    instance = Instance(
        organization=organization,
        name=name,
        external_id=external_id,
        client_name=(client_name or "").strip()[:100],
        openclaw_version=version,
        desired_state=Instance.DesiredState.RUNNING,  # status starts pending (the default)
        memory_mb=memory,
        cpus=cpu_count,
        provider=provider,
        model_name=model_name,
        model_base_url=model_base_url,
        provider_api_key=api_key,
        gateway_token=secrets.token_urlsafe(32),
        session_idle_days=retention["session_idle_days"],
        session_max_count=retention["session_max_count"],
        created_by=actor.user,
        **own_prices,
    )
    try:
        placement.place(instance)
    except IntegrityError as exc:  # a concurrent deploy took the name or the external id
        key = "external_id" if "external_id" in str(exc) else "name"
        raise ValidationError(
            {key: ValidationError(f"That {key.replace('_', ' ')} is taken.", code="taken")}
        ) from exc
    edge.label_for(instance)  # the public address is known from the first answer on
    op = _request(actor, instance, Operation.Kind.DEPLOY)
    if (channel_token or "").strip():
        # The channels app checks the token with the provider and records a Channel (applied
        # once the gateway is ready); a refused token raises a field error: all rolled back.
        hooks.run(
            "instance.channel_requested",
            instance=instance,
            actor=actor,
            kind="telegram",
            token=channel_token.strip(),
            field="channel_token",
        )
    _audit(
        actor,
        "instance.deployed",
        instance,
        op,
        version=version,
        memory_mb=memory,
        cpus=str(cpu_count),
        provider=provider,
        model=model_name,
        host=instance.host.name,
    )
    return op


# --- lifecycle --------------------------------------------------------------------------------

STARTABLE = (S.STOPPED, S.FAILED, S.CRASH_LOOPING)
STOPPABLE = (S.RUNNING, S.STARTING, S.CRASH_LOOPING, S.FAILED, S.RESTARTING)
RESTARTABLE = (S.RUNNING, S.STARTING, S.CRASH_LOOPING, S.FAILED, S.RESTARTING)
UPGRADABLE = (S.RUNNING, S.STOPPED, S.CRASH_LOOPING, S.FAILED)
DELETABLE = (
    S.PENDING,
    S.RUNNING,
    S.STARTING,
    S.STOPPED,
    S.PAUSED,
    S.CRASH_LOOPING,
    S.FAILED,
    S.RESTARTING,
)
PAUSABLE = (S.RUNNING, S.STARTING, S.STOPPED, S.CRASH_LOOPING, S.FAILED, S.RESTARTING)


def _refused_endpoint(url: str) -> str | None:
    """Why the egress firewall would refuse a custom model endpoint (instances/egress.py), as a
    field error at deploy rather than a gateway that silently cannot reach its model."""
    from . import egress

    resolve = None if settings.FLEET_EGRESS_RESOLVE_NAMES else (lambda host: [])
    reason = egress.refused_reason(url, resolve=resolve)
    if reason is None:
        return None
    return f"Your assistant cannot reach this address: the URL {reason}."


def _require_plan(instance: Instance, verb: str) -> None:
    """Starting a gateway again (start, restart, resume, upgrade, restore) needs a plan that
    pays for it: a canceled or lapsed subscription keeps its instances stopped."""
    from billing.entitlements import entitled_subscription

    if entitled_subscription(instance.organization) is None:
        raise ValidationError(
            {
                "plan": ValidationError(
                    f"Cannot {verb} {instance.name}: this organization has no active plan. "
                    "Choose a plan, then try again.",
                    code="no_plan",
                )
            }
        )


def _lifecycle(
    *,
    actor: Actor,
    instance: Instance,
    kind: str,
    allowed,
    verb: str,
    audit_action: str,
    desired: str | None = None,
    params: dict | None = None,
    audit_data: dict | None = None,
    needs_plan: bool = False,
) -> Operation:
    fresh = _lock(instance)
    _check_not_busy(fresh)
    _require_status(fresh, allowed, verb)
    if needs_plan:
        _require_plan(fresh, verb)
    if desired is not None and fresh.desired_state != desired:
        Instance.objects.filter(pk=fresh.pk).update(desired_state=desired)
        instance.desired_state = desired
    op = _request(actor, fresh, kind, params)
    _audit(actor, audit_action, fresh, op, **(audit_data or {}))
    return op


@transaction.atomic
def instance_start(*, actor: Actor, instance: Instance) -> Operation:
    return _lifecycle(
        actor=actor,
        instance=instance,
        kind=Operation.Kind.START,
        allowed=STARTABLE,
        verb="start",
        needs_plan=True,
        audit_action="instance.started",
        desired=Instance.DesiredState.RUNNING,
    )


@transaction.atomic
def instance_stop(*, actor: Actor, instance: Instance) -> Operation:
    return _lifecycle(
        actor=actor,
        instance=instance,
        kind=Operation.Kind.STOP,
        allowed=STOPPABLE,
        verb="stop",
        audit_action="instance.stopped",
        desired=Instance.DesiredState.STOPPED,
    )


@transaction.atomic
def instance_restart(*, actor: Actor, instance: Instance) -> Operation:
    return _lifecycle(
        actor=actor,
        instance=instance,
        kind=Operation.Kind.RESTART,
        allowed=RESTARTABLE,
        verb="restart",
        needs_plan=True,
        audit_action="instance.restarted",
        desired=Instance.DesiredState.RUNNING,
    )


@transaction.atomic
def instance_upgrade(*, actor: Actor, instance: Instance, version: str) -> Operation:
    """Swap the container to another OpenClaw version, keeping the volume and the hostname.
    Takes a pre-upgrade backup first; rolls back to the current version if the new one does not
    become ready."""
    version = (version or "").strip()
    if version not in settings.FLEET_OPENCLAW_VERSIONS:
        raise ValidationError(
            {
                "version": ValidationError(
                    f"Unknown version {version}. Choose one of: "
                    + ", ".join(settings.FLEET_OPENCLAW_VERSIONS)
                    + ".",
                    code="unknown_version",
                )
            }
        )
    if version == instance.openclaw_version:
        raise ValidationError(
            {"version": ValidationError(f"{instance.name} already runs {version}.", code="same")}
        )
    return _lifecycle(
        actor=actor,
        instance=instance,
        kind=Operation.Kind.UPGRADE,
        allowed=UPGRADABLE,
        verb="upgrade",
        needs_plan=True,
        audit_action="instance.upgrade_requested",
        desired=Instance.DesiredState.RUNNING,
        params={"from_version": instance.openclaw_version, "to_version": version},
        audit_data={"from": instance.openclaw_version, "to": version},
    )


@transaction.atomic
def instance_delete(*, actor: Actor, instance: Instance) -> Operation:
    """Phase one: stop, remove the container, keep the volume for FLEET_DELETE_GRACE_DAYS."""
    return _lifecycle(
        actor=actor,
        instance=instance,
        kind=Operation.Kind.DELETE,
        allowed=DELETABLE,
        verb="delete",
        audit_action="instance.deleted",
        desired=Instance.DesiredState.DELETED,
        params={"grace_days": settings.FLEET_DELETE_GRACE_DAYS},
    )


@transaction.atomic
def instance_purge(*, actor: Actor, instance: Instance) -> Operation:
    """Phase two: remove the container and the volume for good, release the port."""
    return _lifecycle(
        actor=actor,
        instance=instance,
        kind=Operation.Kind.PURGE,
        allowed=(S.DELETED,),
        verb="purge",
        audit_action="instance.purged",
        desired=Instance.DesiredState.DELETED,
    )


@transaction.atomic
def instance_pause(*, actor: Actor, instance: Instance, reason: str) -> Operation:
    """Billing: back up, then stop; status paused with the reason shown to the customer."""
    reason = (reason or "").strip()[:200] or "Paused."
    return _lifecycle(
        actor=actor,
        instance=instance,
        kind=Operation.Kind.PAUSE,
        allowed=PAUSABLE,
        verb="pause",
        audit_action="instance.paused",
        desired=Instance.DesiredState.STOPPED,
        params={"reason": reason},
        audit_data={"reason": reason},
    )


@transaction.atomic
def instance_resume(*, actor: Actor, instance: Instance) -> Operation:
    """Start a paused instance again (a start operation with params.resume)."""
    return _lifecycle(
        actor=actor,
        instance=instance,
        kind=Operation.Kind.START,
        allowed=(S.PAUSED,),
        verb="resume",
        needs_plan=True,
        audit_action="instance.resumed",
        desired=Instance.DesiredState.RUNNING,
        params={"resume": True},
    )


def instance_token_reveal(*, actor: Actor, instance: Instance) -> str:
    """The gateway token, for the person who asked to see it; every reveal is audited."""
    _audit(actor, "instance.gateway_token_revealed", instance)
    return instance.gateway_token


# --- update -----------------------------------------------------------------------------------

UPDATABLE_FIELDS = {
    "name",
    "client_name",
    "external_id",
    "session_idle_days",
    "session_max_count",
    "archive_before_prune",
    "support_transcript_access",
    "memory_mb",
    "cpus",
    *instance_prices.FIELDS,
}


@transaction.atomic
def instance_update(*, actor: Actor, instance: Instance, **fields) -> Instance:
    """Change name, client name, external id, retention, transcript access, memory or CPUs.

    A memory/CPU change on a running instance queues a restart that recreates the container
    (the operation is available as `instance.queued_operation`, else None)."""
    unknown = set(fields) - UPDATABLE_FIELDS
    if unknown:
        raise ValidationError(
            {k: ValidationError("This field cannot be changed.", code="readonly") for k in unknown}
        )
    fresh = _lock(instance)
    if not fresh.is_live:
        raise _invalid_state(f"{fresh.name} is deleted.")
    errors: dict = {}
    changes: dict = {}
    if "name" in fields:
        name = _validate_name(fresh.organization, fields["name"], errors, exclude_pk=fresh.pk)
        if name != fresh.name:
            changes["name"] = name
    if "client_name" in fields:
        changes["client_name"] = (fields["client_name"] or "").strip()[:100]
    if "external_id" in fields:
        ext = (fields["external_id"] or "").strip() or None
        if ext and rules.external_id_taken(fresh.organization, ext, exclude_pk=fresh.pk):
            errors["external_id"] = ValidationError(
                f"The external id {ext} is taken in this organization.", code="taken"
            )
        changes["external_id"] = ext
    for key, (low, high) in rules.RETENTION_BOUNDS.items():
        if key in fields:
            try:
                value = int(fields[key])
            except (TypeError, ValueError):
                value = None
            if value is None or not low <= value <= high:
                errors[key] = ValidationError(
                    f"Enter a whole number from {low} to {high}.", code="invalid"
                )
            else:
                changes[key] = value
    for key in ("archive_before_prune", "support_transcript_access"):
        if key in fields:
            changes[key] = bool(fields[key])
    changes.update(instance_prices.parse(fields, errors))  # OpenClaw's config: at next start
    resized = False
    if "memory_mb" in fields or "cpus" in fields:
        memory = _parse_memory(fields.get("memory_mb", fresh.memory_mb), errors)
        cpu_count = _parse_cpus(fields.get("cpus", fresh.cpus), errors)
        if (
            memory is not None
            and cpu_count is not None
            and (memory != fresh.memory_mb or cpu_count != fresh.cpus)
        ):
            _check_plan(fresh.organization, memory, cpu_count, errors, exclude_instance_id=fresh.pk)
            if (
                fresh.host is not None
                and memory > fresh.memory_mb
                and not placement.has_room(fresh.host, memory, exclude_instance_id=fresh.pk)
            ):
                errors.setdefault(
                    "memory_mb",
                    ValidationError(
                        "The host of this instance has no room for that much memory.",
                        code="capacity",
                    ),
                )
            changes["memory_mb"], changes["cpus"] = memory, cpu_count
            resized = True
    if errors:
        raise ValidationError(errors)
    op = None
    if resized and fresh.status in (S.RUNNING, S.STARTING, S.CRASH_LOOPING, S.RESTARTING):
        _check_not_busy(fresh)
    if changes:
        try:
            with transaction.atomic():
                Instance.objects.filter(pk=fresh.pk).update(**changes)
        except IntegrityError as exc:
            key = "external_id" if "external_id" in str(exc) else "name"
            raise ValidationError(
                {key: ValidationError(f"That {key.replace('_', ' ')} is taken.", code="taken")}
            ) from exc
        for key, value in changes.items():
            setattr(instance, key, value)
    if resized and fresh.status in (S.RUNNING, S.STARTING, S.CRASH_LOOPING, S.RESTARTING):
        op = _request(actor, fresh, Operation.Kind.RESTART, {"recreate": True, "reason": "resize"})
    _audit(
        actor,
        "instance.updated",
        fresh,
        op,
        changes={k: str(v) if isinstance(v, Decimal) else v for k, v in changes.items()},
    )
    instance.queued_operation = op
    return instance


# --- system entry points (tasks) ---------------------------------------------------------------


def purge_expired(*, actor: Actor, now=None) -> list[Operation]:
    """Request a purge for every deleted instance whose grace period is over."""
    now = now or timezone.now()
    ops = []
    due = Instance.objects.filter(status=S.DELETED, purge_after__lte=now).order_by("purge_after")
    for instance in due:
        try:
            ops.append(instance_purge(actor=actor, instance=instance))
        except (OperationInProgress, ValidationError) as exc:
            log.info("purge of %s postponed: %s", instance.pk, exc)
    return ops


def grace_deadline(now=None):
    return (now or timezone.now()) + timedelta(days=settings.FLEET_DELETE_GRACE_DAYS)


# --- hosts ------------------------------------------------------------------------------------
# Hosts are configuration staff edit in the admin (instances/admin/hosts.py); every change is
# audited here, with the fields that changed (never a secret: a host holds none).

HOST_FIELDS = (
    "name",
    "kind",
    "base_url",
    "is_active",
    "memory_mb",
    "max_instances",
    "port_range_start",
    "port_range_end",
)


def _host_values(host: Host, fields) -> dict:
    return {name: getattr(host, name) for name in fields}


def host_port_range_problem(start, end) -> str | None:
    """Why a host's port range is unusable, or None (the admin's form shows it on the field)."""
    if start is not None and end is not None and start > end:
        return "The last port must not be below the first port."
    return None


def _validate_host(host: Host) -> None:
    host.full_clean(exclude=["last_seen_at", "last_error", "created_at"], validate_unique=True)
    problem = host_port_range_problem(host.port_range_start, host.port_range_end)
    if problem:
        raise ValidationError({"port_range_end": problem})


@transaction.atomic
def host_create(*, actor: Actor, **fields) -> Host:
    """Add an engine endpoint (a Docker engine we may place instances on); audited."""
    unknown = set(fields) - set(HOST_FIELDS)
    if unknown:
        raise ValidationError(f"Unknown host fields: {', '.join(sorted(unknown))}.")
    host = Host(**fields)
    _validate_host(host)
    host.save()
    audit(actor=actor, action="host.created", target=host, data=_host_values(host, HOST_FIELDS))
    return host


@transaction.atomic
def host_update(*, actor: Actor, host: Host, **fields) -> Host:
    """Change a host's configuration; audited with each changed field's old and new value.
    Deactivating a host stops placement on it; its instances stay where they are."""
    unknown = set(fields) - set(HOST_FIELDS)
    if unknown:
        raise ValidationError(f"Unknown host fields: {', '.join(sorted(unknown))}.")
    fresh = Host.objects.select_for_update().get(pk=host.pk)
    changes = {
        name: {"from": getattr(fresh, name), "to": value}
        for name, value in fields.items()
        if getattr(fresh, name) != value
    }
    if not changes:
        return fresh
    for name, change in changes.items():
        setattr(fresh, name, change["to"])
    _validate_host(fresh)
    fresh.save(update_fields=list(changes))
    audit(actor=actor, action="host.updated", target=fresh, data={"changes": changes})
    return fresh


@transaction.atomic
def host_delete(*, actor: Actor, host: Host) -> None:
    """Remove a host no instance was ever placed on (instances keep their host, purged ones too:
    deactivate a host to retire it); audited."""
    if Instance.objects.filter(host=host).exists():
        raise ValidationError(
            f"{host.name} has instances (live or purged): deactivate it instead of deleting it."
        )
    values = _host_values(host, HOST_FIELDS)
    audit(actor=actor, action="host.deleted", target=host, data=values)
    host.delete()


@transaction.atomic
def host_nodes_sync(*, host: Host, nodes: list[dict]) -> list[HostNode]:
    """Mirror a swarm's nodes (``SwarmRuntime.nodes()``) into HostNode rows: new ones added,
    known ones updated, vanished ones removed. Not audited: it records what Swarm says, not a
    decision of ours."""
    now = timezone.now()
    seen = []
    for node in nodes:
        row, _created = HostNode.objects.update_or_create(
            host=host,
            swarm_node_id=node["id"],
            defaults={
                "hostname": node["hostname"],
                "address": node["address"],
                "engine_url": node["engine_url"],
                "role": node["role"],
                "memory_mb": int(node["memory_bytes"]) // (1024 * 1024),
                "availability": node["availability"],
                "state": node["state"],
                "last_seen_at": now,
            },
        )
        seen.append(row)
    HostNode.objects.filter(host=host).exclude(pk__in=[r.pk for r in seen]).delete()
    return seen
