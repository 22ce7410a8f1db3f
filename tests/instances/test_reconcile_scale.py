"""The reconcile loop's cost at fleet scale (issue 17), against the in-memory engine: a pass over
an unchanged fleet costs the same queries at 3 and 300 instances and writes nothing; N
corrections cost a bounded number of writes; Docker's healthcheck spares the probes; warm-pool
gateways are left to the pool. bench/reconcile.py measures the same passes at 1,000."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from instances import specs
from instances.models import Host, Instance, InstanceEvent
from instances.reconcile import reconcile_host

pytestmark = pytest.mark.django_db

WRITES = ("INSERT", "UPDATE", "DELETE")
BASE_PORT = 20000


def make_fleet(org, host, count: int, *, first: int = 0, status: str = "running") -> list:
    """`count` instances on `host`, as a deploy leaves them (running, healthy, just seen)."""
    now = timezone.now()
    return Instance.objects.bulk_create(
        [
            Instance(
                organization=org,
                name=f"bot-{n:04d}",
                openclaw_version="2026.9.6",
                status=status,
                health=Instance.Health.HEALTHY,
                host=host,
                host_port=BASE_PORT + n,
                provider="custom",
                model_name="mock-model",
                gateway_token="t" * 32,
                last_seen_at=now,
                last_ready_at=now,
                running_since=now,
            )
            for n in range(first, first + count)
        ],
        batch_size=1000,
    )


def hold(fake, instances) -> None:
    """Their containers in the fake engine, running and checked healthy by the healthcheck."""
    for instance in instances:
        fake.ensure_volume(instance.volume_name, specs.labels_for(instance))
        fake.ensure_container(specs.spec_for(instance))
        fake.start(instance.container_name)
    fake.run_healthchecks()


def writes_in(ctx) -> list[str]:
    return [q["sql"] for q in ctx.captured_queries if q["sql"].lstrip().startswith(WRITES)]


@pytest.fixture
def host(settings):
    settings.FLEET_EDGE_ADMIN_URL = ""  # the proxy's repair is measured by the edge suite
    return Host.objects.create(
        name="scale",
        base_url="unix:///var/run/docker.sock",
        max_instances=2000,
        port_range_start=BASE_PORT,
        port_range_end=BASE_PORT + 2000,
    )


@pytest.fixture
def rt(fake_runtime):
    return fake_runtime


def unchanged_pass(host) -> CaptureQueriesContext:
    with CaptureQueriesContext(connection) as ctx:
        assert reconcile_host(host) == []
    return ctx


def test_an_unchanged_pass_costs_the_same_queries_at_3_and_300_and_writes_nothing(
    alice_org, host, rt
):
    hold(rt, make_fleet(alice_org, host, 3))
    small = unchanged_pass(host)
    hold(rt, make_fleet(alice_org, host, 297, first=3))
    rt.calls.clear()
    large = unchanged_pass(host)
    assert len(large.captured_queries) == len(small.captured_queries) <= 4
    # The one write is the host's "seen" time; no instance row, no event.
    assert [w.split(" SET")[0] for w in writes_in(large)] == ['UPDATE "instances_host"']
    # One engine call, and no probe: Docker's healthcheck already says every one is healthy.
    assert [c[0] for c in rt.calls] == ["list_managed"]


def test_a_fleet_going_unhealthy_and_back_is_one_update_each_way(alice_org, host, rt):
    instances = make_fleet(alice_org, host, 300)
    hold(rt, instances)
    rt.ready = False  # every gateway stops answering /readyz
    rt.run_healthchecks()
    rt.calls.clear()
    with CaptureQueriesContext(connection) as ctx:
        reconcile_host(host)
    assert len([c for c in rt.calls if c[0] == "probe"]) == 300  # unhealthy: asked directly
    assert len([w for w in writes_in(ctx) if "instances_instance" in w]) == 1
    assert set(Instance.objects.values_list("health", flat=True)) == {"unhealthy"}

    rt.ready = True
    rt.run_healthchecks()
    rt.calls.clear()
    with CaptureQueriesContext(connection) as ctx:
        reconcile_host(host)
    assert [c[0] for c in rt.calls] == ["list_managed"]
    assert len([w for w in writes_in(ctx) if "instances_instance" in w]) == 1
    assert set(Instance.objects.values_list("health", flat=True)) == {"healthy"}


@pytest.mark.parametrize("crashed", [3, 30])
def test_n_crashes_cost_a_bounded_number_of_writes(alice_org, host, rt, crashed):
    instances = make_fleet(alice_org, host, 300)
    hold(rt, instances)
    for instance in instances[:crashed]:
        rt.crash(instance.container_name)
    with CaptureQueriesContext(connection) as ctx:
        corrections = reconcile_host(host)
    assert [c.kind for c in corrections] == ["restarted"] * crashed
    assert all(rt.containers[i.container_name].running for i in instances[:crashed])
    writes = writes_in(ctx)
    # Per crash, the state module's UPDATE and transition event; then the host's "seen" time
    # and ONE insert of every "restarted" event. The 270 others cost nothing.
    assert len(writes) == 2 * crashed + 2, writes
    event_inserts = [w for w in writes if w.startswith('INSERT INTO "instances_instanceevent"')]
    assert len(event_inserts) == crashed + 1
    assert InstanceEvent.objects.filter(kind="restarted").count() == crashed
    assert set(Instance.objects.filter(status="starting").values_list("pk", flat=True)) == {
        i.pk for i in instances[:crashed]
    }

    # The next pass probes only the restarted ones (status starting) and finds them ready.
    rt.calls.clear()
    kinds = [c.kind for c in reconcile_host(host)]
    assert kinds == ["ready"] * crashed
    assert len([c for c in rt.calls if c[0] == "probe"]) == crashed
    assert Instance.objects.filter(status="running").count() == 300


def test_seen_times_are_refreshed_once_they_are_old_in_one_update(alice_org, host, rt, settings):
    settings.FLEET_RECONCILE_HEARTBEAT_SECONDS = 300
    hold(rt, make_fleet(alice_org, host, 50))
    later = timezone.now() + timedelta(seconds=301)
    with CaptureQueriesContext(connection) as ctx:
        reconcile_host(host, now=later)
    assert len([w for w in writes_in(ctx) if "instances_instance" in w]) == 1
    assert set(Instance.objects.values_list("last_seen_at", flat=True)) == {later}
    assert set(Instance.objects.values_list("last_ready_at", flat=True)) == {later}
    # Seen again a minute later: nothing is old yet, nothing is written.
    with CaptureQueriesContext(connection) as ctx:
        reconcile_host(host, now=later + timedelta(seconds=60))
    assert [w for w in writes_in(ctx) if "instances_instance" in w] == []


def test_a_container_docker_has_not_checked_yet_is_probed(alice_org, host, rt):
    instances = make_fleet(alice_org, host, 3)
    hold(rt, instances)
    rt.restart(instances[0].container_name)  # health: starting again
    rt.calls.clear()
    assert reconcile_host(host) == []
    assert [c for c in rt.calls if c[0] == "probe"] == [("probe", instances[0].host_port)]


# --- the warm pool ------------------------------------------------------------------------------


def pool_gateway(rt, instance: Instance) -> None:
    """A pool gateway booted for `instance`'s id (instances/pool.py labels it so)."""
    spec = specs.spec_for(instance)
    spec.labels = {**spec.labels, specs.POOL_LABEL: "true", specs.ORG_LABEL: "pool"}
    rt.ensure_volume(spec.volume_name, spec.labels)
    rt.ensure_container(spec)
    rt.start(spec.name)


