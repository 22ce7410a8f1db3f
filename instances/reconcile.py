"""The reconcile loop: compare what PostgreSQL wants with what one engine reports, and correct.

One `runtime.list_managed()` call per host per pass (label clawfleet.managed=true). For every
instance on the host that has no active operation:

- desired running, status running/starting, container exited or missing → start it again
  (recreated from the same spec if missing: same volume, same hostname), event "restarted".
  Crashes are counted in a window: more than FLEET_CRASH_LOOP_THRESHOLD restarts within
  FLEET_CRASH_LOOP_WINDOW seconds → status crash_looping, no more restarts, event
  "crash_loop". A user's start/restart (or an upgrade) resets the count.
- container running → probe /readyz (local engines; a remote engine's Docker healthcheck
  otherwise): health, last_seen_at, and starting → running once ready.
- desired stopped/paused/deleted but the container runs → stop it, event "stopped".
- crash_looping, failed, pending: left alone (a person decides).

Orphans: containers labelled clawfleet.managed AND carrying this control plane's label
(clawfleet.plane) whose instance is unknown or purged are removed (event "orphan_removed" when
the instance row exists). Their volume is removed only when the instance is purged: for an
unknown instance the volume may be the only copy of someone's state (a restored database, a
mistake), so it is kept for a person to look at. Containers of other planes (another database
sharing the engine, e.g. a test run) are never touched.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from . import specs, state
from .handlers import event
from .models import Host, Instance, Operation

log = logging.getLogger(__name__)
S = Instance.Status
WATCHED = (S.RUNNING, S.STARTING)
NOT_RUNNING_WANTED = (S.STOPPED, S.PAUSED, S.DELETED)


@dataclass
class Correction:
    instance_id: str
    kind: str
    message: str
    data: dict = field(default_factory=dict)

    def __str__(self):
        return f"{self.instance_id} {self.kind}: {self.message}"


def _update(instance: Instance, **fields) -> None:
    Instance.objects.filter(pk=instance.pk).update(**fields)
    for key, value in fields.items():
        setattr(instance, key, value)


def _is_local(host: Host) -> bool:
    return host.base_url.startswith("unix://") or "127.0.0.1" in host.base_url


def _ready(host: Host, rt, instance: Instance, info) -> bool:
    if _is_local(host) and instance.host_port:
        return bool(rt.probe(instance.host_port).get("readyz"))
    return info.health == "healthy"


def reconcile_host(host: Host, *, now=None) -> list[Correction]:
    """One pass over one host. Returns the corrections made (also recorded as events)."""
    from .runtime import EngineUnavailable, runtime_for

    now = now or timezone.now()
    rt = runtime_for(host)
    try:
        containers = rt.list_managed()
    except EngineUnavailable as exc:
        Host.objects.filter(pk=host.pk).update(last_error=str(exc)[:1000])
        log.warning("reconcile: host %s unreachable", host.name)
        return []
    Host.objects.filter(pk=host.pk).update(last_seen_at=now, last_error="")

    plane = specs.plane_id()
    by_instance, ours = {}, {}
    for info in containers:
        labels = info.labels or {}
        pk = labels.get(specs.INSTANCE_LABEL)
        if not pk:
            continue
        # An instance's container is found by its instance label whatever plane label it
        # carries (a moved database changes the derived plane id); only orphan removal is
        # restricted to this plane's containers.
        by_instance[pk] = info
        if labels.get(specs.PLANE_LABEL) == plane:
            ours[pk] = info

    instances = {
        str(i.pk): i
        for i in Instance.objects.filter(host=host)
        .exclude(status=S.PURGED)
        .select_related("organization")
    }
    busy = {
        str(pk)
        for pk in Operation.objects.filter(state__in=Operation.ACTIVE_STATES).values_list(
            "instance_id", flat=True
        )
    }
    corrections: list[Correction] = []
    for pk, instance in instances.items():
        if pk in busy:
            continue
        try:
            corrections += _reconcile_instance(host, rt, instance, by_instance.get(pk), now)
        except Exception as exc:  # noqa: BLE001 - one bad instance never stops the pass
            log.warning("reconcile of %s failed: %s", pk, type(exc).__name__)
    for pk, info in ours.items():
        if pk in instances or pk in busy:
            continue
        try:
            corrections += _remove_orphan(rt, pk, info)
        except Exception as exc:  # noqa: BLE001
            log.warning("orphan removal of %s failed: %s", info.name, type(exc).__name__)
    _repair_edge(host, containers, busy)
    for c in corrections:
        log.info("reconcile %s: %s", host.name, c)
    return corrections


def _repair_edge(host: Host, containers, busy: set[str]):
    """The proxy's routes of this host's instances (instances/edge.py): a restarted proxy, a
    missing or drifted route, a route of an instance that is gone. Instances with an operation
    running are left to their handler. Logged, not returned with the instance corrections
    (the proxy's state is not an instance's); returns the EdgeRepair, or None."""
    from . import edge

    try:
        repair = edge.reconcile_host(host, containers, skip=busy)
    except edge.EdgeUnavailable as exc:
        log.warning("reconcile %s: edge proxy not repaired: %s", host.name, exc)
        return None
    if repair.added or repair.changed or repair.removed:
        log.warning(
            "reconcile %s: edge routes repaired: %d added, %d changed, %d removed%s",
            host.name,
            len(repair.added),
            len(repair.changed),
            len(repair.removed),
            " (the proxy had restarted)" if repair.reloaded else "",
        )
    return repair


def _reconcile_instance(host, rt, instance: Instance, info, now) -> list[Correction]:
    pk = str(instance.pk)
    running = bool(info and info.running)
    wants_running = instance.desired_state == Instance.DesiredState.RUNNING

    if not wants_running:
        return _converge_down(rt, instance, running)

    if instance.status in (S.STOPPED,):
        # Desired running but observed stopped (an operation that ended short of the wish):
        # bring it up, as a crash would be.
        return _restart_crashed(rt, instance, info, now, why="stopped while wanted running")

    if instance.status not in WATCHED:
        # crash_looping, failed, pending, paused...: record what we see, change nothing.
        if running:
            _update(instance, last_seen_at=now)
        return []

    if running:
        ready = _ready(host, rt, instance, info)
        fields = {"last_seen_at": now}
        if ready:
            fields["last_ready_at"] = now
            if instance.status == S.STARTING:
                state.transition(instance, S.RUNNING, reason="reconcile: ready", **fields)
                event(instance, "ready", "Ready again after a restart.")
                return [Correction(pk, "ready", "ready again")]
            fields["health"] = Instance.Health.HEALTHY
        elif instance.status == S.RUNNING:
            fields["health"] = Instance.Health.UNHEALTHY
        _update(instance, **fields)
        return []

    return _restart_crashed(rt, instance, info, now)


def _converge_down(rt, instance: Instance, running: bool) -> list[Correction]:
    """Desired stopped or deleted: no container may run; a live status settles at stopped."""
    pk = str(instance.pk)
    if not running:
        if instance.status in WATCHED and instance.desired_state == "stopped":
            state.transition(instance, S.STOPPED, reason="reconcile: not running, wanted stopped")
            return [Correction(pk, "settled", "marked stopped")]
        return []
    if instance.status in NOT_RUNNING_WANTED or instance.status in WATCHED:
        was = instance.status
        rt.stop(instance.container_name, timeout=30)
        if instance.status in WATCHED:
            state.transition(instance, S.STOPPED, reason="reconcile: wanted stopped")
        event(instance, "stopped", f"Stopped a container that should not run ({was}).")
        return [Correction(pk, "stopped", f"container was running while {was}")]
    return []


def _restart_crashed(rt, instance: Instance, info, now, *, why: str = "") -> list[Correction]:
    pk = str(instance.pk)
    window = timedelta(seconds=settings.FLEET_CRASH_LOOP_WINDOW)
    if instance.crash_window_started_at is None or now - instance.crash_window_started_at > window:
        window_start, count = now, 1
    else:
        window_start, count = instance.crash_window_started_at, instance.crash_count + 1
    what = why or (
        "missing"
        if info is None
        else f"{info.status}" + (f", exit {info.exit_code}" if info.exit_code is not None else "")
    )
    data = {"container": what, "crashes": count, "window_seconds": settings.FLEET_CRASH_LOOP_WINDOW}
    if count > settings.FLEET_CRASH_LOOP_THRESHOLD:
        message = (
            f"Crashed {count} times within {settings.FLEET_CRASH_LOOP_WINDOW} s; "
            "not restarting it again. Check the logs, then restart or upgrade."
        )
        state.transition(
            instance,
            S.CRASH_LOOPING,
            reason="reconcile: crash loop",
            message=message,
            crash_count=count,
            crash_window_started_at=window_start,
        )
        event(instance, "crash_loop", message, **data)
        return [Correction(pk, "crash_loop", message, data)]

    from .handlers import _ensure_container  # the same spec a deploy uses

    if info is None:
        if not rt.volume_exists(instance.volume_name):
            message = "The container and its state volume are missing; not recreating."
            state.transition(
                instance, S.FAILED, reason="reconcile: volume missing", message=message
            )
            event(instance, "volume_missing", message)
            return [Correction(pk, "volume_missing", message)]
        rt.ensure_network(settings.FLEET_NETWORK)
        _ensure_container(rt, instance, specs.image_for(instance.openclaw_version))
    rt.start(instance.container_name)
    state.transition(
        instance,
        S.STARTING,
        reason=f"reconcile: container {what}",
        message=f"Restarted after a crash ({what})." if not why else f"Started again ({what}).",
        crash_count=count,
        crash_window_started_at=window_start,
    )
    event(instance, "restarted", f"Container was {what}; started it again.", **data)
    return [Correction(pk, "restarted", f"container was {what}", data)]


def _remove_orphan(rt, pk: str, info) -> list[Correction]:
    try:
        instance = Instance.objects.filter(pk=uuid.UUID(pk)).first()
    except ValueError:
        instance = None
    if instance is not None and instance.status != S.PURGED:
        # Known and live, but placed on another host: not ours to judge from here.
        return []
    rt.remove(info.name)
    if instance is not None:
        rt.remove_volume((info.labels or {}).get("clawfleet.volume") or instance.volume_name)
    message = f"Removed container {info.name} of a " + (
        "purged instance (and its volume)" if instance is not None else "unknown instance"
    )
    if instance is not None:
        event(instance, "orphan_removed", message, container=info.name)
    return [Correction(pk, "orphan_removed", message, {"container": info.name})]
