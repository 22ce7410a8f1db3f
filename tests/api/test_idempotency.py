"""Idempotency-Key: a retried POST with the same key returns the first answer, acting once."""

from __future__ import annotations

from instances.models import Instance, Operation

from .conftest import API, token_client
from .test_instances import DEPLOY


def post(api, path, body, key):
    return api.post(API + path, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_a_retried_deploy_with_the_same_key_returns_the_same_operation_once(world):
    api = token_client(world.alice_secret)
    first = post(api, "/instances", DEPLOY, "deploy-1")
    again = post(api, "/instances", DEPLOY, "deploy-1")
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Instance.objects.filter(name="acme-support").count() == 1
    assert Operation.objects.filter(kind="deploy", instance__name="acme-support").count() == 1


def test_the_key_is_per_organization(world, make_token):
    alice = post(token_client(world.alice_secret), "/instances", DEPLOY, "same-key")
    charlie = post(token_client(world.charlie_secret), "/instances", DEPLOY, "same-key")
    assert alice.status_code == charlie.status_code == 202
    assert alice.json()["instance"] != charlie.json()["instance"]
    # Another token of the same organization shares the organization's keys.
    _, other = make_token(world.alice_org)
    replay = post(token_client(other), "/instances", DEPLOY, "same-key")
    assert replay.json()["id"] == alice.json()["id"]


def test_the_same_key_with_another_body_is_a_409(world):
    api = token_client(world.alice_secret)
    post(api, "/instances", DEPLOY, "k-1")
    response = post(api, "/instances", {**DEPLOY, "name": "other"}, "k-1")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_reused"


def test_a_retried_action_returns_the_first_operation_instead_of_a_409(world):
    api = token_client(world.alice_secret)
    path = f"/instances/{world.running.pk}/restart"
    first = post(api, path, None, "restart-1")
    again = post(api, path, None, "restart-1")
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    # Without the key, the second request meets the first operation: a 409.
    assert api.post(API + path).status_code == 409


def test_a_failed_request_is_not_remembered(world):
    api = token_client(world.alice_secret)
    bad = post(api, "/instances", {**DEPLOY, "name": "Bad Name"}, "k-2")
    assert bad.status_code == 400
    good = post(api, "/instances", {**DEPLOY, "name": "Bad Name"}, "k-2")
    assert good.status_code == 400 and "Idempotent-Replayed" not in good


def test_without_a_key_each_post_acts(world):
    api = token_client(world.alice_secret)
    one = api.post(f"{API}/tokens", {"name": "a", "scopes": ["read"]}, format="json")
    two = api.post(f"{API}/tokens", {"name": "a", "scopes": ["read"]}, format="json")
    assert one.json()["id"] != two.json()["id"]


def test_a_replayed_token_create_does_not_show_the_secret_again(world):
    api = token_client(world.alice_secret)
    body = {"name": "ci", "scopes": ["read"]}
    first = post(api, "/tokens", body, "tok-1")
    again = post(api, "/tokens", body, "tok-1")
    assert first.status_code == again.status_code == 201
    assert first.json()["secret"].startswith("cf_live_")
    assert again.json()["secret"] is None
    assert again.json()["id"] == first.json()["id"]


def test_a_key_with_spaces_is_a_400(world):
    response = post(token_client(world.alice_secret), "/instances", DEPLOY, "has space")
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["error"]["fields"]
