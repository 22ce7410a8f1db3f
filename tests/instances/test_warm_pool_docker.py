"""The warm pool on the real engine, image, mock LLM and worker (issue 18, item 4): a deploy
claims a pre-booted gateway without restarting it, the tenant's key reaches the mock, the pool
token stops working, a restart and an upgrade continue the conversation like any instance's, a
claim cut by kill -9 of the worker is finished by the retry, and a deploy that finds the pool
empty is a cold deploy that says so.
"""

import hashlib
import urllib.error
import urllib.request
import uuid

import pytest

from accounts.services import SYSTEM
from instances import operations, placement, pool, services
from instances.models import Instance, Operation, PoolSlot
from tests.fleet_fixtures import (
    OPERATION_TIMEOUT,
    TEST_NETWORK,
    deploy_and_wait,
    wait_for_operation,
)
from tests.security.helpers import container_ip

from .helpers import chat, containers_of, requests_with, restart_and_continue, wait_until

pytestmark = [
    pytest.mark.docker,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def org(alice_org, entitled_org, mock_prices, fleet_plane):
    entitled_org(alice_org)
    return alice_org


@pytest.fixture
def pool_on(celery_worker_process, settings):
    """A pool of one, in this process (the refill) and in the worker (the deploy's claim); the
    worker gets its old environment back afterwards, so later deploys stay cold."""
    settings.FLEET_WARM_POOL_SIZE = 1
    settings.FLEET_WARM_POOL_MAX = 1
    celery_worker_process.restart(FLEET_WARM_POOL_SIZE="1", FLEET_WARM_POOL_MAX="1")
    yield celery_worker_process
    for name in ("FLEET_WARM_POOL_SIZE", "FLEET_WARM_POOL_MAX"):
        celery_worker_process.env.pop(name, None)
    celery_worker_process.restart()


def _status_with(port: int, token: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - loopback
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _ready_slot(host) -> PoolSlot:
    def ready():
        pool.refill_host(host)
        return PoolSlot.objects.filter(host=host, state=PoolSlot.State.READY).first()

    return wait_until(ready, timeout=240, interval=3, what="a ready pool gateway")


def test_a_deploy_claims_a_warm_gateway_then_an_empty_pool_deploys_cold(
    org, docker_runtime, mock_llm, pool_on
):
    rt = docker_runtime
    host = placement.ensure_local_host()
    slot = _ready_slot(host)
    started = rt.api.inspect_container(slot.container_name)["State"]["StartedAt"]
    assert _status_with(slot.host_port, slot.pool_token) == 200
    # A pool gateway has no provider: it spends no tokens before a claim.
    slot_ip = container_ip(rt, slot.container_name, TEST_NETWORK)
    booted = slot.created_at.timestamp()  # an address can be an earlier container's
    assert not [r for r in mock_llm.requests() if r["client"] == slot_ip and r["time"] >= booted]

    tenant_key = "sk-tenant-" + uuid.uuid4().hex
    instance, op = deploy_and_wait(
        org,
        name="warm",
        base_url=mock_llm.container_url,
        api_key=tenant_key,
        timeout=OPERATION_TIMEOUT,
    )

    pool_steps = [s for s in op.steps if s["name"] == "pool"]
    assert [s.get("pool") for s in pool_steps] == ["claimed"], op.steps
    assert instance.pk == slot.pk and instance.container_name == slot.container_name
    # The same container, never restarted: the claim went through config hot reload.
    assert rt.api.inspect_container(instance.container_name)["State"]["StartedAt"] == started
    slot.refresh_from_db()
    assert slot.state == PoolSlot.State.CLAIMED
    assert (instance.status, instance.health) == ("running", "healthy")

    # The tenant's token works, the pool's no longer does, and the tenant's key reaches the mock.
    assert _status_with(instance.host_port, instance.gateway_token) == 200
    assert _status_with(instance.host_port, slot.pool_token) == 401
    assert chat(instance, "warm hello alpha") == "Mock reply: warm hello alpha"
    (call,) = requests_with(mock_llm, "warm hello alpha")
    assert call["auth_sha256"] == hashlib.sha256(tenant_key.encode()).hexdigest()[:12]

    # A restart of the claimed instance is an instance's restart: the conversation continues.
    restart_and_continue(
        instance, pool_on, mock_llm, "warm again bravo", earlier="warm hello alpha"
    )
    assert _status_with(instance.host_port, slot.pool_token) == 401

    # The pool is empty now (no refill ran): the next deploy is cold and says why.
    cold, op = deploy_and_wait(
        org, name="cold", base_url=mock_llm.container_url, timeout=OPERATION_TIMEOUT
    )
    pool_steps = [s for s in op.steps if s["name"] == "pool"]
    assert [s.get("pool") for s in pool_steps] == ["empty"], op.steps
    assert cold.status == "running"
    assert chat(cold, "cold hello charlie") == "Mock reply: cold hello charlie"


def test_a_claim_cut_by_sigkill_is_finished_by_the_retry_and_the_instance_upgrades_like_any(
    org, docker_runtime, openclaw_image, mock_llm, pool_on, settings
):
    """kill -9 of the worker in the middle of a claim: the retry finds the slot in `claiming`
    and finishes it (fully claimed, never half: the tenant's token works, the pool's does not).
    Then an upgrade of the claimed instance keeps the volume and the conversation, as a cold
    instance's does (tests/instances/test_lifecycle_docker.py)."""
    rt, worker = docker_runtime, pool_on
    settings.FLEET_DEFAULT_VERSION = "2026.9.5"  # the refill runs here: a 2026.9.5 pool
    host = placement.ensure_local_host()
    slot = _ready_slot(host)
    assert slot.openclaw_version == "2026.9.5"

    op = services.instance_deploy(
        actor=SYSTEM,
        organization=org,
        name="cut",
        openclaw_version="2026.9.5",
        provider="custom",
        model_name="mock-model",
        api_key="",
        model_base_url=mock_llm.container_url,
    )

    def claiming():
        op.refresh_from_db()
        return any(s["name"] == "pool" for s in op.steps)

    wait_until(claiming, OPERATION_TIMEOUT, 0.05, "the deploy to start its claim")
    worker.kill9()
    op.refresh_from_db()
    assert op.state == Operation.State.RUNNING, f"the claim ended before the kill: {op.steps}"
    slot.refresh_from_db()
    assert slot.state == PoolSlot.State.CLAIMING

    worker.start()
    wait_until(operations.resume_stranded, 90, 3, "the stranded deploy to be resumed")
    op = wait_for_operation(op, OPERATION_TIMEOUT, worker=worker)
    assert op.state == "succeeded", f"{op.error} / {op.error_detail}"
    assert op.attempts == 2
    instance = Instance.objects.get(pk=op.instance_id)
    slot.refresh_from_db()
    assert (instance.pk, slot.state) == (slot.pk, PoolSlot.State.CLAIMED)
    assert [s.get("pool") for s in op.steps if s["name"] == "pool"][-1] == "claimed", op.steps
    assert _status_with(instance.host_port, instance.gateway_token) == 200
    assert _status_with(instance.host_port, slot.pool_token) == 401
    assert len(containers_of(rt, instance)) == 1
    assert chat(instance, "claimed after a kill echo") == "Mock reply: claimed after a kill echo"

    # Upgrade 2026.9.5 -> 2026.9.6: same volume and hostname, the conversation goes on.
    op = wait_for_operation(
        services.instance_upgrade(actor=SYSTEM, instance=instance, version="2026.9.6"),
        OPERATION_TIMEOUT,
        worker=worker,
    )
    assert op.state == "succeeded", op.error_detail
    instance.refresh_from_db()
    raw = rt.api.inspect_container(instance.container_name)
    assert raw["Config"]["Image"] == openclaw_image["2026.9.6"]
    assert raw["Config"]["Hostname"] == instance.hostname
    assert [m["Name"] for m in raw["Mounts"]] == [instance.volume_name]
    assert _status_with(instance.host_port, slot.pool_token) == 401
    assert chat(instance, "upgraded foxtrot") == "Mock reply: upgraded foxtrot"
    (after,) = requests_with(mock_llm, "upgraded foxtrot")
    assert "claimed after a kill echo" in str(after["body"]["messages"])
