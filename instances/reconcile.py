"""The reconcile loop: compare what PostgreSQL wants with what one engine reports, and correct.

One `runtime.list_managed()` call per host per pass (label clawfleet.managed=true) and one query
for the host's instances. For every instance on the host that has no active operation:

- desired running, status running/starting, container exited or missing → start it again
  (recreated from the same spec if missing: same volume, same hostname), event "restarted".
  Crashes are counted in a window: more than FLEET_CRASH_LOOP_THRESHOLD restarts within
  FLEET_CRASH_LOOP_WINDOW seconds → status crash_looping, no more restarts, event
  "crash_loop". A user's start/restart (or an upgrade) resets the count.
- container running → is it ready? Docker's own healthcheck, read from the list call's summary,
  answers for a running instance it calls healthy; everything else (starting, no healthcheck,
  unhealthy, a remote engine's instance without a verdict) is probed on /readyz (local engines
  only), concurrently (PROBE_WORKERS threads, PROBE_TIMEOUT). health follows, and
  starting → running once ready.
- desired stopped/paused/deleted but the container runs → stop it, event "stopped".
- crash_looping, failed, pending: left alone (a person decides).

What a pass writes: state changes go through `state.transition` (one per correction); health
changes are one UPDATE per distinct set of values; events are one bulk INSERT; last_seen_at and
last_ready_at are refreshed only once they are older than HEARTBEAT (one UPDATE for all of
them). A pass over an unchanged fleet writes nothing about its instances.

Orphans: containers labelled clawfleet.managed AND carrying this control plane's label
(clawfleet.plane) whose instance is unknown or purged are removed (event "orphan_removed" when
the instance row exists). Their volume is removed only when the instance is purged: for an
unknown instance the volume may be the only copy of someone's state (a restored database, a
mistake), so it is kept for a person to look at. Containers of other planes (another database
sharing the engine, e.g. a test run) are never touched. A warm-pool gateway (label
clawfleet.pool=true) whose instance id has no row yet is the pool's (instances/pool.py), never
an orphan; once the row exists it is that instance's container like any other.
"""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from . import specs, state
from .models import Host, Instance, InstanceEvent, Operation

log = logging.getLogger(__name__)
S = Instance.Status
H = Instance.Health
WATCHED = (S.RUNNING, S.STARTING)
NOT_RUNNING_WANTED = (S.STOPPED, S.PAUSED, S.DELETED)
# Probes run in this many threads, each HTTP request waiting at most PROBE_TIMEOUT: a few hung
# gateways cost a pass seconds of waiting, never the CPU of the rest.
PROBE_WORKERS = 8
PROBE_TIMEOUT = 1.0
# last_seen_at / last_ready_at are refreshed when older than this, not on every pass
# (settings.FLEET_RECONCILE_HEARTBEAT_SECONDS overrides it).
HEARTBEAT = timedelta(seconds=300)
# The reconcile loop never reads these; decrypting them for 1,000 rows per pass costs more
# than the rest of the query.
DEFERRED = ("gateway_token", "provider_api_key", "channel_token")


@dataclass
class Correction:
    instance_id: str
    kind: str
    message: str
    data: dict = field(default_factory=dict)

    def __str__(self):
        return f"{self.instance_id} {self.kind}: {self.message}"


@dataclass
class Writes:
    """What a pass writes at its end, batched: the events in one INSERT, the changed fields in
    one UPDATE per distinct set of values (a handful: health flips and heartbeats)."""

    now: object
    events: list[InstanceEvent] = field(default_factory=list)
    pending: dict = field(default_factory=dict)  # pk -> {field: value}

    def event(self, instance: Instance, kind: str, message: str, **data) -> None:
        self.events.append(
            InstanceEvent(instance=instance, kind=kind, message=message[:300], data=data)
        )

    def update(self, instance: Instance, **fields) -> None:
        """Queue the fields that differ from the loaded row (none: nothing to write)."""
        changed = {k: v for k, v in fields.items() if getattr(instance, k) != v}
        if changed:
            self.pending.setdefault(instance.pk, {}).update(changed)
            for key, value in changed.items():
                setattr(instance, key, value)

    def heartbeat(self, instance: Instance, *, ready: bool) -> None:
        """last_seen_at (and last_ready_at when ready), once they are older than HEARTBEAT."""
        fields = {}
        if _stale(instance.last_seen_at, self.now):
            fields["last_seen_at"] = self.now
        if ready and _stale(instance.last_ready_at, self.now):
            fields["last_ready_at"] = self.now
        self.update(instance, **fields)

    def flush(self) -> None:
        groups: dict[tuple, list] = {}
        for pk, fields in self.pending.items():
            groups.setdefault(tuple(sorted(fields.items())), []).append(pk)
        for items, pks in groups.items():
            Instance.objects.filter(pk__in=pks).update(**dict(items))
        if self.events:
            InstanceEvent.objects.bulk_create(self.events)
        self.pending, self.events = {}, []


