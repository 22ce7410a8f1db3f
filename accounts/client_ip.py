"""The client's IP address, the same way for audit rows, token last-use and every rate limit.

Behind a reverse proxy REMOTE_ADDR is the proxy. settings.TRUSTED_CLIENT_IP_HEADER names a header
the proxy overwrites with the client's address (X-Real-IP, CF-Connecting-IP); otherwise
settings.TRUSTED_PROXY_COUNT says how many proxies of ours append to X-Forwarded-For, and the
address is read that many entries from the right (what a client writes on the left is never
trusted). With neither set, X-Forwarded-For is ignored and REMOTE_ADDR is the answer.

allauth (sign-in rate limits, through accounts.adapters) and DRF (throttles, through
fleet.api) call this function, so there is one rule.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings


def _clean(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip()
    if value.startswith("[") and "]" in value:  # "[v6]:port"
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # "v4:port"
        value = value.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def client_ip(request) -> str | None:
    """The client's address for a Django or DRF request (None only without any usable one)."""
    meta = request.META
    header = getattr(settings, "TRUSTED_CLIENT_IP_HEADER", "")
    if header:
        meta_key = "HTTP_" + header.upper().replace("-", "_")
        found = _clean(meta.get(meta_key))
        if found:
            return found
    else:
        count = getattr(settings, "TRUSTED_PROXY_COUNT", 0)
        forwarded = meta.get("HTTP_X_FORWARDED_FOR", "")
        if count > 0 and forwarded:
            hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
            if hops:
                # Fewer entries than proxies: every entry was written by one of ours.
                found = _clean(hops[-min(count, len(hops))])
                if found:
                    return found
    return _clean(meta.get("REMOTE_ADDR"))
