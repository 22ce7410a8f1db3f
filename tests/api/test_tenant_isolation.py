"""Every endpoint × {own token, another organization's token, a read-only token, a revoked
token}: the right status, and nothing of alice's in any answer to charlie."""

from __future__ import annotations

import json

import pytest

from .conftest import (
    API,
    CHANNEL_TOKEN_VALUE,
    GATEWAY_TOKEN_VALUE,
    SECRET_KEY_VALUE,
    token_client,
)

# (id, method, path template, body, own, read-only, charlie)
# own: the status for alice's full-scope token; read-only: for alice's read token;
# charlie: for charlie's full-scope token on the same path ("list" paths answer him with his own
# data, detail paths of alice's objects are a 404).
ENDPOINTS = [
    ("organization", "get", "/organization", None, 200, 200, 200),
    ("members-list", "get", "/members", None, 200, 200, 200),
    ("members-detail", "get", "/members/{membership}", None, 200, 200, 404),
    ("instances-list", "get", "/instances", None, 200, 200, 200),
    ("instances-detail", "get", "/instances/{running}", None, 200, 200, 404),
    (
        "instances-create",
        "post",
        "/instances",
        {"name": "new-bot", "provider": "openai", "model_name": "gpt-4o-mini", "api_key": "sk-x"},
        202,
        403,
        202,
    ),
    ("instances-update", "patch", "/instances/{running}", {"client_name": "X"}, 200, 403, 404),
    ("instances-delete", "delete", "/instances/{running}", None, 202, 403, 404),
    ("instances-start", "post", "/instances/{stopped}/start", None, 202, 403, 404),
    ("instances-stop", "post", "/instances/{running}/stop", None, 202, 403, 404),
    ("instances-restart", "post", "/instances/{running}/restart", None, 202, 403, 404),
    (
        "instances-upgrade",
        "post",
        "/instances/{running}/upgrade",
        {"version": "2026.9.6"},
        202,
        403,
        404,
    ),
    ("operations-list", "get", "/operations", None, 200, 200, 200),
    ("operations-detail", "get", "/operations/{operation}", None, 200, 200, 404),
    ("sessions-list", "get", "/sessions", None, 200, 200, 200),
    ("sessions-detail", "get", "/sessions/{session}", None, 200, 200, 404),
    ("backups-list", "get", "/backups", None, 200, 200, 200),
    ("backups-detail", "get", "/backups/{backup}", None, 200, 200, 404),
    ("backups-create", "post", "/backups", {"instance": "{running}"}, 202, 403, 404),
    ("backups-restore", "post", "/backups/{backup}/restore", None, 202, 403, 404),
    ("usage", "get", "/usage", None, 200, 403, 200),
    ("usage-instance", "get", "/usage?instance={running}", None, 200, 403, 404),
    ("tokens-list", "get", "/tokens", None, 200, 403, 200),
    ("tokens-create", "post", "/tokens", {"name": "ci", "scopes": ["read"]}, 201, 403, 201),
    ("tokens-detail", "get", "/tokens/{token}", None, 200, 403, 404),
    ("tokens-delete", "delete", "/tokens/{token}", None, 204, 403, 404),
    ("tokens-revoke", "post", "/tokens/{token}/revoke", None, 200, 403, 404),
    ("audit-list", "get", "/audit-events", None, 200, 403, 200),
    ("audit-detail", "get", "/audit-events/{audit}", None, 200, 403, 404),
]

CALLERS = ["own", "read_only", "charlie", "revoked"]


def _fill(value, world):
    ids = {
        "membership": world.membership.pk,
        "running": world.running.pk,
        "stopped": world.stopped.pk,
        "operation": world.operation.pk,
        "session": world.session.pk,
        "backup": world.backup.pk,
        "token": world.extra_token.pk,
        "audit": world.audit.pk,
    }
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: _fill(v, world) for k, v in value.items()}
    return value


def _call(client, method, path, body):
    kwargs = {"format": "json"} if body is not None else {}
    if body is not None:
        kwargs["data"] = body
    return getattr(client, method)(API + path, **kwargs)


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(
    "name,method,path,body,own,read_only,charlie", ENDPOINTS, ids=[e[0] for e in ENDPOINTS]
)
def test_every_endpoint_answers_each_caller_with_the_right_status_and_only_their_data(
    world, transcript_stub, caller, name, method, path, body, own, read_only, charlie
):
    secret, expected = {
        "own": (world.alice_secret, own),
        "read_only": (world.alice_read_secret, read_only),
        "charlie": (world.charlie_secret, charlie),
        "revoked": (world.alice_revoked_secret, 401),
    }[caller]
    response = _call(token_client(secret), method, _fill(path, world), _fill(body, world))
    assert response.status_code == expected, response.content[:500]

    text = response.content.decode()
    for secret_value in (SECRET_KEY_VALUE, GATEWAY_TOKEN_VALUE, CHANNEL_TOKEN_VALUE):
        assert secret_value not in text
    if caller == "charlie":
        for marker in world.alice_markers():
            assert marker not in text, f"{marker!r} leaked to charlie in {name}"
    if response.status_code >= 400:
        error = json.loads(text)["error"]
        assert set(error) <= {"code", "message", "fields"} and error["code"] and error["message"]
        assert (
            error["code"]
            == {
                400: "invalid",
                401: "unauthenticated",
                403: "forbidden",
                404: "not_found",
            }[response.status_code]
        )


def test_charlie_lists_show_his_objects_and_none_of_alices(world, transcript_stub):
    api = token_client(world.charlie_secret)
    names = [i["name"] for i in api.get(f"{API}/instances").json()["results"]]
    assert names == ["charlie-bot"]
    sessions = api.get(f"{API}/sessions").json()["results"]
    assert [s["session_key"] for s in sessions] == ["agent:main:telegram:dm:charlie-chat"]
    assert api.get(f"{API}/organization").json()["slug"] == "charlie-co"
    assert api.get(f"{API}/usage").json()["instances"] == []
