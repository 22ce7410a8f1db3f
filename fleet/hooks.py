"""Hooks: how a lower app tells higher apps that something happened, without importing them.

The apps form a chain (accounts <- billing <- instances <- sessions_mgmt <- channels <-
notifications, docs/architecture.md):
an app imports only apps below it. When instances needs sessions_mgmt to act (take a backup
before an upgrade, mirror sessions after an operation) it runs a hook by name, and
sessions_mgmt registers the function from its AppConfig.ready(), as wagtail's hooks do.

    register("instance.ready", sync_after_ready)          # in AppConfig.ready()
    results = run("instance.ready", instance=instance)    # in the lower app

`run` calls every registered function in registration order and returns their results; an
exception propagates (a hook that may fail quietly catches its own errors). `first` returns the
first result that is not None, for hooks that provide a capability (e.g. "backup.create").
Every hook name a lower app runs is listed in HOOKS with what it passes, so the contract is
written down in one place.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

HOOKS = {
    # instances runs these:
    "instance.transition": "instance, from_status, to_status, reason: after each status change",
    "instance.ready": "instance, operation: an operation left the gateway running and ready",
    "operation.finished": "operation: an operation ended (succeeded or failed)",
    "backup.create": "instance, kind, operation -> a backup object or None: take one now",
    "instance.channel_requested": "instance, actor, kind, token, field: a deploy came with a "
    "channel token (channels checks it, raising ValidationError on `field`, and records it)",
    "instance.usage": "instance_ids, start, end -> {instance_id: running seconds}",
    # billing runs these (billing/capabilities.py), provided by <app>/billing_hooks.py:
    "billing.instances": "organization_id, include_deleted -> queryset of its instances by name",
    "billing.instance_count": "organization_id, exclude_instance_id -> instances a plan counts",
    "billing.pausable": "organization_id -> its instances meant to run and up, by name",
    "billing.pause": "instance, reason -> operation: back up, then stop (raises if refused)",
    "billing.resume": "instance -> False while its pause is in flight, else True (resumed)",
    "billing.compute_seconds": "start, end -> {instance_id: (organization_id, billable secs)}",
    "billing.session_usage": "day, start, end -> None: record sessions' token totals for day",
    # sessions_mgmt and billing run these; notifications listens (issue 16):
    "backup.missing": "instance, last_backup_at, hours: no good backup for `hours` hours",
    "budget.threshold": "organization, budget, instance, percent, spent, cap: 80 or 100 % reached",
    # channels runs this (issue 14); notifications listens (issue 16):
    "channel.health_changed": "channel, healthy, reason: a channel broke or recovered",
}

_registry: dict[str, list[Callable[..., Any]]] = defaultdict(list)


def register(name: str, func: Callable[..., Any]) -> None:
    if name not in HOOKS:
        raise KeyError(f"unknown hook {name!r}: list it in fleet.hooks.HOOKS")
    if func not in _registry[name]:
        _registry[name].append(func)


def unregister(name: str, func: Callable[..., Any]) -> None:
    if func in _registry.get(name, []):
        _registry[name].remove(func)


def run(name: str, **kwargs) -> list[Any]:
    if name not in HOOKS:
        raise KeyError(f"unknown hook {name!r}")
    return [func(**kwargs) for func in list(_registry.get(name, []))]


def first(name: str, **kwargs) -> Any:
    for result in run(name, **kwargs):
        if result is not None:
            return result
    return None


def registered(name: str) -> list[Callable[..., Any]]:
    return list(_registry.get(name, []))


@contextmanager
def only(name: str, *funcs: Callable[..., Any]):
    """Within the block, exactly `funcs` answer hook `name` (tests stand in for a higher app
    this way: the hooks are the contract between the apps)."""
    if name not in HOOKS:
        raise KeyError(f"unknown hook {name!r}")
    saved = list(_registry.get(name, []))
    _registry[name] = list(funcs)
    try:
        yield
    finally:
        _registry[name] = saved
