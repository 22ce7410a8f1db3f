"""Fixtures for webhooks and notification emails: the loopback receiver, and the session's real
Celery worker (tests/fleet_fixtures.py; the delivery tasks run on its maintenance queue).
"""

from __future__ import annotations

import pytest

from .receiver import Receiver


@pytest.fixture(autouse=True)
def _loopback_receivers_allowed(settings):
    """The tests' receiver listens on loopback: development and tests allow it (production
    refuses it; see test_a_loopback_or_private_url_is_a_field_error_in_production)."""
    settings.WEBHOOK_ALLOW_LOOPBACK = True


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


@pytest.fixture(scope="module")
def webhook_worker(celery_worker_process):
    """The session's real worker (tests/fleet_fixtures.py), which allows loopback receivers and
    backs off from 0.5 s, so that "500 three times, then 200" takes seconds. Never a second
    worker: it would share the queues and take deliveries meant for this one."""
    return celery_worker_process
