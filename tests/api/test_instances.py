"""Instances and operations: deploy, change, act, follow; secrets never come back."""

from __future__ import annotations

from instances.models import Instance, Operation

from .conftest import API, make_instance, make_operation, token_client

DEPLOY = {
    "name": "acme-support",
    "provider": "openai",
    "model_name": "gpt-4o-mini",
    "api_key": "sk-acme-secret-key",
    "channel_token": "700123456:AAacmeTelegramTokenForTheApiTests0123",
    "external_id": "client-4711",
    "client_name": "Acme Ltd",
}


def test_deploy_answers_202_with_the_queued_deploy_operation(world):
    response = token_client(world.alice_secret).post(f"{API}/instances", DEPLOY, format="json")
    assert response.status_code == 202
    op = response.json()
    assert op["kind"] == "deploy" and op["state"] == "queued" and op["steps"] == []
    assert op["instance_name"] == "acme-support" and op["requested_via"] == "api"
    instance = Instance.objects.get(pk=op["instance"])
    assert instance.organization == world.alice_org
    assert instance.external_id == "client-4711"
    assert instance.provider_api_key == "sk-acme-secret-key"  # stored (encrypted at rest)
    assert "sk-acme-secret-key" not in response.content.decode()
    assert DEPLOY["channel_token"] not in response.content.decode()


def test_deploy_records_who_asked_the_token_not_a_fake_user(world):
    from accounts.models import AuditEvent

    token_client(world.alice_secret).post(f"{API}/instances", DEPLOY, format="json")
    event = AuditEvent.objects.get(action="instance.deployed")
    assert event.actor is None and event.actor_token.name == "alice-full"
    assert event.data["via"] == "api"


def test_no_secret_is_ever_returned_for_an_instance(world):
    api = token_client(world.alice_secret)
    api.post(f"{API}/instances", DEPLOY, format="json")
    pages = [
        api.get(f"{API}/instances").content,
        api.get(f"{API}/instances/{world.running.pk}").content,
        api.patch(
            f"{API}/instances/{world.running.pk}", {"client_name": "Y"}, format="json"
        ).content,
    ]
    for page in pages:
        text = page.decode()
        for secret in ("sk-acme-secret-key", DEPLOY["channel_token"], world.running.gateway_token):
            assert secret not in text
        for key in ('"api_key"', "provider_api_key", "gateway_token", '"channel_token"'):
            assert key not in text
    detail = api.get(f"{API}/instances/{world.running.pk}").json()
    assert detail["has_api_key"] is True


def test_a_duplicate_external_id_is_a_400_external_id_already_used(world):
    api = token_client(world.alice_secret)
    response = api.post(f"{API}/instances", {**DEPLOY, "external_id": "alice-ext-1"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["external_id"] == ["external_id already used"]


def test_the_same_external_id_is_fine_in_another_organization(world):
    response = token_client(world.charlie_secret).post(
        f"{API}/instances", {**DEPLOY, "external_id": "alice-ext-1"}, format="json"
    )
    assert response.status_code == 202


def test_changing_to_a_taken_external_id_is_a_400(world):
    response = token_client(world.alice_secret).patch(
        f"{API}/instances/{world.stopped.pk}", {"external_id": "alice-ext-1"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["external_id"] == ["external_id already used"]


def test_instances_filter_by_external_id_and_status(world):
    api = token_client(world.alice_secret)
    by_ext = api.get(f"{API}/instances?external_id=alice-ext-1").json()["results"]
    assert [i["name"] for i in by_ext] == ["alice-bot"]
    stopped = api.get(f"{API}/instances?status=stopped").json()["results"]
    assert [i["name"] for i in stopped] == ["alice-stopped"]


def test_partial_update_changes_fields_and_answers_the_instance(world):
    response = token_client(world.alice_secret).patch(
        f"{API}/instances/{world.running.pk}",
        {"client_name": "New Client", "session_idle_days": 14},
        format="json",
    )
    assert response.status_code == 200
    body = response.json()
    assert body["client_name"] == "New Client" and body["session_idle_days"] == 14
    assert body["queued_operation"] is None


def test_resizing_a_running_instance_queues_a_restart(world):
    response = token_client(world.alice_secret).patch(
        f"{API}/instances/{world.running.pk}", {"memory_mb": 4096}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["queued_operation"]["kind"] == "restart"


def test_an_empty_patch_is_a_400(world):
    response = token_client(world.alice_secret).patch(
        f"{API}/instances/{world.running.pk}", {}, format="json"
    )
    assert response.status_code == 400


def test_each_action_answers_202_with_its_operation(world):
    api = token_client(world.alice_secret)
    cases = [
        ("start", world.stopped, None),
        ("restart", world.running, None),
    ]
    for verb, instance, body in cases:
        response = api.post(f"{API}/instances/{instance.pk}/{verb}", body, format="json")
        assert response.status_code == 202, response.content
        assert response.json()["kind"] == verb
        assert Operation.objects.get(pk=response.json()["id"]).instance_id == instance.pk


def test_upgrade_answers_202_with_the_versions_in_params(world):
    response = token_client(world.alice_secret).post(
        f"{API}/instances/{world.running.pk}/upgrade", {"version": "2026.9.6"}, format="json"
    )
    assert response.status_code == 202
    assert response.json()["params"] == {"from_version": "2026.9.5", "to_version": "2026.9.6"}


def test_delete_answers_202_with_the_delete_operation(world):
    response = token_client(world.alice_secret).delete(f"{API}/instances/{world.running.pk}")
    assert response.status_code == 202
    assert response.json()["kind"] == "delete"


def test_operations_filter_by_instance_kind_and_state(world):
    other = make_instance(world.alice_org, "other")
    make_operation(other, kind=Operation.Kind.RESTART, state=Operation.State.FAILED)
    api = token_client(world.alice_secret)
    by_instance = api.get(f"{API}/operations?instance={other.pk}").json()["results"]
    assert [o["kind"] for o in by_instance] == ["restart"]
    failed = api.get(f"{API}/operations?state=failed").json()["results"]
    assert [o["instance_name"] for o in failed] == ["other"]
    deploys = api.get(f"{API}/operations?kind=deploy").json()["results"]
    assert [o["id"] for o in deploys] == [str(world.operation.pk)]
    assert "steps" not in deploys[0]


def test_an_operation_shows_its_steps(world):
    body = token_client(world.alice_secret).get(f"{API}/operations/{world.operation.pk}").json()
    assert body["steps"][0]["name"] == "container" and body["steps"][0]["state"] == "done"


def test_operation_params_never_echo_secret_looking_keys(world):
    op = make_operation(world.stopped)
    Operation.objects.filter(pk=op.pk).update(params={"api_key": "x", "version": "1"})
    body = token_client(world.alice_secret).get(f"{API}/operations/{op.pk}").json()
    assert body["params"] == {"version": "1"}


def test_a_viewer_signed_in_reads_but_cannot_act(world, victor, client):
    client.force_login(victor)
    assert client.get(f"{API}/instances").status_code == 200
    response = client.post(f"{API}/instances/{world.running.pk}/stop")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def test_a_member_signed_in_may_act_as_their_role_allows(world, bob, client):
    client.force_login(bob)
    response = client.post(f"{API}/instances/{world.running.pk}/stop")
    assert response.status_code == 202
    op = Operation.objects.get(pk=response.json()["id"])
    assert op.requested_by == bob and op.requested_via == "api"
