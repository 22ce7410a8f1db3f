"""Calls from the web tier into a tenant's gateway, bounded so that no tenant can stall it.

A web request that reads a transcript or a log tail waits for a process inside the tenant's
container, which the tenant controls (OpenClaw agents run shell tools): it can hang, or print
gigabytes. Every such call therefore
- holds one of FLEET_GATEWAY_CALLS_PER_ORG slots of its organization (a Redis counter, so the
  bound holds across web workers and processes); a request beyond that gets GatewayBusy at
  once instead of a thread;
- runs with FLEET_GATEWAY_WEB_TIMEOUT seconds at most (the runtime's exec timeout);
- reads at most FLEET_GATEWAY_MAX_OUTPUT bytes of output (`cap()`).
The web tier has WEB_WORKERS x threads request slots; one tenant can take at most its own few,
for a few seconds each, and every other tenant is served normally.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

from django.conf import settings
from django.core.cache import cache

log = logging.getLogger(__name__)


class GatewayBusy(Exception):
    """Too many calls into this organization's gateways at once."""

    public = "Your assistant is busy answering other requests. Try again in a few seconds."


def _key(organization_id) -> str:
    return f"instances:gateway-calls:{organization_id}"


@contextmanager
def slot(organization_id):
    """Hold one call slot of the organization for the duration of the block."""
    key = _key(organization_id)
    # The counter expires on its own, so a web worker killed mid-call never leaks a slot for
    # longer than a few call timeouts.
    cache.add(key, 0, timeout=int(settings.FLEET_GATEWAY_WEB_TIMEOUT * 4) + 1)
    try:
        held = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=int(settings.FLEET_GATEWAY_WEB_TIMEOUT * 4) + 1)
        held = 1
    try:
        if held > settings.FLEET_GATEWAY_CALLS_PER_ORG:
            raise GatewayBusy()
        yield
    finally:
        try:
            cache.decr(key)
        except ValueError:
            log.debug("gateway call counter of %s expired while held", organization_id)


def timeout() -> float:
    return float(settings.FLEET_GATEWAY_WEB_TIMEOUT)


def cap(text: str | bytes, limit: int | None = None) -> str:
    """At most FLEET_GATEWAY_MAX_OUTPUT bytes of a gateway's output, marked when cut."""
    limit = limit or settings.FLEET_GATEWAY_MAX_OUTPUT
    data = text.encode() if isinstance(text, str) else text
    if len(data) <= limit:
        return data.decode(errors="replace")
    return data[-limit:].decode(errors="replace") + "\n[... cut: output larger than the limit]"
