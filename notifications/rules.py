"""Validation rules and messages for webhooks, read by the services, the forms and the API."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from django.conf import settings

from instances import egress

from . import events

URL_MESSAGE = "Enter an http:// or https:// URL of your own server on the internet."
EVENTS_MESSAGE = "Choose at least one event."
UNKNOWN_EVENT_MESSAGE = "Unknown event type: {name}."
MAX_ENDPOINTS = 20
MAX_ENDPOINTS_MESSAGE = f"An organization has at most {MAX_ENDPOINTS} webhook endpoints."


def _loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def url_refused(url: str) -> str | None:
    """Why a webhook URL may not be used, or None: the rule of custom model endpoints
    (instances.egress.refused_reason: not ours, not private, loopback, link-local or reserved,
    unless FLEET_EGRESS_ALLOW lists it); WEBHOOK_ALLOW_LOOPBACK lets development and the tests
    use a receiver on this machine's loopback."""
    try:
        host = (urlsplit(str(url).strip()).hostname or "").rstrip(".").lower()
    except ValueError:
        return "is not a valid URL"
    if settings.WEBHOOK_ALLOW_LOOPBACK and _loopback(host):
        return None
    reason = egress.refused_reason(url)
    if reason and ("loopback" in reason or "localhost" in reason):
        return "points at a loopback address: webhooks go to your own server on the internet"
    return reason


def event_errors(names) -> list[str]:
    if not isinstance(names, (list, tuple)) or not names:
        return [EVENTS_MESSAGE]
    return [UNKNOWN_EVENT_MESSAGE.format(name=n) for n in names if n not in events.WEBHOOK_EVENTS]