def _stale(when, now) -> bool:
    seconds = getattr(settings, "FLEET_RECONCILE_HEARTBEAT_SECONDS", HEARTBEAT.total_seconds())
    return when is None or now - when >= timedelta(seconds=seconds)


def _is_local(host: Host) -> bool:
    return host.base_url.startswith("unix://") or "127.0.0.1" in host.base_url


def _needs_probe(local: bool, instance: Instance, info) -> bool:
    """A running instance Docker's healthcheck calls healthy is ready; a starting one (about
    to change status), or one without a healthy verdict, is asked over HTTP (local engines)."""
    if not (local and instance.host_port and info is not None and info.running):
        return False
    return not (instance.status == S.RUNNING and info.health == "healthy")


def _probe_all(rt, ports: dict[str, int]) -> dict[str, bool]:
    """{instance pk: ready} for every port, probed concurrently; a failed probe is not ready."""

    def one(port: int) -> bool:
        try:
            return bool(rt.probe(port, timeout=PROBE_TIMEOUT).get("readyz"))
        except Exception as exc:  # noqa: BLE001 - a probe that raises says "not ready"
            log.warning("reconcile: probe of port %s failed: %s", port, type(exc).__name__)
            return False

    if len(ports) <= 1:
        return {pk: one(port) for pk, port in ports.items()}
    with ThreadPoolExecutor(max_workers=min(PROBE_WORKERS, len(ports))) as pool:
        return dict(zip(ports, pool.map(one, ports.values()), strict=True))


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
        .defer(*DEFERRED)
    }
    busy = {
        str(pk)
        for pk in Operation.objects.filter(state__in=Operation.ACTIVE_STATES).values_list(
            "instance_id", flat=True
        )
    }
    local = _is_local(host)
    ready = _probe_all(
        rt,
        {
            pk: i.host_port
            for pk, i in instances.items()
            if pk not in busy and i.desired_state == Instance.DesiredState.RUNNING
            if _needs_probe(local, i, by_instance.get(pk))
        },
    )
    writes = Writes(now)
    corrections: list[Correction] = []
    for pk, instance in instances.items():
        if pk in busy:
            continue
        try:
            corrections += _reconcile_instance(
                rt, instance, by_instance.get(pk), ready.get(pk), writes
            )
        except Exception as exc:  # noqa: BLE001 - one bad instance never stops the pass
            log.warning("reconcile of %s failed: %s", pk, type(exc).__name__)
    corrections += _remove_orphans(
        rt,
        {pk: info for pk, info in ours.items() if pk not in instances and pk not in busy},
        writes,
    )
    writes.flush()
    _repair_edge(host, containers, busy, list(instances.values()))
    for c in corrections:
        log.info("reconcile %s: %s", host.name, c)
    return corrections


def _repair_edge(host: Host, containers, busy: set[str], instances: list[Instance]):
    """The proxy's routes of this host's instances (instances/edge.py): a restarted proxy, a
    missing or drifted route, a route of an instance that is gone. Instances with an operation
    running are left to their handler. Logged, not returned with the instance corrections
    (the proxy's state is not an instance's); returns the EdgeRepair, or None."""
    from . import edge

    try:
        repair = edge.reconcile_host(host, containers, skip=busy, instances=instances)
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


def _reconcile_instance(rt, instance: Instance, info, ready, writes: Writes) -> list[Correction]:
    """`ready`: the probe's answer (None when it was not probed: Docker's healthcheck, or a
    remote engine's, decides)."""
    pk = str(instance.pk)
    running = bool(info and info.running)
    wants_running = instance.desired_state == Instance.DesiredState.RUNNING

    if not wants_running:
        return _converge_down(rt, instance, info, running, writes)

    if instance.status in (S.STOPPED,):
        # Desired running but observed stopped (an operation that ended short of the wish):
        # bring it up, as a crash would be.
        return _restart_crashed(rt, instance, info, writes, why="stopped while wanted running")

    if instance.status not in WATCHED:
        # crash_looping, failed, pending, paused...: record what we see, change nothing.
        if running:
            writes.heartbeat(instance, ready=False)
        return []

    if running:
        if ready is None:
            ready = info.health == "healthy"
        if ready and instance.status == S.STARTING:
            state.transition(instance, S.RUNNING, reason="reconcile: ready")
            writes.event(instance, "ready", "Ready again after a restart.")
            return [Correction(pk, "ready", "ready again")]
        if instance.status == S.RUNNING:
            writes.update(instance, health=H.HEALTHY if ready else H.UNHEALTHY)
        writes.heartbeat(instance, ready=ready)
        return []

    return _restart_crashed(rt, instance, info, writes)


