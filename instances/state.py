"""The instance state machine: the one module that writes Instance.status.

Desired state is the customer's wish (running, stopped, deleted); status is what the control
plane observes and does. Operation handlers, the reconcile loop, restore (sessions_mgmt) and
billing all change the status through `transition()`, which

- checks the arrow against TRANSITIONS (an illegal one raises IllegalTransition when
  FLEET_STATE_STRICT is on, as in the tests; in production it is logged and recorded, so an
  instance is never stranded by a missing arrow);
- writes the status with the fields that always go with it (health, running_since,
  status_message), in one conditional UPDATE under a row lock, so two writers never interleave;
- records the change as an InstanceEvent of kind "transition" (data: from, to, reason, actor,
  operation), which is what compute time is billed from (`running_intervals`);
- runs the "instance.transition" hook after commit.

A transition to the status the instance already has updates the fields and records nothing.
docs/architecture.md shows the diagram; tests/instances/test_state.py keeps it in step.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from fleet import hooks

from .models import Instance, InstanceEvent

log = logging.getLogger(__name__)
S = Instance.Status
H = Instance.Health
TRANSITION_EVENT = "transition"

# Statuses in which a gateway process is up (or being brought up) and costs compute.
BILLABLE = frozenset({S.STARTING, S.RUNNING, S.RESTARTING, S.UPGRADING})
# Statuses in which the container should not run.
AT_REST = frozenset({S.STOPPED, S.PAUSED, S.DELETED, S.PURGED})
# Statuses in which something is being done to the instance (an operation owns it).
IN_FLIGHT = frozenset({S.DEPLOYING, S.RESTARTING, S.UPGRADING, S.RESTORING, S.STOPPING, S.DELETING})

_ANY_LIVE = {
    S.PENDING,
    S.DEPLOYING,
    S.STARTING,
    S.RUNNING,
    S.RESTARTING,
    S.UPGRADING,
    S.RESTORING,
    S.STOPPING,
    S.STOPPED,
    S.PAUSED,
    S.CRASH_LOOPING,
    S.FAILED,
}

# from -> the statuses it may go to. Every live status may fail, be deleted or be paused.
TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.DEPLOYING}),
    S.DEPLOYING: frozenset({S.STARTING, S.RUNNING}),
    S.STARTING: frozenset(
        {S.RUNNING, S.STARTING, S.CRASH_LOOPING, S.STOPPING, S.STOPPED, S.RESTARTING}
        | {S.RESTORING, S.UPGRADING, S.DEPLOYING}
    ),
    # running -> deploying: a deploy redelivered after its worker died past the health step.
    S.RUNNING: frozenset(
        {S.STARTING, S.RESTARTING, S.UPGRADING, S.RESTORING, S.STOPPING, S.STOPPED}
        | {S.CRASH_LOOPING, S.DEPLOYING}
    ),
    S.RESTARTING: frozenset({S.RUNNING, S.STARTING, S.DEPLOYING, S.CRASH_LOOPING, S.STOPPED}),
    # An upgrade whose backup failed goes back to what it was; a rollback ends running.
    S.UPGRADING: frozenset({S.RUNNING, S.STARTING, S.STOPPED, S.CRASH_LOOPING, S.RESTORING}),
    S.RESTORING: frozenset({S.RUNNING, S.STARTING, S.STOPPED, S.RESTORING}),
    S.STOPPING: frozenset({S.STOPPED, S.PAUSED, S.RUNNING}),
    S.STOPPED: frozenset(
        {S.STARTING, S.DEPLOYING, S.UPGRADING, S.RESTORING, S.RESTARTING, S.STOPPING}
    ),
    S.PAUSED: frozenset({S.STARTING, S.DEPLOYING, S.RESTORING, S.STOPPED}),
    S.CRASH_LOOPING: frozenset(
        {S.STARTING, S.DEPLOYING, S.RESTARTING, S.UPGRADING, S.RESTORING, S.STOPPING}
        | {S.STOPPED, S.RUNNING}
    ),
    S.FAILED: frozenset(
        {S.STARTING, S.DEPLOYING, S.RESTARTING, S.UPGRADING, S.RESTORING, S.STOPPING}
        | {S.STOPPED, S.RUNNING, S.CRASH_LOOPING}
    ),
    S.DELETING: frozenset({S.DELETED}),
    S.DELETED: frozenset({S.PURGED}),
    S.PURGED: frozenset(),
}
# From any live status: it may fail, be deleted, or be paused by billing.
FROM_ANY_LIVE = frozenset({S.FAILED, S.DELETING, S.DELETED, S.PAUSED})
for _status in _ANY_LIVE:
    TRANSITIONS[_status] = TRANSITIONS[_status] | FROM_ANY_LIVE
TRANSITIONS[S.DELETING] = TRANSITIONS[S.DELETING] | {S.FAILED}
del _status


class IllegalTransition(Exception):
    """A status change the state machine does not allow (a bug in the caller)."""


def allowed(from_status: str, to_status: str) -> bool:
    return from_status == to_status or to_status in TRANSITIONS.get(from_status, frozenset())


def _implied_fields(from_status: str, to_status: str, now: datetime) -> dict:
    """Fields that always change with the status, so no caller forgets one."""
    if to_status == S.RUNNING:
        fields = {"health": H.HEALTHY, "last_ready_at": now, "last_seen_at": now}
        if from_status != S.RUNNING:
            fields["running_since"] = now
        return fields
    if to_status in BILLABLE:  # starting, restarting, upgrading: not known healthy yet
        return {"health": H.UNKNOWN, "running_since": None}
    if to_status in (S.CRASH_LOOPING, S.FAILED):
        return {"health": H.UNHEALTHY, "running_since": None}
    return {"health": H.UNKNOWN, "running_since": None}


def transition(
    instance: Instance,
    to: str,
    *,
    reason: str = "",
    actor=None,
    operation=None,
    message: str | None = None,
    **fields,
) -> bool:
    """Move `instance` to status `to`, with `fields` written in the same UPDATE.

    `reason` says why (kept on the event); `message` is the customer-facing status_message
    (default: cleared on running, kept otherwise unless given). Returns True when the status
    changed. The in-memory instance is updated to match.
    """
    to = S(to)
    now = timezone.now()
    with transaction.atomic():
        current = (
            Instance.objects.select_for_update()
            .values_list("status", flat=True)
            .get(pk=instance.pk)
        )
        if not allowed(current, to):
            text = f"illegal transition {current} -> {to} for {instance.pk} ({reason})"
            if getattr(settings, "FLEET_STATE_STRICT", False):
                raise IllegalTransition(text)
            log.error(text)
        values = _implied_fields(current, to, now)
        if message is not None:
            values["status_message"] = message[:300]
        elif to == S.RUNNING and current != S.RUNNING:
            values["status_message"] = ""
        values.update(fields)
        values["status"] = to
        values["updated_at"] = now
        Instance.objects.filter(pk=instance.pk).update(**values)
        for key, value in values.items():
            setattr(instance, key, value)
        if current == to:
            return False
        who = getattr(actor, "label", None) or (str(actor) if actor else "system")
        data = {"from": current, "to": str(to), "reason": reason[:200], "actor": who}
        if operation is not None:
            data["operation"] = str(operation.pk)
        InstanceEvent.objects.create(
            instance=instance,
            kind=TRANSITION_EVENT,
            message=f"{current} → {to}" + (f": {reason}" if reason else "")[:280],
            data=data,
            created_at=now,
        )
        transaction.on_commit(
            lambda: hooks.run(
                "instance.transition",
                instance=instance,
                from_status=current,
                to_status=str(to),
                reason=reason,
            )
        )
    return True


def running_intervals(
    instance_ids, start: datetime, end: datetime
) -> dict[str, list[tuple[datetime, datetime]]]:
    """{instance_id: [(from, to), ...]} the spans within [start, end) spent in a BILLABLE
    status, from the recorded transitions (the status before the first event in the window is
    the `to` of the last event before it)."""
    ids = [str(i) for i in instance_ids]
    result: dict[str, list[tuple[datetime, datetime]]] = {i: [] for i in ids}
    before = {}
    for event in (
        InstanceEvent.objects.filter(
            instance_id__in=ids, kind=TRANSITION_EVENT, created_at__lt=start
        )
        .order_by("instance_id", "-created_at", "-id")
        .distinct("instance_id")
        .values("instance_id", "data")
        if _supports_distinct_on()
        else _last_events_before(ids, start)
    ):
        before[str(event["instance_id"])] = event["data"].get("to")
    open_since: dict[str, datetime | None] = {
        i: (start if before.get(i) in BILLABLE else None) for i in ids
    }
    events = (
        InstanceEvent.objects.filter(
            instance_id__in=ids, kind=TRANSITION_EVENT, created_at__gte=start, created_at__lt=end
        )
        .order_by("created_at", "id")
        .values("instance_id", "data", "created_at")
    )
    for event in events:
        pk = str(event["instance_id"])
        billable = event["data"].get("to") in BILLABLE
        since = open_since.get(pk)
        if billable and since is None:
            open_since[pk] = event["created_at"]
        elif not billable and since is not None:
            result[pk].append((since, event["created_at"]))
            open_since[pk] = None
    for pk, since in open_since.items():
        if since is not None:
            result[pk].append((since, end))
    return result


def running_seconds(instance_ids, start: datetime, end: datetime) -> dict[str, int]:
    return {
        pk: int(sum((b - a).total_seconds() for a, b in spans))
        for pk, spans in running_intervals(instance_ids, start, end).items()
    }


def _supports_distinct_on() -> bool:
    from django.db import connection

    return connection.features.can_distinct_on_fields


def _last_events_before(ids, start):
    for pk in ids:
        event = (
            InstanceEvent.objects.filter(
                instance_id=pk, kind=TRANSITION_EVENT, created_at__lt=start
            )
            .order_by("-created_at", "-id")
            .values("instance_id", "data")
            .first()
        )
        if event:
            yield event


def mermaid() -> str:
    """The state diagram as Mermaid, generated from TRANSITIONS (docs/architecture.md)."""
    lines = [
        "stateDiagram-v2",
        "    %% Not drawn: every live status may also go to " + ", ".join(sorted(FROM_ANY_LIVE)),
        "    [*] --> pending",
    ]
    for source in S:
        for target in sorted(TRANSITIONS[source]):
            universal = source in _ANY_LIVE and target in FROM_ANY_LIVE
            if target != source and not universal:
                lines.append(f"    {source.value} --> {target}")
    lines.append("    paused --> starting")
    lines.append("    deleting --> deleted")
    lines.append("    deleted --> purged")
    lines.append("    purged --> [*]")
    return "\n".join(dict.fromkeys(lines))
