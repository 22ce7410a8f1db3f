"""The edge proxy end to end: a real Caddy (tests/edge/proxy.py), the real engine and image, the
mock LLM and a real Celery worker. One scenario, one instance (each boot costs 15-25 s, 1 GB)."""

from __future__ import annotations

import time

import pytest

from accounts.services import SYSTEM
from instances import edge, public_access, services
from instances.models import Instance
from instances.reconcile import reconcile_host
from sessions_mgmt.models import Session
from tests.fleet_fixtures import OPERATION_TIMEOUT, deploy_and_wait, wait_for_operation

from .client import chat, request

pytestmark = [
    pytest.mark.docker,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def org(alice_org, entitled_org, mock_prices, fleet_plane):
    entitled_org(alice_org)
    return alice_org


def wait_for(predicate, timeout=60, interval=0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def test_the_public_address_follows_the_instance_through_its_life(
    org, charlie_org, docker_runtime, openclaw_image, mock_llm, edge_proxy, celery_worker_process
):
    ctx = edge_proxy.ssl_context()
    instance, _op = deploy_and_wait(
        org,
        name="edge",
        version="2026.9.5",
        base_url=mock_llm.container_url,
        timeout=OPERATION_TIMEOUT,
    )
    url = edge.endpoint_url(instance)
    assert url == f"https://edge-{org.slug}.localhost:{edge_proxy.https_port}"

    # TLS from the proxy's own CA, and a chat completion through it gets the mock's reply.
    answer = chat(url, ctx, instance.gateway_token, "hello through the edge")
    assert answer.status == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == (
        "Mock reply: hello through the edge"
    )
    # ... and the session appears in the mirror.
    from sessions_mgmt.services import mirror

    mirror.sync_instance_sessions(instance=instance, full=True)
    assert Session.objects.filter(instance=instance, session_key__contains="edge-test").exists()

    # Without the token, or with a wrong one: refused by the gateway (through the proxy).
    assert chat(url, ctx, "not-the-token-" * 3, "x").status == 401
    # OpenClaw's admin RPC path never reaches the container, whatever the spelling.
    for path in ("/api/v1/admin/rpc", "/API/v1/admin/rpc", "/api/v1/admin"):
        refused = request(
            url + path,
            ctx,
            method="POST",
            headers={"Authorization": f"Bearer {instance.gateway_token}"},
            body={"method": "config.get", "params": {}},
        )
        assert refused.status == 404, (path, refused.status)
    # An unknown name, or another organization's spelling of this one, reaches no container.
    for host in ("nobody.localhost", f"edge-{charlie_org.slug}.localhost"):
        unknown = request(f"https://{host}:{edge_proxy.https_port}/v1/models", ctx)
        assert unknown.status == 404
        assert "No assistant answers at this address" in unknown.text
    # Another organization's instance name as a Host header on our name's TLS session.
    spoofed = request(
        url + "/v1/models", ctx, headers={"Host": f"edge-{charlie_org.slug}.localhost"}
    )
    assert spoofed.status == 404

    # Upgrade and restore keep the address.
    op = wait_for_operation(
        services.instance_upgrade(actor=SYSTEM, instance=instance, version="2026.9.6"),
        OPERATION_TIMEOUT,
    )
    assert op.state == "succeeded", (op.error, op.steps)
    assert edge.endpoint_url(Instance.objects.get(pk=instance.pk)) == url
    assert chat(url, ctx, instance.gateway_token, "after the upgrade").status == 200
    from sessions_mgmt import services as sessions_services
    from sessions_mgmt.models import Backup

    op = wait_for_operation(
        sessions_services.backup_request(actor=SYSTEM, instance=instance), OPERATION_TIMEOUT
    )
    assert op.state == "succeeded", (op.error, op.steps)
    backup = Backup.objects.filter(instance=instance, state="succeeded").latest("created_at")

    # Rotating the token: the old one is refused through the proxy at once, the new one works,
    # and the container was not restarted. (After the backup: the restore must keep it.)
    started = docker_runtime.inspect(instance.container_name).started_at
    old_token = instance.gateway_token
    new_token = public_access.gateway_token_rotate(actor=SYSTEM, instance=instance)
    assert new_token != old_token
    assert chat(url, ctx, old_token, "old token").status == 401
    assert chat(url, ctx, new_token, "new token").status == 200
    assert docker_runtime.inspect(instance.container_name).started_at == started
    instance.refresh_from_db()
    assert instance.gateway_token == new_token

    op = wait_for_operation(
        sessions_services.restore_request(actor=SYSTEM, instance=instance, backup=backup),
        OPERATION_TIMEOUT,
    )
    assert op.state == "succeeded", (op.error, op.steps)
    assert chat(url, ctx, new_token, "after the restore").status == 200
    assert chat(url, ctx, old_token, "old token after the restore").status == 401
    instance.refresh_from_db()

    # Stop: the branded page with 503; start: it answers again.
    op = wait_for_operation(services.instance_stop(actor=SYSTEM, instance=instance), 180)
    assert op.state == "succeeded", op.error
    stopped = request(url + "/", ctx)
    assert stopped.status == 503 and "is stopped" in stopped.text
    assert chat(url, ctx, new_token, "x").status == 503
    op = wait_for_operation(
        services.instance_start(actor=SYSTEM, instance=instance), OPERATION_TIMEOUT
    )
    assert op.state == "succeeded", op.error
    assert chat(url, ctx, instance.gateway_token, "back again").status == 200

    # The proxy is killed and restarted with an empty config: one reconcile pass restores it.
    edge_proxy.kill()
    edge_proxy.start()
    assert edge.routes() == []
    instance.refresh_from_db()
    reconcile_host(instance.host)
    assert edge.route_id(instance.pk) in {r.get("@id") for r in edge.routes()}
    ctx = edge_proxy.ssl_context()  # the same CA (its storage survived the restart)
    assert chat(url, ctx, instance.gateway_token, "after the proxy restart").status == 200
    # A drifted route (pointing at the wrong place) is repaired too.
    edge._put({**edge.desired_route(instance, "10.255.255.1"), "terminal": True})
    reconcile_host(instance.host)
    assert chat(url, ctx, instance.gateway_token, "after a drift").status == 200

    # Delete: 404, and the name is nobody's.
    op = wait_for_operation(services.instance_delete(actor=SYSTEM, instance=instance), 180)
    assert op.state == "succeeded", op.error
    gone = request(url + "/", ctx)
    assert gone.status == 404
    assert edge.instance_for_host(url.split("//")[1]) is None
    assert Instance.objects.get(pk=instance.pk).edge_label  # kept: never given to another
