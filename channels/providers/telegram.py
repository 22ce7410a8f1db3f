"""Telegram's Bot API: `getMe` checks a bot token (settings.FLEET_TELEGRAM_API_ROOT)."""

from __future__ import annotations

import re

from django.conf import settings

from . import Identity, ProviderUnreachable, TokenRejected
from ._http import call

TOKEN_SHAPE = re.compile(r"^\d{5,20}:[A-Za-z0-9_-]{30,80}$")


def check_token(token: str, extra: str = "") -> Identity:
    token = (token or "").strip()
    if not TOKEN_SHAPE.match(token):
        raise TokenRejected(
            "That is not a Telegram bot token: BotFather's tokens look like 123456789:AA... "
            "(digits, a colon, then 35 or so letters)."
        )
    root = settings.FLEET_TELEGRAM_API_ROOT.rstrip("/")
    status, payload = call("GET", f"{root}/bot{token}/getMe", what="Telegram")
    if status in (401, 404) or (payload and payload.get("ok") is False and status < 500):
        reason = str(payload.get("description") or f"HTTP {status}")
        raise TokenRejected(f"Telegram refused this bot token ({reason}).")
    if status != 200 or not payload.get("ok"):
        raise ProviderUnreachable(f"Telegram answered HTTP {status}; try again.")
    bot = payload.get("result") or {}
    if not bot.get("is_bot", True):
        raise TokenRejected("Telegram says this token is not a bot's.")
    return Identity(bot_id=str(bot.get("id", "")), name=str(bot.get("username") or ""))
