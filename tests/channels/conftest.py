"""The local Telegram Bot API peer for the channel tests (tests/channels/telegram_peer.py).

It listens on 127.0.0.1 (the control plane's getMe check) and on the test network's gateway
(the tenant container, through `channels.telegram.apiRoot`), on a free port. The egress policy
allows that port on the gateway the way the mock LLM's is allowed (tests/fleet_fixtures.py), and
the settings (this process and, through the environment, the worker started after it) point
Telegram's API roots at it.
"""

from __future__ import annotations

import contextlib
import os

import pytest
from django.conf import settings

from tests.channels.telegram_peer import TelegramPeer
from tests.fleet_fixtures import TEST_NETWORK


@pytest.fixture(scope="session")
def telegram_peer_process():
    peer = TelegramPeer(["127.0.0.1"]).start()
    yield peer
    peer.stop()


@pytest.fixture
def telegram_peer(telegram_peer_process, settings):
    """The peer for unit and API tests (the control plane's check only)."""
    settings.FLEET_TELEGRAM_API_ROOT = telegram_peer_process.url_for("127.0.0.1")
    return telegram_peer_process


@pytest.fixture(scope="module")
def telegram_peer_for_containers(docker_runtime, mock_llm, celery_worker_process):
    """The peer reachable from the tenant containers. The session's worker reads its settings
    from the environment when it starts and may have started long before (other suites): it is
    restarted with the peer's addresses and the egress allowance for its port."""
    from instances import egress

    gateway = docker_runtime.network_gateway(TEST_NETWORK)
    peer = TelegramPeer(["127.0.0.1", gateway]).start()
    saved_allow = list(settings.FLEET_EGRESS_ALLOW)
    saved = {
        k: getattr(settings, k)
        for k in ("FLEET_TELEGRAM_API_ROOT", "FLEET_TELEGRAM_INSTANCE_API_ROOT")
    }
    values = {
        "FLEET_TELEGRAM_API_ROOT": peer.url_for("127.0.0.1"),
        "FLEET_TELEGRAM_INSTANCE_API_ROOT": peer.url_for(gateway),
    }
    for key, value in values.items():
        setattr(settings, key, value)
        os.environ[key] = value
    settings.FLEET_EGRESS_ALLOW = [*settings.FLEET_EGRESS_ALLOW, f"gateway:{peer.port}"]
    egress.install(TEST_NETWORK, runtime=docker_runtime)
    celery_worker_process.restart(
        **values, FLEET_EGRESS_ALLOW=",".join(settings.FLEET_EGRESS_ALLOW)
    )
    yield peer
    peer.stop()
    for key, value in saved.items():
        setattr(settings, key, value)
        os.environ.pop(key, None)
    settings.FLEET_EGRESS_ALLOW = saved_allow
    with contextlib.suppress(Exception):
        egress.install(TEST_NETWORK, runtime=docker_runtime)
    # The worker back as the rest of the session knows it (its firewall re-check would keep
    # allowing the peer's port otherwise).
    celery_worker_process.restart(
        **{key: (value or "") for key, value in saved.items()},
        FLEET_EGRESS_ALLOW=",".join(saved_allow),
    )
