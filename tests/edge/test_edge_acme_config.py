"""The production TLS policy (FLEET_EDGE_TLS=acme) is a configuration Caddy accepts: on-demand
certificates, each asked of Django's /edge/ask first. Loaded into a real Caddy of its own; no
certificate is requested (no handshake happens), so nothing leaves the machine."""

from __future__ import annotations

import pytest

from instances import edge

from .proxy import CaddyProcess


@pytest.fixture
def acme_proxy(tmp_path, settings):
    caddy = CaddyProcess(tmp_path).start()
    settings.FLEET_EDGE_ADMIN_URL = caddy.admin_url
    settings.FLEET_EDGE_LISTEN = f"127.0.0.1:{caddy.https_port}"
    settings.FLEET_EDGE_HTTP_PORT = caddy.http_port
    settings.FLEET_EDGE_TLS = "acme"
    settings.FLEET_EDGE_ASK_URL = "http://127.0.0.1:8000/edge/ask"
    settings.FLEET_EDGE_ACME_EMAIL = "ops@example.com"
    yield caddy
    caddy.stop()


@pytest.mark.django_db
def test_caddy_accepts_the_production_policy_with_the_ask_endpoint(acme_proxy):
    assert edge.ensure_server() is True
    tls = edge._admin("GET", "/config/apps/tls").json()
    assert tls["automation"]["on_demand"] == {"ask": "http://127.0.0.1:8000/edge/ask"}
    policy = tls["automation"]["policies"][0]
    assert policy["on_demand"] is True
    assert policy["issuers"] == [{"module": "acme", "email": "ops@example.com"}]
    assert edge.ensure_server() is False  # loaded once