def _converge_down(rt, instance: Instance, info, running: bool, writes: Writes) -> list[Correction]:
    """Desired stopped or deleted: no container may run; a live status settles at stopped."""
    pk = str(instance.pk)
    if not running:
        if instance.status in WATCHED and instance.desired_state == "stopped":
            state.transition(instance, S.STOPPED, reason="reconcile: not running, wanted stopped")
            return [Correction(pk, "settled", "marked stopped")]
        return []
    if instance.status in NOT_RUNNING_WANTED or instance.status in WATCHED:
        was = instance.status
        rt.stop(info.name, timeout=30)
        if instance.status in WATCHED:
            state.transition(instance, S.STOPPED, reason="reconcile: wanted stopped")
        writes.event(instance, "stopped", f"Stopped a container that should not run ({was}).")
        return [Correction(pk, "stopped", f"container was running while {was}")]
    return []


def _restart_crashed(rt, instance: Instance, info, writes: Writes, *, why="") -> list[Correction]:
    pk = str(instance.pk)
    now = writes.now
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
        writes.event(instance, "crash_loop", message, **data)
        return [Correction(pk, "crash_loop", message, data)]

    from .handlers import _ensure_container  # the same spec a deploy uses

    if info is None:
        if not rt.volume_exists(instance.volume_name):
            message = "The container and its state volume are missing; not recreating."
            state.transition(
                instance, S.FAILED, reason="reconcile: volume missing", message=message
            )
            writes.event(instance, "volume_missing", message)
            return [Correction(pk, "volume_missing", message)]
        rt.ensure_network(settings.FLEET_NETWORK)
        _ensure_container(rt, instance, specs.image_for(instance.openclaw_version))
    rt.start(info.name if info is not None else instance.container_name)
    state.transition(
        instance,
        S.STARTING,
        reason=f"reconcile: container {what}",
        message=f"Restarted after a crash ({what})." if not why else f"Started again ({what}).",
        crash_count=count,
        crash_window_started_at=window_start,
    )
    writes.event(instance, "restarted", f"Container was {what}; started it again.", **data)
    return [Correction(pk, "restarted", f"container was {what}", data)]


def _remove_orphans(rt, candidates: dict, writes: Writes) -> list[Correction]:
    """This plane's containers whose instance is not on this host: one query for all of them."""
    if not candidates:
        return []
    ids = [_uuid_or_none(pk) for pk in candidates]
    known = {
        str(i.pk): i
        for i in Instance.objects.filter(pk__in=[i for i in ids if i])
        .select_related("organization")
        .defer(*DEFERRED)
    }
    corrections: list[Correction] = []
    for pk, info in candidates.items():
        instance = known.get(pk)
        if instance is not None and instance.status != S.PURGED:
            continue  # known and live, but placed on another host: not ours to judge from here
        if instance is None and (info.labels or {}).get(specs.POOL_LABEL) == "true":
            continue  # a warm-pool gateway waiting for its instance: the pool's to maintain
        try:
            corrections += _remove_orphan(rt, pk, info, instance, writes)
        except Exception as exc:  # noqa: BLE001 - one bad container never stops the pass
            log.warning("orphan removal of %s failed: %s", info.name, type(exc).__name__)
    return corrections


def _uuid_or_none(text: str):
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def _remove_orphan(rt, pk: str, info, instance: Instance | None, writes) -> list[Correction]:
    rt.remove(info.name)
    if instance is not None:
        rt.remove_volume((info.labels or {}).get("clawfleet.volume") or instance.volume_name)
    message = f"Removed container {info.name} of a " + (
        "purged instance (and its volume)" if instance is not None else "unknown instance"
    )
    if instance is not None:
        writes.event(instance, "orphan_removed", message, container=info.name)
    return [Correction(pk, "orphan_removed", message, {"container": info.name})]
