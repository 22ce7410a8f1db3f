"""Fixtures every test package shares.

The cast (healthchecks' habit): alice owns org "alice-co", bob is a member of alice's org, and
charlie owns "charlie-co" and must never see anything of alice's (a 404, never a 403).
Fixtures for the real Docker engine, the OpenClaw image, the mock LLM and a Celery worker live
in tests/fleet_fixtures.py.
"""

import importlib
import os

import pytest
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.models import Role
from accounts.services import SYSTEM

from .factories import MembershipFactory, OrganizationFactory, UserFactory, verified

pytest_plugins = [
    "tests.fleet_fixtures",
    "tests.fakes.fixtures",
    "tests.edge.proxy",
    "tests.browser.fixtures",
    "tests.swarm_lab",
]

PASSWORD = "correct-horse-battery"


def _own_cache_prefix_per_xdist_worker() -> None:
    """The xdist workers share the suite's Redis cache, and both databases number their rows
    from 1: a key prefix each (this process and the web and Celery processes it starts), so
    that a rate-limit counter keyed by organization id is never another worker's."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return
    from django.conf import settings

    prefix = f"{settings.CACHES['default'].get('KEY_PREFIX', '')}-{worker}"
    settings.CACHES["default"]["KEY_PREFIX"] = prefix
    os.environ["CACHE_KEY_PREFIX"] = prefix


_own_cache_prefix_per_xdist_worker()

# Rows the data migrations seed (the support group, the plans and model prices). A transactional
# test ends with a flush that empties every table; run serially, pytest-django orders those tests
# last, but under xdist (`make test` runs two workers) a worker may run other tests after one.
MIGRATION_SEEDS = [
    ("accounts.migrations.0002_staff_support_group", "create_support_group"),
    ("billing.migrations.0003_seed_plans_and_prices", "seed"),
    ("billing.migrations.0004_plan_storage_allowances", "seed"),
]


def _flushes_the_database(item) -> bool:
    marker = item.get_closest_marker("django_db")
    if marker and (marker.kwargs.get("transaction") or (marker.args and marker.args[0])):
        return True
    return bool({"transactional_db", "live_server"} & set(getattr(item, "fixturenames", ())))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """After a flushing test's teardown, seed again what the migrations seeded (idempotent)."""
    yield
    # After the last test the session's fixtures, the test database among them, are gone.
    if nextitem is None or not _flushes_the_database(item):
        return
    from django.apps import apps
    from pytest_django.plugin import blocking_manager_key

    with item.config.stash[blocking_manager_key].unblock():
        for module, function in MIGRATION_SEEDS:
            getattr(importlib.import_module(module), function)(apps, None)


@pytest.fixture(autouse=True)
def _no_dns_for_made_up_names(settings):
    """Deploy validation resolves a custom endpoint's host name (instances/egress.py); tests use
    made-up names, and no test may send a DNS query off this machine."""
    settings.FLEET_EGRESS_RESOLVE_NAMES = False


@pytest.fixture(autouse=True)
def _isolated_cache(settings):
    """Each test gets its own cache prefix, so rate-limit counters never leak between tests."""
    import uuid

    settings.CACHES = {
        "default": {**settings.CACHES["default"], "KEY_PREFIX": f"test-{uuid.uuid4().hex}"}
    }


@pytest.fixture
def alice_org(db):
    return OrganizationFactory(name="Alice Co", slug="alice-co")


@pytest.fixture
def charlie_org(db):
    return OrganizationFactory(name="Charlie Co", slug="charlie-co")


@pytest.fixture
def alice(alice_org):
    user = verified(UserFactory(email="alice@example.com"))
    MembershipFactory(user=user, organization=alice_org, role=Role.OWNER)
    return user


@pytest.fixture
def bob(alice_org):
    user = verified(UserFactory(email="bob@example.com"))
    MembershipFactory(user=user, organization=alice_org, role=Role.MEMBER)
    return user


@pytest.fixture
def victor(alice_org):
    """A viewer in alice's organization: may look, may not change anything."""
    user = verified(UserFactory(email="victor@example.com"))
    MembershipFactory(user=user, organization=alice_org, role=Role.VIEWER)
    return user


@pytest.fixture
def charlie(charlie_org):
    user = verified(UserFactory(email="charlie@example.com"))
    MembershipFactory(user=user, organization=charlie_org, role=Role.OWNER)
    return user


def _client_for(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def alice_client(client, alice):
    return _client_for(client, alice)


@pytest.fixture
def make_token(db):
    """make_token(org, scopes=["read"]) -> (ApiToken, secret)."""

    def make(org, scopes=("read", "operate", "billing"), **kwargs):
        return account_services.api_token_create(
            actor=SYSTEM,
            organization=org,
            name=kwargs.pop("name", "test"),
            scopes=list(scopes),
            **kwargs,
        )

    return make


@pytest.fixture
def api_for(make_token):
    """api_for(org, scopes) -> an APIClient authenticated with a fresh token of that org."""

    def make(org, scopes=("read", "operate", "billing")):
        _, secret = make_token(org, scopes)
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        return api

    return make
