"""Billing fixtures: a real localstripe for the Stripe SDK, a recording server for what localstripe
lacks (Checkout, Portal, meter events), Stripe-signed webhook payloads, and a recorder for tasks.

Every billing test points the SDK at localstripe (never at api.stripe.com)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

WEBHOOK_SECRET = "whsec_billing_tests"
SECRET_KEY = "sk_test_billing_tests"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _localstripe_bin() -> str:
    candidate = Path(sys.executable).with_name("localstripe")
    return str(candidate) if candidate.exists() else (shutil.which("localstripe") or "localstripe")


@pytest.fixture(scope="session")
def localstripe():
    """A localstripe process on a free loopback port for the whole session; its base URL."""
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="localstripe-")
    log = open(os.path.join(workdir, "localstripe.log"), "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [_localstripe_bin(), "--port", str(port), "--from-scratch"],
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            req = urllib.request.Request(
                f"{base}/v1/customers", headers={"Authorization": f"Bearer {SECRET_KEY}"}
            )
            urllib.request.urlopen(req, timeout=1).read()
            break
        except (urllib.error.URLError, ConnectionError, OSError):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"localstripe did not start (see {workdir}/localstripe.log)")
            time.sleep(0.1)
    yield base
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(autouse=True)
def _stripe_settings(settings, localstripe):
    settings.STRIPE_API_BASE = localstripe
    settings.STRIPE_SECRET_KEY = SECRET_KEY
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_WEBHOOK_TOLERANCE = 300
    settings.BILLING_GRACE_DAYS = 7
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


@pytest.fixture
def enqueued(monkeypatch):
    """Record billing tasks queued with .delay() instead of sending them to the broker; the
    tests then call the task functions directly (never the eager mode)."""
    from billing import tasks

    calls: dict[str, list] = {"process_stripe_event": [], "resume_after_payment": []}
    for name in calls:
        task = getattr(tasks, name)
        monkeypatch.setattr(task, "delay", lambda *a, _n=name: calls[_n].append(a[0]))
    return calls


# --- Stripe-signed webhooks ------------------------------------------------------------------


def sign(payload: str, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """The Stripe-Signature header, computed exactly like Stripe does."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


_seq = iter(range(1, 1_000_000))


def make_event(type_: str, obj: dict, *, created: int | None = None, event_id: str = "") -> dict:
    return {
        "id": event_id or f"evt_test_{next(_seq)}_{int(time.time() * 1000)}",
        "object": "event",
        "type": type_,
        "created": int(time.time()) if created is None else created,
        "api_version": "2026-10-28.endive",
        "livemode": False,
        "data": {"object": obj},
    }


@pytest.fixture
def post_event(client):
    """post_event(event_dict, secret=..., timestamp=...) -> the webhook response."""

    def post(event: dict, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None):
        payload = json.dumps(event)
        return client.post(
            "/billing/webhook/",
            data=payload,
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE=sign(payload, secret, timestamp),
        )

    return post


# --- a recording Stripe for what localstripe lacks --------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    requests: list  # set per server

    def log_message(self, *args):  # keep test output quiet
        pass

    def _reply(self, status: int, body: dict):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode() if length else ""
        entry = {
            "method": self.command,
            "path": self.path.split("?")[0],
            "params": dict(parse_qsl(raw, keep_blank_values=True)),
            "raw": raw,
            "idempotency_key": self.headers.get("Idempotency-Key", ""),
            "authorization": self.headers.get("Authorization", ""),
            "stripe_version": self.headers.get("Stripe-Version", ""),
        }
        self.server.recorded.append(entry)  # type: ignore[attr-defined]
        return entry

    def do_GET(self):
        entry = self._record()
        if entry["path"].startswith("/v1/coupons/"):
            return self._reply(
                404, {"error": {"type": "invalid_request_error", "message": "No such coupon"}}
            )
        if entry["path"].startswith("/v1/customers/"):
            cid = entry["path"].rsplit("/", 1)[1]
            return self._reply(200, {"id": cid, "object": "customer"})
        return self._reply(404, {"error": {"type": "invalid_request_error", "message": "nope"}})

    def do_POST(self):
        entry = self._record()
        path, p = entry["path"], entry["params"]
        if path == "/v1/customers":
            return self._reply(200, {"id": "cus_recorded", "object": "customer"})
        if path == "/v1/coupons":
            return self._reply(200, {"id": p.get("id"), "object": "coupon"})
        if path == "/v1/checkout/sessions":
            return self._reply(
                200,
                {
                    "id": "cs_test_recorded",
                    "object": "checkout.session",
                    "url": "https://checkout.stripe.test/c/pay/cs_test_recorded",
                },
            )
        if path == "/v1/billing_portal/sessions":
            return self._reply(
                200,
                {
                    "id": "bps_recorded",
                    "object": "billing_portal.session",
                    "url": "https://billing.stripe.test/p/session/recorded",
                },
            )
        if path == "/v1/billing/meter_events":
            return self._reply(
                200,
                {
                    "object": "billing.meter_event",
                    "event_name": p.get("event_name"),
                    "identifier": p.get("identifier"),
                },
            )
        return self._reply(404, {"error": {"type": "invalid_request_error", "message": "nope"}})


@pytest.fixture
def recording_stripe(settings):
    """Point the SDK at a tiny server that records every request; returns the request list."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.recorded = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{server.server_address[1]}"
    yield server.recorded  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def live_subscription(org, plan, *, metadata: dict | None = None) -> dict:
    """A real subscription in localstripe for `org` on `plan` (its Stripe price made first),
    paid with a test card: what a completed checkout leaves in Stripe."""
    from billing import stripe_api
    from billing.services import subscriptions

    c = stripe_api.client()
    if not any(p.id == plan.stripe_price_id for p in c.v1.plans.list().data):
        c.v1.plans.create(
            {
                "id": plan.stripe_price_id,
                "amount": plan.monthly_price_cents,
                "currency": "usd",
                "interval": "month",
                "product": {"name": plan.name},
            }
        )
    customer_id = subscriptions.customer_ensure(organization=org)
    pm = c.v1.payment_methods.create(
        {
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2031, "cvc": "123"},
        }
    )
    c.v1.payment_methods.attach(pm.id, {"customer": customer_id})
    c.v1.customers.update(customer_id, {"invoice_settings": {"default_payment_method": pm.id}})
    return c.v1.subscriptions.create(
        {
            "customer": customer_id,
            "items": [{"plan": plan.stripe_price_id}],
            "metadata": {"organization_id": str(org.pk), **(metadata or {})},
        }
    ).to_dict()
