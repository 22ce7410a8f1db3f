"""The signature scheme of outgoing webhooks (docs/notifications.md has the receiver's side).

    Clawfleet-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>

The timestamp is signed with the body, so a receiver refuses old replays (5 minutes is what the
documented snippet allows); the delivery id header lets it drop duplicates.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
TOLERANCE_SECONDS = 300


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    message = str(int(timestamp)).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def header(secret: str, body: bytes, timestamp: int | None = None) -> tuple[int, str]:
    ts = int(time.time() if timestamp is None else timestamp)
    return ts, f"t={ts},v1={sign(secret, ts, body)}"


def verify(secret: str, body: bytes, signature_header: str, *, now=None) -> bool:
    """What a receiver does (the documented snippet, in Python)."""
    parts = dict(p.split("=", 1) for p in signature_header.split(",") if "=" in p)
    try:
        ts = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > TOLERANCE_SECONDS:
        return False
    return hmac.compare_digest(sign(secret, ts, body), parts.get("v1", ""))
