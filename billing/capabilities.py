"""What billing asks the apps above it for, through fleet.hooks (never by importing them).

billing sits below instances and sessions_mgmt in the app chain (docs/architecture.md): it may
not import them, yet it counts instances against a plan, pauses and resumes them, bills their
compute time and prices their sessions' tokens. Each of those is one hook listed in
fleet.hooks.HOOKS; instances/billing_hooks.py and sessions_mgmt/billing_hooks.py register the
functions from their AppConfig.ready(). This module is the only place billing runs them, one
typed function per hook, so billing's code reads `capabilities.pause(instance, reason=...)`.

An instance handed back by a hook is a model object of the instances app: billing reads only
`pk`, `organization_id` and `name` from it, and stores it through its own foreign keys.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from fleet import hooks


def _provided(name: str, **kwargs) -> Any:
    """The answer of the app that provides `name`; a missing provider is a configuration error
    (an unregistered hook must never read as "no instances", "nothing ran" or "paused")."""
    if not hooks.registered(name):
        raise ImproperlyConfigured(f"no installed app provides the hook {name!r}")
    return hooks.first(name, **kwargs)


def instances(organization_id: int, *, include_deleted: bool = False):
    """The organization's instances by name, a queryset: by default those that exist for the
    customer (not deleted), for choice fields; with include_deleted, every one it ever had (its
    past costs stay readable), for "is this instance id one of theirs"."""
    return _provided(
        "billing.instances", organization_id=organization_id, include_deleted=include_deleted
    )


def instance_count(organization_id: int, *, exclude_instance_id=None) -> int:
    """How many instances the organization's plan counts (without the one being resized)."""
    return _provided(
        "billing.instance_count",
        organization_id=organization_id,
        exclude_instance_id=exclude_instance_id,
    )


def pausable(organization_id: int) -> list:
    """The organization's instances meant to run and up (or trying to be), by name."""
    return list(_provided("billing.pausable", organization_id=organization_id))


def pause(instance, *, reason: str):
    """Back the instance up, then stop it (an operation of the instances app); raises if the
    instance cannot be paused now."""
    return _provided("billing.pause", instance=instance, reason=reason)


def resume(instance) -> bool:
    """Start an instance billing paused. False while the pause itself is still in flight (ask
    again later); True when it was resumed or there is nothing left to resume."""
    return bool(_provided("billing.resume", instance=instance))


def compute_seconds(start: dt.datetime, end: dt.datetime) -> dict:
    """{instance_id: (organization_id, billable seconds in [start, end))} for every instance that
    existed in the window, from its recorded state transitions."""
    return _provided("billing.compute_seconds", start=start, end=end)


def snapshot_sessions(day: dt.date, start: dt.datetime, end: dt.datetime) -> None:
    """Ask the session mirror to record its sessions' token totals for `day` (through
    billing.services.usage.session_usage_record)."""
    _provided("billing.session_usage", day=day, start=start, end=end)
