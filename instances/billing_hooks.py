"""instances' answers to billing's hooks (fleet.hooks, run by billing/capabilities.py).

billing sits below instances in the app chain, so it never imports this app: it asks through
these hooks what only instances knows (which instances exist and count against a plan, which
are up, their billable time) and has them paused and resumed through instances.services, so
the backup-first pause and the resume are the same operations a person would start.
"""

from __future__ import annotations

from django.db.models import Q

from accounts.services import SYSTEM
from fleet import hooks

from . import services, state
from .models import Instance, Operation

S = Instance.Status

# Statuses that do not count against a plan, and are not offered as budget targets.
GONE = (S.DELETED, S.PURGED)
# What billing pauses: instances meant to run and up (or trying to be). Once paused, their
# desired state is stopped, so a second grace or budget run never pauses them twice.
UP = (S.RUNNING, S.STARTING, S.RESTARTING, S.CRASH_LOOPING)


def organization_instances(*, organization_id, include_deleted=False):
    qs = Instance.objects.filter(organization_id=organization_id)
    if not include_deleted:
        qs = qs.exclude(status__in=GONE)
    return qs.order_by("name")


def instance_count(*, organization_id, exclude_instance_id=None) -> int:
    qs = Instance.objects.filter(organization_id=organization_id).exclude(status__in=GONE)
    if exclude_instance_id is not None:
        qs = qs.exclude(pk=exclude_instance_id)
    return qs.count()


def pausable(*, organization_id) -> list[Instance]:
    return list(
        Instance.objects.filter(
            organization_id=organization_id,
            desired_state=Instance.DesiredState.RUNNING,
            status__in=UP,
        ).order_by("name")
    )


def pause(*, instance: Instance, reason: str) -> Operation:
    """A pause operation: its handler backs the instance up, then stops it."""
    return services.instance_pause(actor=SYSTEM, instance=instance, reason=reason)


def resume(*, instance: Instance) -> bool:
    if instance.status == S.PAUSED:
        services.instance_resume(actor=SYSTEM, instance=instance)
        return True
    pausing = instance.operations.filter(
        kind=Operation.Kind.PAUSE, state__in=[Operation.State.QUEUED, Operation.State.RUNNING]
    )
    # False: the pause has not finished yet. True: resumed by someone else meanwhile, or gone.
    return not (instance.status in (S.RUNNING, S.STOPPING) and pausing.exists())


def compute_seconds(*, start, end) -> dict:
    """Every instance that existed in [start, end), with the seconds it spent in a billable
    status (state.BILLABLE) by its recorded transitions."""
    rows = list(
        Instance.objects.filter(created_at__lt=end)
        .filter(Q(deleted_at__isnull=True) | Q(deleted_at__gte=start))
        .values_list("pk", "organization_id")
    )
    seconds = state.running_seconds([pk for pk, _ in rows], start, end)
    return {pk: (org_id, seconds.get(str(pk), 0)) for pk, org_id in rows}


def register() -> None:
    hooks.register("billing.instances", organization_instances)
    hooks.register("billing.instance_count", instance_count)
    hooks.register("billing.pausable", pausable)
    hooks.register("billing.pause", pause)
    hooks.register("billing.resume", resume)
    hooks.register("billing.compute_seconds", compute_seconds)
