"""Reaching an instance from outside (docs/edge.md): rotate its gateway token, issue one-time
Control UI sign-in links. The one implementation the dashboard and the API call.

- ``gateway_token_rotate``: a new token, hot-applied to the running gateway with OpenClaw's own
  ``config.patch`` RPC (``gateway.auth.token`` reloads without a restart while the auth mode stays
  ``token``), then stored (encrypted). The old token is refused from the answer on (we wait until
  the gateway refuses it). A stopped instance gets the token in its config at its next start.
- ``sign_in_link_create``: OpenClaw's one-time owner link (``openclaw dashboard --json``: a
  bootstrap token, single use, about 10 minutes), rewritten to the instance's public origin. The
  raw gateway token the command also prints is never kept, logged or shown. Opening the link
  leaves that browser with its own paired device credential; a second use is refused by OpenClaw.

Both are audited (``instance.gateway_token_rotated``, ``instance.sign_in_link_issued``), never
with a secret in the audit data.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts.services import Actor, audit

from . import edge
from .models import Instance
from .operations import OperationInProgress, active_operation

log = logging.getLogger(__name__)
S = Instance.Status
APPLY_TIMEOUT = 60


class GatewayUnavailable(Exception):
    """The gateway could not take the change now (not running, or it did not answer)."""


def _client(instance: Instance):
    from .openclaw.client import OpenClawClient

    return OpenClawClient.for_instance(instance, timeout=APPLY_TIMEOUT)


def _refuses(instance: Instance, token: str) -> bool:
    """Whether the gateway answers 401 to `token` (its loopback port, this host)."""
    try:
        resp = requests.get(
            f"http://127.0.0.1:{instance.host_port}/v1/models",
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
    except requests.RequestException:
        return False
    return resp.status_code in (401, 403)


def _busy(instance: Instance) -> None:
    op = active_operation(instance)
    if op is not None:
        raise OperationInProgress(op)


def gateway_token_rotate(*, actor: Actor, instance: Instance) -> str:
    """A new gateway token, applied without a restart; returns it (shown once)."""
    if instance.status in edge.GONE:
        raise ValidationError("This instance is deleted.", code="invalid_state")
    _busy(instance)
    old = instance.gateway_token
    new = secrets.token_urlsafe(32)
    running = instance.status == S.RUNNING
    if running:
        client = _client(instance)
        try:
            current = client.call("config.get", {})
            base_hash = current.get("hash") or (current.get("payload") or {}).get("hash")
            client.call(
                "config.patch",
                {"raw": json.dumps({"gateway": {"auth": {"token": new}}}), "baseHash": base_hash},
            )
        except Exception as exc:
            log.warning("token rotation of %s not applied: %s", instance.pk, type(exc).__name__)
            raise GatewayUnavailable(
                "The gateway did not take the new token; the old one still works. Try again."
            ) from exc
    Instance.objects.filter(pk=instance.pk).update(gateway_token=new, updated_at=timezone.now())
    instance.gateway_token = new
    if running:
        deadline = time.monotonic() + 15
        while not _refuses(instance, old) and time.monotonic() < deadline:
            time.sleep(0.2)
    audit(
        actor=actor,
        action="instance.gateway_token_rotated",
        organization=instance.organization,
        target=instance,
        data={"applied": "hot" if running else "at next start"},
    )
    return new


@dataclass
class SignInLink:
    url: str
    expires_at: datetime


def rewrite_link(browser_url: str, origin: str) -> str:
    """OpenClaw's loopback link, pointing at the public origin (page and WebSocket)."""
    parts = urlsplit(browser_url)
    fragment = dict(parse_qsl(parts.fragment, keep_blank_values=True))
    host = urlsplit(origin).netloc
    fragment["gatewayUrl"] = f"wss://{host}"
    fragment.pop("token", None)  # never the raw gateway token
    path = parts.path or "/"
    return f"{origin}{path}#{urlencode(fragment, quote_via=quote)}"


def sign_in_link_create(*, actor: Actor, instance: Instance, via: str = "dashboard") -> SignInLink:
    """A one-time link that opens the Control UI at the public address, signed in."""
    if instance.status != S.RUNNING:
        raise ValidationError("The assistant is not running; start it first.", code="invalid_state")
    client = _client(instance)
    try:
        payload = client.cli_json(["dashboard", "--json"], what="dashboard")
    except Exception as exc:
        log.warning("sign-in link for %s failed: %s", instance.pk, type(exc).__name__)
        raise GatewayUnavailable("The assistant did not issue a sign-in link. Try again.") from exc
    browser_url = payload.get("browserUrl") or ""
    if "bootstrapToken=" not in browser_url:
        raise GatewayUnavailable("The assistant did not issue a sign-in link. Try again.")
    expires_ms = payload.get("browserBootstrapExpiresAtMs")
    if expires_ms:
        expires_at = datetime.fromtimestamp(int(expires_ms) / 1000, tz=UTC)
    else:
        expires_at = timezone.now() + timedelta(seconds=settings.FLEET_SIGN_IN_LINK_SECONDS)
    url = rewrite_link(browser_url, edge.public_origin(instance))
    audit(
        actor=actor,
        action="instance.sign_in_link_issued",
        organization=instance.organization,
        target=instance,
        data={"via": via, "expires_at": expires_at.isoformat()},
    )
    return SignInLink(url=url, expires_at=expires_at)
