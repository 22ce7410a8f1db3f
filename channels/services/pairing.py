"""OpenClaw's DM pairing, shown and decided from the dashboard and the API.

With the `pairing` DM policy a new person who messages the bot gets a code and their message is
held until the owner approves (channels/pairing.md in OpenClaw's docs). The gateway RPCs
`channels.pairing.list | approve | dismiss` do the work; each decision is audited here.
Web requests call these through instances.gateway_calls (a bounded slot per organization and a
short timeout), so a slow gateway never stalls the web tier.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import ValidationError
from django.utils.dateparse import parse_datetime

from accounts.services import Actor, audit
from instances import gateway_calls
from instances.openclaw.client import OpenClawError

from ..models import Channel
from . import gateway
from .channels import _require_operate


@dataclass(frozen=True)
class PairingRequest:
    request_id: str
    sender_id: str
    name: str
    created_at: datetime | None
    expires_at: datetime | None


def parse_requests(payload: dict, kind: str, account_id: str) -> list[PairingRequest]:
    rows = []
    for row in payload.get("requests") or []:
        if row.get("channel") != kind or (row.get("accountId") or "default") != account_id:
            continue
        meta = row.get("metadata") or {}
        name = " ".join(
            str(meta[k]) for k in ("firstName", "lastName", "username", "name") if meta.get(k)
        )
        rows.append(
            PairingRequest(
                request_id=str(row.get("requestId") or ""),
                sender_id=str(row.get("senderId") or ""),
                name=name[:100],
                created_at=parse_datetime(str(row.get("createdAt") or "")),
                expires_at=parse_datetime(str(row.get("expiresAt") or "")),
            )
        )
    return [r for r in rows if r.request_id]


def _call(channel: Channel, method: str, params: dict, *, web: bool) -> dict:
    if not web:
        return gateway.client_for(channel.instance).call(method, params)
    with gateway_calls.slot(channel.organization_id):
        timeout = int(max(10, gateway_calls.timeout()))
        return gateway.client_for(channel.instance, timeout=timeout).call(method, params, retries=0)


def pairing_list(channel: Channel, *, web: bool = True) -> list[PairingRequest]:
    """Pending requests of this channel's account (OpenClaw expires them after an hour)."""
    payload = _call(channel, "channels.pairing.list", {}, web=web)
    return parse_requests(payload, channel.kind, channel.account_id)


def _decide(actor: Actor, channel: Channel, request_id: str, *, approve: bool, web: bool) -> dict:
    _require_operate(actor, channel.organization)
    request_id = (request_id or "").strip()
    if not request_id or len(request_id) > 128:
        raise ValidationError({"request_id": ValidationError("Unknown request.", code="invalid")})
    method = "channels.pairing.approve" if approve else "channels.pairing.dismiss"
    params = {"channel": channel.kind, "accountId": channel.account_id, "requestId": request_id}
    try:
        answer = _call(channel, method, params, web=web)
    except OpenClawError as exc:
        if "INVALID_REQUEST" in str(exc) or exc.kind.lower().startswith("invalid"):
            raise ValidationError(
                {"request_id": ValidationError("That request no longer exists.", code="gone")}
            ) from exc
        raise
    audit(
        actor=actor,
        action="channel.pairing_approved" if approve else "channel.pairing_rejected",
        organization=channel.organization,
        target=channel,
        data={"sender": str(answer.get("senderId") or ""), "request": request_id[:16]},
    )
    return answer


def pairing_approve(*, actor: Actor, channel: Channel, request_id: str, web: bool = True) -> dict:
    return _decide(actor, channel, request_id, approve=True, web=web)


def pairing_reject(*, actor: Actor, channel: Channel, request_id: str, web: bool = True) -> dict:
    return _decide(actor, channel, request_id, approve=False, web=web)
