"""The warm pool's slot state machine against the in-memory runtime and a stand-in gateway (the
config RPCs and the token check are OpenClaw's: tests/instances/test_warm_pool_docker.py runs
them for real)."""

from __future__ import annotations

import copy
import hashlib
import json

import pytest

from accounts.services import SYSTEM
from fleet import hooks
from instances import operations, placement, pool, services, specs
from instances.models import Instance, Operation, PoolSlot
from instances.openclaw import config as oc
from instances.openclaw.client import OpenClawError

pytestmark = pytest.mark.django_db
St = PoolSlot.State
DEPLOY = {
    "provider": "custom",
    "model_name": "mock-model",
    "api_key": "tenant-key-1234",
    "model_base_url": "http://llm.example.test/v1",
}


def _merge(target: dict, patch: dict) -> dict:
    """RFC 7396 merge patch, as OpenClaw's config.patch applies it."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


class FakeGateways:
    """Stand-in for the gateways in the fake runtime's containers: one config per port, the
    token it holds decides what `_token_accepted` answers."""

    def __init__(self):
        self.configs: dict[int, dict] = {}
        self.patches: list[dict] = []
        self.fail_patch: Exception | None = None
        self.after_patch = None  # called once the patch landed (a kill right after it)

    def config(self, port: int) -> dict:
        return self.configs.setdefault(port, {})

    def token_accepted(self, port, token, timeout=5.0):
        held = oc.get_path(self.configs.get(int(port), {}), "gateway.auth.token")
        return None if held is None else held == token

    def snapshot(self, port: int) -> dict:
        blob = json.dumps(self.config(port), sort_keys=True).encode()
        digest = "h:" + hashlib.sha256(blob).hexdigest()[:16]
        return {
            "hash": digest,
            "parsed": oc.redact(self.config(port), ["gateway.auth.token"]),
            "configRevisionHash": digest,
            "appliedConfigHash": digest,
        }

    def client(self, target, timeout=90):
        gateways, port = self, int(target.host_port)

        class Client:
            def call(self, method, params=None, *, timeout=None, retries=2):
                if method == "config.get":
                    return gateways.snapshot(port)
                assert method == "config.patch"
                if gateways.fail_patch is not None:
                    raise gateways.fail_patch
                assert params["baseHash"] == gateways.snapshot(port)["hash"]
                patch = json.loads(params["raw"])
                gateways.patches.append(patch)
                _merge(gateways.config(port), patch)
                if gateways.after_patch is not None:
                    hook, gateways.after_patch = gateways.after_patch, None
                    hook()
                return {"hash": gateways.snapshot(port)["hash"], "changedPaths": list(patch)}

            def run(self, argv, *, timeout=None, env=None):
                return 0, b"", b""

        return Client()


@pytest.fixture
def gateways(fake_runtime, monkeypatch, settings):
    settings.FLEET_WARM_POOL_SIZE = 1
    gw = FakeGateways()
    monkeypatch.setattr(pool, "_token_accepted", gw.token_accepted)
    monkeypatch.setattr(pool, "_client", gw.client)
    real_boot = pool.boot

    def boot(slot):
        real_boot(slot)
        gw.configs[slot.host_port] = specs.pool_config_for(slot)

    monkeypatch.setattr(pool, "boot", boot)
    with hooks.only("instance.ready"), hooks.only("operation.finished"):
        yield gw


@pytest.fixture
def org(alice_org, entitled_org):
    entitled_org(alice_org)
    return alice_org


def host():
    return placement.ensure_local_host()


def ready_pool() -> PoolSlot:
    """One refill pass boots the slot, the next sees it answer."""
    pool.refill_host(host())
    pool.refill_host(host())
    slot = PoolSlot.objects.get(state__in=PoolSlot.POOLED)
    assert slot.state == St.READY
    return slot


def deploy(org, name="bot", **fields):
    op = services.instance_deploy(actor=SYSTEM, organization=org, name=name, **{**DEPLOY, **fields})
    return operations.run_operation(op.pk)


def pool_step(op: Operation) -> dict:
    return next(s for s in op.steps if s["name"] == "pool")


def test_a_refill_boots_a_pool_gateway_named_for_a_future_instance_without_tenant_data(
    gateways, fake_runtime
):
    pool.refill_host(host())
    slot = PoolSlot.objects.get()
    assert slot.state == St.BOOTING
    info = fake_runtime.inspect(f"clawfleet-{slot.pk.hex}")
    assert info.running
    assert info.labels[specs.POOL_LABEL] == "true"
    assert info.labels[specs.INSTANCE_LABEL] == str(slot.pk)
    assert info.labels[specs.ORG_LABEL] == specs.POOL_ORG_PLACEHOLDER
    config = fake_runtime.configs[f"clawfleet-{slot.pk.hex}-state"]
    assert "models" not in config and "model" not in config["agents"]["defaults"]
    assert config["gateway"]["auth"]["token"] == slot.pool_token
    assert slot.pool_token not in json.dumps(info.labels)

    pool.refill_host(host())
    slot.refresh_from_db()
    assert slot.state == St.READY
    # A full pool boots nothing more.
    assert pool.refill_host(host())["booted"] == 0
    assert PoolSlot.objects.count() == 1


def test_pool_gateways_take_memory_and_ports_from_placement(gateways, settings):
    settings.FLEET_WARM_POOL_SIZE = 2
    h = host()
    before, _ = placement.host_usage(h)
    pool.refill_host(h)
    slots = list(PoolSlot.objects.all())
    assert len(slots) == 2
    after, count = placement.host_usage(h)
    assert after - before == sum(s.memory_mb for s in slots) and count == 0
    free = placement.free_ports(h)
    assert not {s.host_port for s in slots} & {next(free) for _ in range(5)}


def test_a_deploy_claims_the_ready_gateway_and_runs_on_the_tenants_config(gateways, org):
    slot = ready_pool()
    op = deploy(org)
    assert op.state == "succeeded", op.error_detail
    instance = Instance.objects.get(pk=op.instance_id)
    assert instance.pk == slot.pk and instance.host_port == slot.host_port
    assert instance.status == "running"
    assert pool_step(op)["detail"].startswith("claimed warm gateway")
    assert [s["name"] for s in op.steps] == ["place", "pool", "config", "verify"]
    slot.refresh_from_db()
    assert slot.state == St.CLAIMED
    # The tenant's token works, the pool's does not; the key and model are the tenant's.
    assert gateways.token_accepted(slot.host_port, instance.gateway_token) is True
    assert gateways.token_accepted(slot.host_port, slot.pool_token) is False
    provider = gateways.config(slot.host_port)["models"]["providers"]["custom"]
    assert provider["apiKey"] == "tenant-key-1234"
    assert oc.get_path(gateways.config(slot.host_port), "agents.defaults.model.primary") == (
        "custom/mock-model"
    )
    # The next refill boots a replacement.
    pool.refill_host(host())
    assert PoolSlot.objects.filter(state=St.BOOTING).count() == 1


def test_an_empty_pool_falls_back_to_a_cold_deploy_and_says_so(gateways, org):
    op = deploy(org)
    assert op.state == "succeeded", op.error_detail
    assert pool_step(op)["detail"] == "cold deploy (pool empty)"
    assert "health" in [s["name"] for s in op.steps]


def test_with_the_pool_off_a_deploy_has_no_pool_step(gateways, org, settings):
    settings.FLEET_WARM_POOL_SIZE = 0
    op = deploy(org)
    assert op.state == "succeeded"
    assert "pool" not in [s["name"] for s in op.steps]


def test_a_deploy_of_another_size_is_cold_and_leaves_the_gateway_in_the_pool(gateways, org):
    slot = ready_pool()
    op = deploy(org, memory_mb=1024)
    assert op.state == "succeeded"
    assert pool_step(op)["detail"] == "cold deploy (pool empty)"
    assert op.instance_id != slot.pk
    slot.refresh_from_db()
    assert slot.state == St.READY


def test_a_failed_claim_retires_the_gateway_and_deploys_cold_in_the_same_operation(
    gateways, org, fake_runtime
):
    slot = ready_pool()
    gateways.fail_patch = OpenClawError("config.patch: exit 1 invalid")
    op = deploy(org)
    assert op.state == "succeeded", op.error_detail
    assert pool_step(op)["detail"].startswith("cold deploy (claim failed: config.patch failed")
    slot.refresh_from_db()
    assert slot.state == St.RETIRED and slot.reason.startswith("claim failed")
    instance = Instance.objects.get(pk=op.instance_id)
    assert instance.pk == slot.pk and instance.status == "running"
    # The cold deploy's container has the instance's own labels and config, not the pool's.
    info = fake_runtime.inspect(instance.container_name)
    assert specs.POOL_LABEL not in info.labels
    config = fake_runtime.configs[instance.volume_name]
    assert config["gateway"]["auth"]["token"] == instance.gateway_token
    # A later refill pass does not remove the instance's objects as a retired slot's.
    pool.refill_host(host())
    assert fake_runtime.inspect(instance.container_name) is not None


class WorkerKilled(BaseException):
    """Not an Exception: nothing in the handler catches it, as nothing survives a kill -9."""


@pytest.mark.parametrize("when", ["before the patch", "after the patch"])
def test_a_claim_interrupted_mid_way_finishes_on_the_retry(gateways, org, monkeypatch, when):
    slot = ready_pool()
    op = services.instance_deploy(actor=SYSTEM, organization=org, name="bot", **DEPLOY)
    killed = {"done": False}

    def kill():
        killed["done"] = True
        raise WorkerKilled

    if when == "after the patch":
        gateways.after_patch = kill
    else:
        real = pool._patch
        monkeypatch.setattr(pool, "_patch", lambda *a: kill() if not killed["done"] else real(*a))
    with pytest.raises(WorkerKilled):
        operations.run_operation(op.pk)
    slot.refresh_from_db()
    op.refresh_from_db()
    assert slot.state == St.CLAIMING and op.state == "running"

    op = operations.run_operation(op.pk)
    assert op.state == "succeeded", op.error_detail
    slot.refresh_from_db()
    assert slot.state == St.CLAIMED
    instance = Instance.objects.get(pk=slot.pk)
    assert instance.status == "running"
    assert gateways.token_accepted(slot.host_port, instance.gateway_token) is True
    assert gateways.token_accepted(slot.host_port, slot.pool_token) is False
    assert len(gateways.patches) == 1


def test_two_deploys_never_take_one_gateway(gateways, org):
    slot = ready_pool()
    first = services.instance_deploy(actor=SYSTEM, organization=org, name="one", **DEPLOY)
    second = services.instance_deploy(actor=SYSTEM, organization=org, name="two", **DEPLOY)
    assert first.instance_id == slot.pk and second.instance_id != slot.pk
    assert PoolSlot.objects.get(pk=slot.pk).state == St.CLAIMING


def test_a_rolled_back_deploy_leaves_the_gateway_ready(gateways, org):
    slot = ready_pool()
    services.instance_deploy(actor=SYSTEM, organization=org, name="bot", **DEPLOY)
    with pytest.raises(Exception):  # noqa: B017 - the name is taken: nothing is created
        services.instance_deploy(actor=SYSTEM, organization=org, name="bot", **DEPLOY)
    assert PoolSlot.objects.filter(state=St.CLAIMING).count() == 1
    assert PoolSlot.objects.get(pk=slot.pk).state == St.CLAIMING


def test_a_dead_pool_gateway_is_retired_and_replaced(gateways, fake_runtime):
    slot = ready_pool()
    fake_runtime.crash(slot.container_name)
    pool.refill_host(host())
    slot.refresh_from_db()
    assert slot.state == St.RETIRED and "exited" in slot.reason
    assert fake_runtime.inspect(slot.container_name) is None
    assert not fake_runtime.volume_exists(slot.volume_name)
    assert PoolSlot.objects.filter(state=St.BOOTING).count() == 1


def test_turning_the_pool_off_retires_its_gateways(gateways, fake_runtime, settings):
    slot = ready_pool()
    settings.FLEET_WARM_POOL_SIZE = 0
    pool.refill_host(host())
    slot.refresh_from_db()
    assert slot.state == St.RETIRED
    assert fake_runtime.inspect(slot.container_name) is None


def test_the_pool_size_follows_the_last_hours_deploys_up_to_the_cap(gateways, org, settings):
    settings.FLEET_WARM_POOL_MAX = 3
    h = host()
    assert pool.pool_size(h) == 1
    for name in ("a", "b", "c", "d"):
        services.instance_deploy(actor=SYSTEM, organization=org, name=name, **DEPLOY)
    assert pool.pool_size(h) == 3


def test_the_overview_counts_pool_size_claims_and_fallbacks(gateways, org):
    ready_pool()
    deploy(org, name="warm")
    deploy(org, name="cold")
    row = next(r for r in pool.overview() if r["host"].name == placement.LOCAL_HOST_NAME)
    assert row["claims"] == 1
    assert row["fallbacks_empty"] == 1
    assert row["fallbacks_failed"] == 0
