"""Retention of sessions: which ones a prune removes, and the prune Operation.

Pruning goes through OpenClaw's own session lifecycle (archive, then delete), so its indexes stay
consistent; the next sync marks the pruned rows (sessions_mgmt.handlers.handle_prune runs it).
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from accounts.services import Actor, audit
from instances.models import Instance, Operation
from instances.operations import OperationError, operation_request

from ..models import Session


def _protected(key: str) -> bool:
    # OpenClaw protects each agent's main session from archive and delete.
    parts = key.split(":")
    return len(parts) == 3 and parts[0] == "agent" and parts[2] == "main"


def prune_preview(*, instance: Instance, now=None) -> list[str]:
    """Session keys a prune would remove now: idle longer than session_idle_days, then the
    oldest beyond session_max_count (by last activity). Agent main sessions are never pruned."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=instance.session_idle_days)
    rows = list(
        Session.objects.filter(instance=instance)
        .exclude(status=Session.Status.PRUNED)
        .order_by("-last_activity_at", "-id")
        .values_list("session_key", "last_activity_at", "started_at")
    )
    rows = [r for r in rows if not _protected(r[0])]
    idle = []
    keep = []
    for key, last, started in rows:
        seen = last or started
        (idle if seen is not None and seen < cutoff else keep).append(key)
    overflow = keep[instance.session_max_count :]
    return idle + overflow


def prune_sessions(*, actor: Actor, instance: Instance, enqueue: bool = True) -> Operation:
    """Queue an Operation (kind prune) that prunes through OpenClaw's session lifecycle."""
    with transaction.atomic():
        op = operation_request(
            actor=actor, instance=instance, kind=Operation.Kind.PRUNE, enqueue=enqueue
        )
        audit(
            actor=actor,
            action="sessions.prune_requested",
            organization=instance.organization,
            target=instance,
            data={"operation": str(op.pk)},
        )
    return op


def check_lifecycle(statuses: dict[str, str], what: str) -> None:
    failed = [k for k, s in statuses.items() if s not in ("archived", "deleted", "not_found", "ok")]
    if failed:
        raise OperationError(
            f"OpenClaw could not {what} {len(failed)} session(s); try again later.",
            f"{what} failed for {len(failed)} keys: statuses {sorted(set(statuses.values()))}",
        )
