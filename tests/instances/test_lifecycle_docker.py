"""The instance lifecycle against the real engine, the OpenClaw images, the mock LLM and a real
Celery worker: one scenario per test, because each boot costs 15-25 s and ~1 GB.
"""

import time

import pytest

from accounts.services import SYSTEM
from instances import operations, services
from instances.models import Instance, InstanceEvent, Operation
from instances.reconcile import reconcile_host
from tests.fleet_fixtures import OPERATION_TIMEOUT, deploy_and_wait, wait_for_operation

from .helpers import (
    chat,
    containers_of,
    requests_with,
    restart_and_continue,
    volumes_of,
    wait_until,
)

pytestmark = [
    pytest.mark.docker,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def org(alice_org, entitled_org, mock_prices, fleet_plane):
    entitled_org(alice_org)
    return alice_org


def test_an_instance_lives_its_whole_life_and_keeps_its_conversation(
    org, docker_runtime, openclaw_image, mock_llm, celery_worker_process
):
    rt, worker = docker_runtime, celery_worker_process

    # Deploy 2026.9.5 → healthy, and a chat reaches the mock LLM through OpenClaw.
    instance, op = deploy_and_wait(
        org,
        name="life",
        version="2026.9.5",
        base_url=mock_llm.container_url,
        timeout=OPERATION_TIMEOUT,
    )
    assert (instance.status, instance.health) == ("running", "healthy")
    assert [s["name"] for s in op.steps] == [
        "place",
        "image",
        "network",
        "volume",
        "config",
        "container",
        "start",
        "health",
    ]
    assert all(s["state"] == "done" for s in op.steps)
    info = rt.inspect(instance.container_name)
    assert info.running and info.image == openclaw_image["2026.9.5"]
    assert instance.gateway_token not in str(rt.api.inspect_container(info.id)["Config"]["Env"])
    assert chat(instance, "first message alpha") == "Mock reply: first message alpha"

    # Restart: the same session continues (OpenClaw sends the earlier turn again).
    restart_and_continue(
        instance, worker, mock_llm, "second message bravo", earlier="first message alpha"
    )

    # Upgrade 2026.9.5 → 2026.9.6: same volume, same hostname, the conversation goes on.
    op = wait_for_operation(
        services.instance_upgrade(actor=SYSTEM, instance=instance, version="2026.9.6"),
        worker=worker,
        timeout=OPERATION_TIMEOUT,
    )
    assert op.state == "succeeded", op.error_detail
    instance.refresh_from_db()
    assert (instance.openclaw_version, instance.previous_version) == ("2026.9.6", "2026.9.5")
    raw = rt.api.inspect_container(instance.container_name)
    assert raw["Config"]["Image"] == openclaw_image["2026.9.6"]
    assert raw["Config"]["Hostname"] == instance.hostname
    assert [m["Name"] for m in raw["Mounts"]] == [instance.volume_name]
    assert chat(instance, "third message charlie") == "Mock reply: third message charlie"
    (after_upgrade,) = requests_with(mock_llm, "third message charlie")
    history = str(after_upgrade["body"]["messages"])
    assert "first message alpha" in history and "second message bravo" in history

    # Upgrade to the broken image: it never gets ready, we roll back to 2026.9.6.
    op = wait_for_operation(
        services.instance_upgrade(actor=SYSTEM, instance=instance, version="0.0.0-broken"),
        worker=worker,
        timeout=OPERATION_TIMEOUT,
    )
    assert op.state == "failed"
    assert "rolled back to 2026.9.6" in op.error
    assert any(s["name"] == "rollback" and s["state"] == "done" for s in op.steps)
    instance.refresh_from_db()
    assert (instance.status, instance.openclaw_version) == ("running", "2026.9.6")
    assert rt.inspect(instance.container_name).image == openclaw_image["2026.9.6"]
    assert InstanceEvent.objects.filter(instance=instance, kind="upgrade_rolled_back").exists()
    assert chat(instance, "fourth message delta") == "Mock reply: fourth message delta"

    # docker kill → the reconcile loop starts it again (same container, same volume).
    rt.api.kill(instance.container_name)
    wait_until(lambda: not rt.inspect(instance.container_name).running, 30, 0.5, "the kill")
    corrections = reconcile_host(instance.host)
    assert [c.kind for c in corrections if c.instance_id == str(instance.pk)] == ["restarted"]
    instance.refresh_from_db()
    assert instance.status == "starting"

    def ready_again():
        reconcile_host(instance.host)
        instance.refresh_from_db()
        return instance.status == "running" and instance.health == "healthy"

    wait_until(ready_again, 300, 2, "the instance to be ready after the kill")
    assert InstanceEvent.objects.filter(instance=instance, kind="restarted").count() == 1
    assert chat(instance, "fifth message echo") == "Mock reply: fifth message echo"

    # Delete keeps the volume for the grace period; purge removes everything.
    op = wait_for_operation(
        services.instance_delete(actor=SYSTEM, instance=instance),
        worker=worker,
        timeout=OPERATION_TIMEOUT,
    )
    assert op.state == "succeeded", op.error_detail
    instance.refresh_from_db()
    assert instance.status == "deleted" and instance.purge_after > instance.deleted_at
    assert containers_of(rt, instance) == []
    assert volumes_of(rt, instance) == [instance.volume_name]
    op = wait_for_operation(
        services.instance_purge(actor=SYSTEM, instance=instance),
        worker=worker,
        timeout=OPERATION_TIMEOUT,
    )
    assert op.state == "succeeded", op.error_detail
    instance.refresh_from_db()
    assert (instance.status, instance.host_port) == ("purged", None)
    assert volumes_of(rt, instance) == []


def test_a_broken_image_is_marked_crash_looping_instead_of_restarted_forever(
    org, docker_runtime, openclaw_image, settings
):
    """The reconcile loop alone (no worker): an instance whose container exits at once."""
    from instances import placement, specs

    settings.FLEET_CRASH_LOOP_THRESHOLD = 3
    rt = docker_runtime
    instance = Instance(
        organization=org,
        name="crashy",
        openclaw_version="0.0.0-broken",
        status=Instance.Status.RUNNING,
        provider="custom",
        model_name="mock-model",
        model_base_url="http://127.0.0.1:9/v1",
        gateway_token="t" * 32,
    )
    placement.place(instance)
    rt.ensure_volume(instance.volume_name, specs.labels_for(instance))
    try:
        rt.ensure_container(specs.spec_for(instance))
        rt.start(instance.container_name)
        kinds = []
        for _ in range(6):
            wait_until(lambda: not rt.inspect(instance.container_name).running, 30, 0.3, "exit")
            corrections = reconcile_host(instance.host)
            kinds += [c.kind for c in corrections if c.instance_id == str(instance.pk)]
    finally:
        rt.remove(instance.container_name)
        rt.remove_volume(instance.volume_name)
    instance.refresh_from_db()
    assert kinds == ["restarted", "restarted", "restarted", "crash_loop"]
    assert instance.status == "crash_looping" and instance.health == "unhealthy"
    assert "Crashed 4 times" in instance.status_message
    assert InstanceEvent.objects.filter(instance=instance, kind="crash_loop").count() == 1


def test_orphans_of_this_control_plane_are_removed_and_others_are_left_alone(
    org, docker_runtime, openclaw_image
):
    """A container whose instance row is unknown goes (its volume stays); another plane's stays."""
    import uuid

    from instances import placement, specs

    rt = docker_runtime
    ghost = Instance(
        organization=org,
        name="ghost",
        openclaw_version="0.0.0-broken",
        status=Instance.Status.RUNNING,
        gateway_token="g" * 32,
    )
    placement.place(ghost)
    host = ghost.host
    stranger_spec = specs.spec_for(ghost)
    rt.ensure_volume(ghost.volume_name, specs.labels_for(ghost))
    rt.ensure_container(specs.spec_for(ghost))
    # The same container shape, labelled by another control plane.
    stranger_spec.name = f"clawfleet-stranger-{uuid.uuid4().hex[:8]}"
    stranger_spec.labels = {**stranger_spec.labels, specs.PLANE_LABEL: "someone-else"}
    stranger_spec.host_port += 1
    rt.ensure_container(stranger_spec)
    try:
        Instance.objects.filter(pk=ghost.pk).delete()  # the row vanished: an orphan
        corrections = reconcile_host(host)
        assert [c.kind for c in corrections if c.instance_id == str(ghost.pk)] == ["orphan_removed"]
        assert rt.inspect(ghost.container_name) is None
        assert rt.volume_exists(ghost.volume_name)
        assert rt.inspect(stranger_spec.name) is not None
    finally:
        rt.remove(stranger_spec.name)
        rt.remove_volume(ghost.volume_name)


def test_a_deploy_survives_a_worker_killed_with_sigkill(
    org, docker_runtime, openclaw_image, mock_llm, celery_worker_process
):
    rt, worker = docker_runtime, celery_worker_process
    op = services.instance_deploy(
        actor=SYSTEM,
        organization=org,
        name="sturdy",
        provider="custom",
        model_name="mock-model",
        api_key="",
        model_base_url=mock_llm.container_url,
    )

    def in_health_step():
        op.refresh_from_db()
        return any(s["name"] == "health" and s["state"] == "running" for s in op.steps)

    wait_until(in_health_step, OPERATION_TIMEOUT, 0.2, "the deploy to reach its health step")
    worker.kill9()
    op.refresh_from_db()
    assert op.state == Operation.State.RUNNING and op.attempts == 1

    # The production broker settings (visibility timeout 3600 s): the broker would hand the
    # unacked task out again only in an hour. The reconcile beat (called here as beat calls it,
    # every FLEET_RECONCILE_SECONDS) sees that nobody holds the operation's lock any more and
    # enqueues it again; the new worker finishes it.
    worker.start()
    resumed_after = None
    started = time.monotonic()
    while time.monotonic() - started < 60 and resumed_after is None:
        if operations.resume_stranded():
            resumed_after = time.monotonic() - started
        else:
            time.sleep(5)
    assert resumed_after is not None, "the stranded deploy was not resumed within a minute"
    op = wait_for_operation(op, OPERATION_TIMEOUT, worker=worker)
    assert op.state == "succeeded", f"{op.error} / {op.error_detail}"
    assert op.attempts == 2
    instance = Instance.objects.get(pk=op.instance_id)
    assert (instance.status, instance.health) == ("running", "healthy")
    assert len(containers_of(rt, instance)) == 1
    assert volumes_of(rt, instance) == [instance.volume_name]
    assert chat(instance, "still here?") == "Mock reply: still here?"
    rt.remove(instance.container_name)
    rt.remove_volume(instance.volume_name)
