"""Operation handlers and the reconcile loop against an in-memory runtime (fast, no engine)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.services import SYSTEM
from fleet import hooks
from instances import operations, services
from instances.models import Instance, InstanceEvent, Operation
from instances.reconcile import reconcile_host

pytestmark = pytest.mark.django_db

DEPLOY = {
    "provider": "custom",
    "model_name": "mock-model",
    "api_key": "",
    "model_base_url": "http://llm.example.test/v1",
}


class FakeBackup:
    pk = "fake-backup"


@pytest.fixture
def rt(fake_runtime):
    # sessions_mgmt's backups and syncs talk to a real gateway: here the hooks they subscribe to
    # answer with a stand-in backup and no sync (the hooks are the contract between the apps).
    with (
        hooks.only("backup.create", lambda **kwargs: FakeBackup()),
        hooks.only("instance.ready"),
        hooks.only("operation.finished"),
    ):
        yield fake_runtime


@pytest.fixture
def org(alice_org, entitled_org):
    entitled_org(alice_org)
    return alice_org


def deployed(org, rt, name="bot") -> Instance:
    op = services.instance_deploy(actor=SYSTEM, organization=org, name=name, **DEPLOY)
    op = operations.run_operation(op.pk)
    assert op.state == "succeeded", op.error_detail
    return Instance.objects.get(pk=op.instance_id)


def test_deploy_runs_every_step_and_writes_secrets_only_into_the_config(org, rt):
    instance = deployed(org, rt)
    assert (instance.status, instance.health) == ("running", "healthy")
    op = instance.operations.get()
    assert [s["name"] for s in op.steps] == [
        "place", "image", "network", "volume", "config", "container", "start", "health",
    ]  # fmt: skip
    config = rt.configs[instance.volume_name]
    assert config["gateway"]["auth"]["token"] == instance.gateway_token
    spec = rt.containers[instance.container_name].spec
    assert instance.gateway_token not in str(spec)
    assert spec.hostname == instance.hostname and spec.volume_name == instance.volume_name
    assert spec.labels["clawfleet.instance"] == str(instance.pk)
    # A fresh volume gets our own config without the validate round trip.
    assert ("write_config", instance.volume_name, False) in rt.calls


def test_a_redelivered_deploy_converges_to_one_container_and_one_volume(org, rt):
    op = services.instance_deploy(actor=SYSTEM, organization=org, name="bot", **DEPLOY)
    operations.run_operation(op.pk)
    # The broker hands the same task out again (as after a worker was killed mid-way).
    Operation.objects.filter(pk=op.pk).update(state="running", finished_at=None)
    op = operations.run_operation(op.pk)
    assert op.state == "succeeded" and op.attempts == 2
    assert len(rt.containers) == 1 and len(rt.volumes) == 1 and rt.created == 1


def test_a_duplicate_delivery_while_the_first_run_lives_is_a_no_op(org, rt):
    import psycopg
    from django.db import connection

    op = services.instance_deploy(actor=SYSTEM, organization=org, name="bot", **DEPLOY)
    s = connection.settings_dict
    other = psycopg.connect(
        host=s["HOST"], port=s["PORT"], user=s["USER"], dbname=s["NAME"], autocommit=True
    )
    key = __import__("uuid").UUID(str(op.pk)).int >> 65
    other.execute("SELECT pg_advisory_lock(%s)", [key])  # "another worker runs it"
    try:
        assert operations.run_operation(op.pk) is None
        op.refresh_from_db()
        assert op.state == "queued" and op.attempts == 0
    finally:
        other.execute("SELECT pg_advisory_unlock(%s)", [key])  # that worker finished
        other.close()
    assert operations.run_operation(op.pk).state == "succeeded"


def test_a_failed_deploy_marks_the_instance_failed_with_a_readable_message(org, rt):
    rt.ready = False
    op = services.instance_deploy(actor=SYSTEM, organization=org, name="bot", **DEPLOY)
    op = operations.run_operation(op.pk)
    assert op.state == "failed" and "did not become ready" in op.error
    instance = Instance.objects.get(pk=op.instance_id)
    assert instance.status == "failed" and "did not become ready" in instance.status_message
    # The stored public message names no host port; the runtime's text stays for staff.
    assert "127.0.0.1" not in op.error and "127.0.0.1" not in instance.status_message
    assert "127.0.0.1:" in op.error_detail and "/readyz" in op.error_detail


def test_a_restart_retries_a_deploy_that_failed(org, rt):
    rt.ready = False
    op = operations.run_operation(
        services.instance_deploy(actor=SYSTEM, organization=org, name="bot", **DEPLOY).pk
    )
    assert op.state == "failed"
    rt.ready = True
    op = operations.run_operation(services.instance_restart(actor=SYSTEM, instance=op.instance).pk)
    assert op.state == "succeeded", op.error_detail
    assert "volume" in [s["name"] for s in op.steps]
    assert Instance.objects.get(pk=op.instance_id).status == "running"
    assert rt.created == 1


def test_an_upgrade_that_never_gets_ready_rolls_back(org, rt):
    instance = deployed(org, rt)
    rt.broken_images.add("clawfleet/openclaw:2026.9.5")  # exits at once, like 0.0.0-broken
    op = services.instance_upgrade(actor=SYSTEM, instance=instance, version="2026.9.5")
    op = operations.run_operation(op.pk)
    assert op.state == "failed"
    assert "rolled back to 2026.9.6" in op.error
    instance.refresh_from_db()
    assert (instance.status, instance.openclaw_version) == ("running", "2026.9.6")
    assert rt.containers[instance.container_name].spec.image == "clawfleet/openclaw:2026.9.6"
    assert InstanceEvent.objects.filter(instance=instance, kind="upgrade_rolled_back").exists()


def test_a_successful_upgrade_keeps_volume_and_hostname(org, rt):
    instance = deployed(org, rt)
    op = services.instance_upgrade(actor=SYSTEM, instance=instance, version="2026.9.5")
    op = operations.run_operation(op.pk)
    assert op.state == "succeeded", op.error_detail
    instance.refresh_from_db()
    assert (instance.openclaw_version, instance.previous_version) == ("2026.9.5", "2026.9.6")
    spec = rt.containers[instance.container_name].spec
    assert spec.image == "clawfleet/openclaw:2026.9.5"
    assert (spec.volume_name, spec.hostname) == (instance.volume_name, instance.hostname)
    assert len(rt.volumes) == 1


def test_stop_delete_and_purge(org, rt):
    instance = deployed(org, rt)
    operations.run_operation(services.instance_stop(actor=SYSTEM, instance=instance).pk)
    instance.refresh_from_db()
    assert instance.status == "stopped"
    assert ("stop", instance.container_name, 30) in rt.calls
    operations.run_operation(services.instance_delete(actor=SYSTEM, instance=instance).pk)
    instance.refresh_from_db()
    assert instance.status == "deleted" and instance.purge_after > timezone.now()
    assert instance.container_name not in rt.containers and instance.volume_name in rt.volumes
    operations.run_operation(services.instance_purge(actor=SYSTEM, instance=instance).pk)
    instance.refresh_from_db()
    assert (instance.status, instance.host_port) == ("purged", None)
    assert rt.volumes == {}


def test_pause_then_resume(org, rt):
    instance = deployed(org, rt)
    op = services.instance_pause(actor=SYSTEM, instance=instance, reason="Payment failed")
    operations.run_operation(op.pk)
    instance.refresh_from_db()
    assert (instance.status, instance.status_message) == ("paused", "Payment failed")
    operations.run_operation(services.instance_resume(actor=SYSTEM, instance=instance).pk)
    instance.refresh_from_db()
    assert (instance.status, instance.status_message) == ("running", "")


def test_a_resize_recreates_the_container_with_the_new_limit(alice_org, entitled_org, rt):
    entitled_org(alice_org, max_memory_mb=4096)
    instance = deployed(alice_org, rt)
    services.instance_update(actor=SYSTEM, instance=instance, memory_mb=3072)
    op = operations.run_operation(instance.queued_operation.pk)
    assert op.state == "succeeded", op.error_detail
    assert rt.containers[instance.container_name].spec.memory_mb == 3072
    assert rt.created == 2


# --- reconcile ----------------------------------------------------------------------------------


def test_reconcile_lists_the_engine_once_and_restarts_a_crashed_instance(org, rt):
    instance = deployed(org, rt)
    rt.crash(instance.container_name)
    rt.calls.clear()
    corrections = reconcile_host(instance.host)
    assert [c.kind for c in corrections] == ["restarted"]
    assert [c for c in rt.calls if c[0] == "list_managed"] == [("list_managed",)]
    instance.refresh_from_db()
    assert (instance.status, instance.crash_count) == ("starting", 1)
    reconcile_host(instance.host)
    instance.refresh_from_db()
    assert (instance.status, instance.health) == ("running", "healthy")
    assert instance.last_seen_at is not None


def test_reconcile_recreates_a_missing_container_from_the_same_spec(org, rt):
    instance = deployed(org, rt)
    spec_hash = rt.containers[instance.container_name].spec.spec_hash()
    rt.remove(instance.container_name)
    assert [c.kind for c in reconcile_host(instance.host)] == ["restarted"]
    assert rt.containers[instance.container_name].spec.spec_hash() == spec_hash


def test_reconcile_marks_a_crash_loop_and_stops_restarting(org, rt, settings):
    settings.FLEET_CRASH_LOOP_THRESHOLD = 2
    instance = deployed(org, rt)
    kinds = []
    for _ in range(5):
        rt.crash(instance.container_name)
        kinds += [c.kind for c in reconcile_host(instance.host)]
    assert kinds == ["restarted", "restarted", "crash_loop"]
    instance.refresh_from_db()
    assert instance.status == "crash_looping"


def test_crashes_outside_the_window_start_a_new_count(org, rt, settings):
    instance = deployed(org, rt)
    long_ago = timezone.now() - timedelta(seconds=settings.FLEET_CRASH_LOOP_WINDOW + 60)
    Instance.objects.filter(pk=instance.pk).update(crash_count=3, crash_window_started_at=long_ago)
    rt.crash(instance.container_name)
    assert [c.kind for c in reconcile_host(instance.host)] == ["restarted"]
    instance.refresh_from_db()
    assert instance.crash_count == 1


def test_reconcile_leaves_an_instance_with_an_active_operation_alone(org, rt):
    instance = deployed(org, rt)
    rt.crash(instance.container_name)
    services.instance_restart(actor=SYSTEM, instance=instance)  # queued, not run
    assert reconcile_host(instance.host) == []
    assert not rt.containers[instance.container_name].running


def test_reconcile_stops_a_container_that_should_not_run(org, rt):
    instance = deployed(org, rt)
    Instance.objects.filter(pk=instance.pk).update(status="stopped", desired_state="stopped")
    assert [c.kind for c in reconcile_host(instance.host)] == ["stopped"]
    assert not rt.containers[instance.container_name].running


def test_reconcile_removes_the_container_of_a_purged_instance_with_its_volume(org, rt):
    instance = deployed(org, rt)
    Instance.objects.filter(pk=instance.pk).update(status="purged", host_port=None)
    assert [c.kind for c in reconcile_host(instance.host)] == ["orphan_removed"]
    assert rt.containers == {} and rt.volumes == {}
    assert InstanceEvent.objects.filter(instance=instance, kind="orphan_removed").exists()


def test_an_unreachable_engine_is_recorded_on_the_host(org, rt, monkeypatch):
    from instances.runtime import EngineUnavailable

    instance = deployed(org, rt)

    def down():
        raise EngineUnavailable("unix:///fake.sock", "refused")

    monkeypatch.setattr(rt, "list_managed", down)
    assert reconcile_host(instance.host) == []
    instance.host.refresh_from_db()
    assert "unavailable" in instance.host.last_error


def test_the_reconcile_task_fans_out_and_the_purge_task_purges(org, rt, monkeypatch):
    from instances import tasks

    instance = deployed(org, rt)
    sent = []
    monkeypatch.setattr(tasks.reconcile_host_task, "delay", lambda host_id: sent.append(host_id))
    assert tasks.reconcile_fleet() == 1 and sent == [instance.host_id]
    assert tasks.reconcile_host_task(instance.host_id) == 0

    Instance.objects.filter(pk=instance.pk).update(
        status="deleted", purge_after=timezone.now() - timedelta(days=1)
    )
    monkeypatch.setattr(operations, "enqueue_operation", lambda op_id: None)
    assert tasks.purge_expired_instances() == 1
    assert instance.operations.filter(kind="purge", state="queued").exists()


# --- operations whose worker died ---------------------------------------------------------------


def test_a_running_operation_whose_worker_died_is_found_and_resumed(org, rt, monkeypatch):
    """A worker killed mid-deploy leaves the operation running with nobody holding its lock;
    the reconcile beat enqueues it again and the redelivery converges."""
    op = services.instance_deploy(actor=SYSTEM, organization=org, name="bot", **DEPLOY)
    earlier = timezone.now() - timedelta(minutes=2)
    Operation.objects.filter(pk=op.pk).update(state="running", started_at=earlier, attempts=1)
    enqueued = []
    monkeypatch.setattr(operations, "enqueue_operation", enqueued.append)

    assert [o.pk for o in operations.resume_stranded()] == [op.pk]
    assert enqueued == [op.pk]
    assert operations.resume_stranded() == []  # not twice within two minutes

    op = operations.run_operation(enqueued[0])  # what the worker does with the new message
    assert op.state == "succeeded" and op.attempts == 2
    assert Instance.objects.get(pk=op.instance_id).status == "running"


def test_an_operation_whose_worker_lives_is_not_stranded(org, rt, django_db_blocker):
    """While a worker holds the operation's advisory lock, nothing resumes it."""
    from django.db import connections

    op = services.instance_deploy(actor=SYSTEM, organization=org, name="bot", **DEPLOY)
    earlier = timezone.now() - timedelta(minutes=2)
    Operation.objects.filter(pk=op.pk).update(state="running", started_at=earlier, attempts=1)
    other = connections.create_connection("default")  # another session, as a live worker's
    try:
        with other.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", [operations.lock_key(op.pk)])
        assert operations.stranded_operations() == []
        with other.cursor() as cur:  # released now, not when the server notices the close
            cur.execute("SELECT pg_advisory_unlock(%s)", [operations.lock_key(op.pk)])
    finally:
        other.close()
    assert [o.pk for o in operations.stranded_operations()] == [op.pk]


