"""The one HTTP helper the provider adapters share (requests, bounded, never logging tokens)."""

from __future__ import annotations

import requests
from django.conf import settings

from . import ProviderUnreachable


def call(method: str, url: str, *, what: str, **kwargs) -> tuple[int, dict]:
    try:
        response = requests.request(
            method, url, timeout=settings.FLEET_CHANNEL_CHECK_TIMEOUT, **kwargs
        )
    except requests.RequestException as exc:
        raise ProviderUnreachable(f"{what} did not answer ({type(exc).__name__}).") from exc
    try:
        payload = response.json()
    except ValueError:
        payload = {}
    return response.status_code, payload if isinstance(payload, dict) else {}
