"""The one module that sends outgoing webhook requests (requests, short timeouts, no redirects,
the response body read up to a cap). Nothing else in the project posts to a customer's URL."""

from __future__ import annotations

import time
from dataclasses import dataclass

import requests
from django.conf import settings

from . import rules

RESPONSE_CAP = 4096  # bytes of the response body read (and at most 500 characters kept)
USER_AGENT = "Clawfleet-Webhooks/1"


@dataclass(frozen=True)
class Answer:
    status_code: int | None
    error: str
    excerpt: str
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post(url: str, body: bytes, headers: dict[str, str]) -> Answer:
    """POST `body` to `url`. Never raises: a refused address, a timeout, a connection error or
    a redirect is an Answer with an error (a redirect is not followed: its target was never
    checked against the address rule)."""
    started = time.monotonic()

    def answer(status=None, error="", excerpt=""):
        elapsed = int((time.monotonic() - started) * 1000)
        return Answer(status, error[:300], excerpt[:500], elapsed)

    refused = rules.url_refused(url)  # again at send time: names may now resolve elsewhere
    if refused:
        return answer(error=f"Not sent: the URL {refused}.")
    try:
        with requests.post(
            url,
            data=body,
            headers={"User-Agent": USER_AGENT, "Content-Type": "application/json", **headers},
            timeout=(settings.WEBHOOK_CONNECT_TIMEOUT, settings.WEBHOOK_READ_TIMEOUT),
            allow_redirects=False,
            stream=True,
        ) as response:
            raw = response.raw.read(RESPONSE_CAP, decode_content=True) or b""
            excerpt = raw.decode("utf-8", "replace")
            if 300 <= response.status_code < 400:
                return answer(
                    response.status_code, "Redirects are not followed; use the final URL.", excerpt
                )
            return answer(response.status_code, "", excerpt)
    except requests.Timeout:
        return answer(error="The receiver did not answer in time.")
    except requests.ConnectionError:
        return answer(error="Could not connect to the receiver.")
    except requests.RequestException as exc:
        return answer(error=f"The request failed ({type(exc).__name__}).")
