"""Fixtures for webhooks and notification emails: the loopback receiver, and a real Celery
worker (on the maintenance queue the delivery tasks use) started for the worker scenarios
without the Docker engine (nothing here starts a container)."""

from __future__ import annotations

import json
import os

import pytest
from django.conf import settings

from tests.fleet_fixtures import (
    BROKER_PREFIX,
    WorkerProcess,
    _configure_producer,
    _database_url,
)

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
def webhook_worker(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real `celery -A fleet worker` on the test database, with a short back-off (0.5 s
    base) so that "500 three times, then 200" takes seconds, loopback receivers allowed."""
    from django.db import connection

    options = {"visibility_timeout": 3600, "global_keyprefix": BROKER_PREFIX}
    _configure_producer(options)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "fleet.settings",
        "DATABASE_URL": _database_url(connection.settings_dict),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_BROKER_TRANSPORT_OPTIONS": json.dumps(options),
        "CACHE_URL": settings.CACHES["default"]["LOCATION"],
        "FIELD_ENCRYPTION_KEYS": ",".join(settings.FIELD_ENCRYPTION_KEYS),
        "SECRET_KEY": settings.SECRET_KEY,
        "WEBHOOK_ALLOW_LOOPBACK": "true",
        "WEBHOOK_RETRY_BASE_SECONDS": "0.5",
        "PYTHONUNBUFFERED": "1",
    }
    worker = WorkerProcess(env, tmp_path_factory.mktemp("worker") / "celery-worker.log")
    worker.start()
    yield worker
    worker.stop()
