"""Fixtures for the dashboard tests: alice's instance and operations, clients per person."""

import pytest
from django.test import Client
from django.utils import timezone

from instances import placement
from instances.models import Instance, InstanceEvent, Operation
from tests.fleet_fixtures import make_entitled


def _client(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def charlie_client(charlie):
    return _client(charlie)


@pytest.fixture
def victor_client(victor):
    return _client(victor)


@pytest.fixture
def bob_client(bob):
    return _client(bob)


@pytest.fixture
def alice_plan(alice_org):
    return make_entitled(alice_org)


def make_instance(org, name, *, port, status=Instance.Status.RUNNING, **fields):
    host = placement.ensure_local_host()
    return Instance.objects.create(
        organization=org,
        name=name,
        openclaw_version="2026.9.6",
        status=status,
        health=Instance.Health.HEALTHY if status == Instance.Status.RUNNING else "unknown",
        host=host,
        host_port=port,
        provider=Instance.Provider.CUSTOM,
        model_name="mock-model",
        model_base_url="http://127.0.0.1:9/v1",
        gateway_token="gw-secret-token-of-alice",
        provider_api_key="sk-alice-provider-key",
        running_since=timezone.now(),
        **fields,
    )


def make_operation(instance, kind=Operation.Kind.DEPLOY, state=Operation.State.SUCCEEDED, **kw):
    now = timezone.now().isoformat()
    steps = kw.pop(
        "steps",
        [
            {"name": "Create volume", "state": "done", "started_at": now, "finished_at": now},
            {"name": "Start container", "state": "done", "started_at": now, "finished_at": now},
        ],
    )
    return Operation.objects.create(
        instance=instance,
        organization=instance.organization,
        kind=kind,
        state=state,
        steps=steps,
        started_at=timezone.now(),
        finished_at=None if state in Operation.ACTIVE_STATES else timezone.now(),
        **kw,
    )


@pytest.fixture
def alice_instance(alice_org, alice_plan):
    instance = make_instance(alice_org, "alice-bot", port=19188, client_name="Acme Dental")
    InstanceEvent.objects.create(instance=instance, kind="health", message="Healthy again")
    return instance


@pytest.fixture
def alice_op(alice_instance):
    return make_operation(alice_instance)


@pytest.fixture
def charlie_instance(charlie_org):
    make_entitled(charlie_org)
    return make_instance(charlie_org, "charlie-bot", port=19189)
