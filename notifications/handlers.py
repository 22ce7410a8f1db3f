"""What notifications hears from the apps below it (fleet/hooks.py), turned into events.

Every handler catches its own errors: a webhook or an email never changes the outcome of the
transition, operation, backup check or budget run that told us.
"""

from __future__ import annotations

import logging

from fleet import hooks
from fleet.api import public_text

from . import events
from .services import event_emit

log = logging.getLogger(__name__)


def _instance(instance) -> dict:
    return {
        "id": str(instance.pk),
        "name": instance.name,
        "client_name": getattr(instance, "client_name", ""),
        "status": instance.status,
    }


def _quietly(func):
    def wrapper(**kwargs):
        try:
            return func(**kwargs)
        except Exception as exc:  # noqa: BLE001 - a subscriber never changes the outcome
            log.warning("notifications handler %s failed: %s", func.__name__, type(exc).__name__)
            return None

    wrapper.__name__ = func.__name__
    return wrapper


@_quietly
def on_transition(*, instance, from_status, to_status, reason="", **_):
    if to_status not in events.NOTIFIED_STATUSES:
        return None
    return event_emit(
        organization=instance.organization,
        event_type=events.INSTANCE_STATUS,
        instance=instance,
        data={
            "instance": _instance(instance),
            "status": to_status,
            "previous_status": from_status,
            "reason": public_text(reason or "") or "",
        },
    )


@_quietly
def on_operation_finished(*, operation, **_):
    instance = operation.instance
    op = {
        "id": str(operation.pk),
        "kind": operation.kind,
        "state": operation.state,
        "error": public_text(operation.error or "") or "",
        "finished_at": operation.finished_at,
    }
    data = {"instance": _instance(instance), "operation": op}
    out = event_emit(
        organization=instance.organization,
        event_type=events.OPERATION_FINISHED,
        instance=instance,
        data=data,
    )
    if operation.kind == "backup" and operation.state == "failed":
        event_emit(
            organization=instance.organization,
            event_type=events.BACKUP_FAILED,
            instance=instance,
            data={**data, "error": op["error"]},
        )
    return out


@_quietly
def on_backup_missing(*, instance, last_backup_at=None, hours=26, **_):
    return event_emit(
        organization=instance.organization,
        event_type=events.BACKUP_MISSING,
        instance=instance,
        data={
            "instance": _instance(instance),
            "last_backup_at": last_backup_at,
            "hours": hours,
            "message": f"No good backup for {hours} hours.",
        },
    )


@_quietly
def on_budget_threshold(*, organization, budget, percent, spent, cap, instance=None, **_):
    return event_emit(
        organization=organization,
        event_type=events.BUDGET_THRESHOLD,
        instance=instance,
        data={
            "instance": _instance(instance) if instance is not None else None,
            "budget": {
                "id": budget.pk,
                "percent": percent,
                "spent": f"{spent:.2f}",
                "cap": f"{cap:.2f}",
                "action": budget.action,
            },
        },
    )


@_quietly
def on_channel_health(*, channel, healthy, reason="", **_):
    if healthy:
        return None
    instance = getattr(channel, "instance", None)
    organization = getattr(channel, "organization", None) or instance.organization
    return event_emit(
        organization=organization,
        event_type=events.CHANNEL_BROKEN,
        instance=instance,
        data={
            "instance": _instance(instance) if instance is not None else None,
            "channel": {
                "id": str(getattr(channel, "pk", "")),
                "kind": str(getattr(channel, "kind", "") or getattr(channel, "type", "")),
                "name": str(getattr(channel, "bot_name", "") or getattr(channel, "name", "") or ""),
            },
            "reason": public_text(reason or "") or "",
        },
    )


def register() -> None:
    hooks.register("instance.transition", on_transition)
    hooks.register("operation.finished", on_operation_finished)
    hooks.register("backup.missing", on_backup_missing)
    hooks.register("budget.threshold", on_budget_threshold)
    hooks.register("channel.health_changed", on_channel_health)
