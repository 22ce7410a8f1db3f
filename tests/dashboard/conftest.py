"""Fixtures for the dashboard tests: alice's instance and operations, clients per person."""

import pytest
from django.test import Client

from instances.models import InstanceEvent
from tests.factories import InstanceFactory, OperationFactory
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


# What the dashboard tests' instances carry: secrets a page must never show unasked.
SECRETS = {
    "gateway_token": "gw-secret-token-of-alice",
    "provider_api_key": "sk-alice-provider-key",
    "model_base_url": "http://127.0.0.1:9/v1",
    "model_name": "mock-model",
}
STEPS = [
    {"name": "Create volume", "state": "done"},
    {"name": "Start container", "state": "done"},
]


@pytest.fixture
def alice_instance(alice_org, alice_plan):
    instance = InstanceFactory(
        organization=alice_org,
        name="alice-bot",
        local=True,
        host_port=19188,
        client_name="Acme Dental",
        **SECRETS,
    )
    InstanceEvent.objects.create(instance=instance, kind="health", message="Healthy again")
    return instance


@pytest.fixture
def alice_op(alice_instance):
    return OperationFactory(instance=alice_instance, steps=STEPS)


@pytest.fixture
def charlie_instance(charlie_org):
    make_entitled(charlie_org)
    return InstanceFactory(
        organization=charlie_org, name="charlie-bot", local=True, host_port=19189, **SECRETS
    )