def test_reconcile_starts_an_instance_that_is_stopped_but_wanted_running(org, rt):
    """An operation that ended short of the wish (stopped, desired running) is converged by the
    reconcile loop instead of being taken for a wanted stop."""
    from instances import state

    instance = deployed(org, rt)
    rt.stop(instance.container_name)
    state.transition(instance, "stopped", reason="test: an operation ended short")
    assert instance.desired_state == "running"
    assert [c.kind for c in reconcile_host(instance.host)] == ["restarted"]
    assert rt.containers[instance.container_name].running
    reconcile_host(instance.host)
    instance.refresh_from_db()
    assert (instance.status, instance.health) == ("running", "healthy")


def test_every_status_change_is_recorded_as_a_transition(org, rt):
    instance = deployed(org, rt)
    rt.crash(instance.container_name)
    reconcile_host(instance.host)
    reconcile_host(instance.host)
    arrows = [
        (e.data["from"], e.data["to"])
        for e in InstanceEvent.objects.filter(instance=instance, kind="transition").order_by(
            "created_at", "id"
        )
    ]
    assert arrows == [
        ("pending", "deploying"),
        ("deploying", "starting"),
        ("starting", "running"),
        ("running", "starting"),
        ("starting", "running"),
    ]


def test_the_reconcile_beat_repairs_a_drifted_egress_firewall(monkeypatch, caplog):
    """A rule that went missing (an engine restart rewrites iptables) is noticed and repaired
    on the next reconcile pass (the firewall itself is proven in tests/security)."""
    from instances import egress, tasks

    calls = []
    monkeypatch.setattr(egress, "verify", lambda: ["IPv4: chain CLAWFLEET-F-br0 is missing"])
    monkeypatch.setattr(egress, "repair", lambda: calls.append("repair") or [])
    tasks.check_egress_firewall()
    assert calls == ["repair"]
    assert "chain CLAWFLEET-F-br0 is missing" in caplog.text
    monkeypatch.setattr(egress, "verify", lambda: [])
    tasks.check_egress_firewall()
    assert calls == ["repair"]  # nothing to repair: nothing done
