"""Placement: which Host runs a new instance, and on which loopback port.

A host has room when the memory reserved by its live instances plus the request fits in
`Host.memory_mb` and it runs fewer than `Host.max_instances`. "Live" here means every instance
that may run again (everything except deleted and purged): a stopped or paused instance keeps its
reservation, so resuming it never fails for lack of memory.

Warm pool (instances/pool.py): a pool gateway's memory counts like an instance's (not its count:
it is no instance yet), its port is taken, and a deploy whose version and size match a ready
pool gateway is placed where that gateway runs, with its id and port (pool.reserve).

Ports: a deleted instance keeps its port during the grace period (its container can come back);
purging releases it. The partial unique index `instance_port_unique_per_host` is the real guard
against two placements picking the same port at once: we retry with the next free port on an
IntegrityError. Placement also locks the Host row (SELECT ... FOR UPDATE) so that concurrent
deploys on one host are serialized and the capacity check cannot be raced.
"""

from __future__ import annotations

import socket

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, Sum

from .models import Host, Instance, PoolSlot

LOCAL_HOST_NAME = "local"
NOT_RESERVING = (Instance.Status.DELETED, Instance.Status.PURGED)
PORT_RETRIES = 20


class NoCapacity(ValidationError):
    """No active host has room for the request (a ValidationError: the customer sees it)."""


def port_range() -> tuple[int, int]:
    raw = str(settings.FLEET_PORT_RANGE).replace(":", "-")
    start, _, end = raw.partition("-")
    return int(start), int(end or start)


def ensure_local_host() -> Host:
    """The default Host for this machine's engine (settings.FLEET_DOCKER_URL). Idempotent."""
    start, end = port_range()
    host, _ = Host.objects.get_or_create(
        name=LOCAL_HOST_NAME,
        defaults={
            "base_url": settings.FLEET_DOCKER_URL,
            "port_range_start": start,
            "port_range_end": end,
        },
    )
    return host


def host_usage(host: Host, *, exclude_instance_id=None) -> tuple[int, int]:
    """(reserved memory in MB, number of live instances) on a host. The memory includes the
    host's pool gateways (booting or ready; a claimed one is its instance's)."""
    qs = Instance.objects.filter(host=host).exclude(status__in=NOT_RESERVING)
    if exclude_instance_id is not None:
        qs = qs.exclude(pk=exclude_instance_id)
    agg = qs.aggregate(memory=Sum("memory_mb"), count=Count("pk"))
    pooled = PoolSlot.objects.filter(host=host, state__in=PoolSlot.POOLED).aggregate(
        memory=Sum("memory_mb")
    )
    memory = int(agg["memory"] or 0) + int(pooled["memory"] or 0)
    return memory, int(agg["count"] or 0)


def has_room(host: Host, memory_mb: int, *, exclude_instance_id=None) -> bool:
    """Also asked before booting a pool gateway: one only pays off while an instance may
    still be added (the count check), and its memory is reserved like an instance's."""
    memory, count = host_usage(host, exclude_instance_id=exclude_instance_id)
    if exclude_instance_id is None and count + 1 > host.max_instances:
        return False
    return memory + int(memory_mb) <= host.memory_mb


def is_local(host: Host) -> bool:
    return host.base_url.startswith("unix://")


def _bindable(port: int) -> bool:
    """Nothing else on this machine listens on 127.0.0.1:port (another control plane's
    container, a developer's process): only checked for the local engine."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(host: Host):
    used = set(
        Instance.objects.filter(host=host, host_port__isnull=False).values_list(
            "host_port", flat=True
        )
    )
    used |= set(
        PoolSlot.objects.filter(
            host=host, state__in=[*PoolSlot.POOLED, PoolSlot.State.CLAIMING]
        ).values_list("host_port", flat=True)
    )
    local = is_local(host)
    for port in range(host.port_range_start, host.port_range_end + 1):
        if port not in used and (not local or _bindable(port)):
            yield port


def _candidate_hosts() -> list[Host]:
    if not Host.objects.exists():
        ensure_local_host()
    hosts = list(Host.objects.select_for_update().filter(is_active=True).order_by("name"))
    # Spread: the host with the most free memory first.
    usage = {h.pk: host_usage(h)[0] for h in hosts}
    return sorted(hosts, key=lambda h: (usage[h.pk] - h.memory_mb, h.name))


@transaction.atomic
def place(instance: Instance) -> Instance:
    """Choose a host and port for `instance` and save it (insert or update). Must run inside
    the caller's transaction. Raises NoCapacity; re-raises other IntegrityErrors (e.g. a name
    that became taken) for the caller to translate.

    A new instance (not saved yet) first tries the warm pool: with a ready pool gateway of its
    version and size it takes that gateway's id, host and port (pool.reserve, which moves the
    gateway to `claiming` in this same transaction: a rollback leaves it ready)."""
    if instance._state.adding:
        from . import pool

        if pool.reserve(instance) is not None:
            instance.save(force_insert=True)
            return instance
    for host in _candidate_hosts():
        if not has_room(host, instance.memory_mb):
            continue
        ports = free_ports(host)
        for _ in range(PORT_RETRIES):
            port = next(ports, None)
            if port is None:
                break
            instance.host, instance.host_port = host, port
            try:
                with transaction.atomic():
                    instance.save()
                return instance
            except IntegrityError as exc:
                if "instance_port_unique_per_host" not in str(exc):
                    instance.host, instance.host_port = None, None
                    raise
                # Another placement took this port since we listed them: try the next one.
                continue
    instance.host, instance.host_port = None, None
    raise NoCapacity(
        {"memory_mb": "No host has room for an instance of this size right now. Try again later."}
    )
