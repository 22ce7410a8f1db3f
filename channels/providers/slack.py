"""Slack's Web API: `auth.test` checks a bot token (xoxb-), and an app-level token (xapp-) for
socket mode is checked by its shape (settings.FLEET_SLACK_API_ROOT)."""

from __future__ import annotations

from django.conf import settings

from . import Identity, ProviderUnreachable, TokenRejected
from ._http import call


def check_token(token: str, extra: str = "") -> Identity:
    token = (token or "").strip()
    if not token.startswith("xoxb-"):
        raise TokenRejected("That is not a Slack bot token (it starts with xoxb-).")
    if extra and not extra.startswith("xapp-"):
        raise TokenRejected("The app-level token for socket mode starts with xapp-.")
    root = settings.FLEET_SLACK_API_ROOT.rstrip("/")
    status, payload = call(
        "POST", f"{root}/auth.test", what="Slack", headers={"Authorization": f"Bearer {token}"}
    )
    if status != 200:
        raise ProviderUnreachable(f"Slack answered HTTP {status}; try again.")
    if not payload.get("ok"):
        raise TokenRejected(
            f"Slack refused this bot token ({payload.get('error') or 'no reason'})."
        )
    name = str(payload.get("user") or payload.get("team") or "")
    return Identity(bot_id=str(payload.get("user_id") or payload.get("bot_id") or ""), name=name)
