"""Discord's REST API: `GET /users/@me` with `Authorization: Bot <token>` checks a bot token
(settings.FLEET_DISCORD_API_ROOT, the versioned API root)."""

from __future__ import annotations

from django.conf import settings

from . import Identity, ProviderUnreachable, TokenRejected
from ._http import call


def check_token(token: str, extra: str = "") -> Identity:
    token = (token or "").strip()
    if len(token) < 50 or token.count(".") != 2:
        raise TokenRejected(
            "That is not a Discord bot token (three dot-separated parts, from the Developer "
            "Portal's Bot page)."
        )
    root = settings.FLEET_DISCORD_API_ROOT.rstrip("/")
    status, payload = call(
        "GET", f"{root}/users/@me", what="Discord", headers={"Authorization": f"Bot {token}"}
    )
    if status in (401, 403):
        reason = str(payload.get("message") or f"HTTP {status}")
        raise TokenRejected(f"Discord refused this bot token ({reason}).")
    if status != 200:
        raise ProviderUnreachable(f"Discord answered HTTP {status}; try again.")
    if not payload.get("bot"):
        raise TokenRejected("Discord says this token is not a bot's.")
    return Identity(bot_id=str(payload.get("id", "")), name=str(payload.get("username") or ""))
