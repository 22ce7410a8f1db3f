"""One adapter module per chat provider: the control plane's token check against the
provider's own API (base URL from settings, so the tests point it at local peers).

Each module has `check_token(token, extra="") -> Identity` raising TokenRejected (the provider
said no: a field error for the customer) or ProviderUnreachable (we could not ask)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Identity:
    bot_id: str
    name: str


class TokenRejected(Exception):
    """The provider refused the token; the message names the problem, never the token."""


class ProviderUnreachable(Exception):
    """The provider's API did not answer."""


def check_token(kind: str, token: str, extra: str = "") -> Identity:
    from . import discord, slack, telegram

    modules = {"telegram": telegram, "discord": discord, "slack": slack}
    if kind not in modules:
        raise TokenRejected(f"Unknown channel kind {kind!r}.")
    return modules[kind].check_token(token, extra)