def test_a_pool_gateway_without_an_instance_is_left_to_the_pool(alice_org, host, rt):
    claimed, waiting, stranger = make_fleet(alice_org, host, 3)
    for instance in (claimed, waiting, stranger):
        pool_gateway(rt, instance) if instance is not stranger else hold(rt, [stranger])
    # `waiting` has no row yet (the pool made it), `stranger` lost its row and is no pool's.
    Instance.objects.filter(pk__in=[waiting.pk, stranger.pk]).delete()
    corrections = reconcile_host(host)
    assert [(c.instance_id, c.kind) for c in corrections] == [(str(stranger.pk), "orphan_removed")]
    assert rt.containers[waiting.container_name].running
    assert waiting.volume_name in rt.volumes
    assert stranger.container_name not in rt.containers

    # Once claimed, the pool gateway is the instance's container like any other: a crash is
    # restarted, and a purge removes it with its volume.
    rt.crash(claimed.container_name)
    assert [c.kind for c in reconcile_host(host)] == ["restarted"]
    assert rt.containers[claimed.container_name].running
    Instance.objects.filter(pk=claimed.pk).update(status="purged", host_port=None)
    assert [c.kind for c in reconcile_host(host)] == ["orphan_removed"]
    assert claimed.container_name not in rt.containers and claimed.volume_name not in rt.volumes
    assert rt.containers[waiting.container_name].running  # still the pool's
