"""Restore and the nightly backup against the state machine and the operation lock, on the fake
runtime (tests/fakes/runtime.py) with an OpenClaw whose session store lives in the volume."""

from datetime import date

import pytest
from celery.exceptions import Retry

from accounts.services import SYSTEM
from instances import operations
from instances import services as instance_services
from instances.models import Instance, InstanceEvent, Operation
from instances.reconcile import reconcile_host
from sessions_mgmt import services, tasks
from sessions_mgmt.models import Backup
from tests.factories import OperationFactory

pytestmark = pytest.mark.django_db

DEPLOY = {
    "provider": "custom",
    "model_name": "mock-model",
    "api_key": "",
    "model_base_url": "http://llm.example.test/v1",
}


@pytest.fixture
def org(alice_org, entitled_org):
    entitled_org(alice_org)
    return alice_org


def deployed(org, name="bot") -> Instance:
    op = instance_services.instance_deploy(actor=SYSTEM, organization=org, name=name, **DEPLOY)
    op = operations.run_operation(op.pk)
    assert op.state == "succeeded", op.error_detail
    return Instance.objects.get(pk=op.instance_id)


def run(op) -> Operation:
    return operations.run_operation(op.pk)


def transitions(instance, op) -> list[tuple[str, str]]:
    return [
        (e.data["from"], e.data["to"])
        for e in InstanceEvent.objects.filter(
            instance=instance, kind="transition", data__operation=str(op.pk)
        ).order_by("created_at", "id")
    ]


def test_a_restore_right_after_the_reconcile_loop_restarted_a_killed_instance_ends_running(
    org, fake_runtime, volume_openclaw
):
    instance = deployed(org)
    oc = volume_openclaw(instance)
    oc.add("agent:main:a")
    oc.add("agent:main:b")
    fake_runtime.crash(instance.container_name)  # docker kill
    reconcile_host(instance.host)  # restarted; "starting" until the next pass sees it ready
    instance.refresh_from_db()
    assert instance.status == "starting"

    backup_op = run(services.backup_request(actor=SYSTEM, instance=instance))
    assert backup_op.state == "succeeded", backup_op.error_detail
    backup = Backup.objects.get(pk=backup_op.params["backup_id"])
    assert backup.manifest["method"] == "openclaw-backup"
    oc.add("agent:main:after-the-backup")

    op = run(services.restore_request(actor=SYSTEM, instance=instance, backup=backup))

    assert op.state == "succeeded", (op.error_detail, op.steps)
    instance.refresh_from_db()
    assert instance.desired_state == "running"
    assert (instance.status, instance.health) == ("running", "healthy")
    assert instance.running_since is not None and instance.last_ready_at is not None
    assert fake_runtime.containers[instance.container_name].running
    assert transitions(instance, op) == [
        ("starting", "restoring"),
        ("restoring", "starting"),
        ("starting", "running"),
    ]
    assert {r.key for r in oc.list_sessions().rows} == {"agent:main:a", "agent:main:b"}


def test_a_restore_of_an_instance_wanted_stopped_ends_stopped(org, fake_runtime, volume_openclaw):
    instance = deployed(org)
    volume_openclaw(instance).add("agent:main:a")
    backup = run(services.backup_request(actor=SYSTEM, instance=instance))
    backup = Backup.objects.get(pk=backup.params["backup_id"])
    assert run(instance_services.instance_stop(actor=SYSTEM, instance=instance)).state == (
        "succeeded"
    )

    op = run(services.restore_request(actor=SYSTEM, instance=instance, backup=backup))

    assert op.state == "succeeded", (op.error_detail, op.steps)
    instance.refresh_from_db()
    assert (instance.desired_state, instance.status) == ("stopped", "stopped")
    assert not fake_runtime.containers[instance.container_name].running
    assert transitions(instance, op) == [("stopped", "restoring"), ("restoring", "stopped")]


def test_a_restore_that_fails_after_the_stop_starts_an_instance_wanted_running_again(
    org, fake_runtime, volume_openclaw
):
    instance = deployed(org)
    volume_openclaw(instance).add("agent:main:a")
    backup = run(services.backup_request(actor=SYSTEM, instance=instance))
    backup = Backup.objects.get(pk=backup.params["backup_id"])
    fake_runtime.errors["copy_volume"] = RuntimeError("disk full")

    op = run(services.restore_request(actor=SYSTEM, instance=instance, backup=backup))

    assert op.state == "failed"
    instance.refresh_from_db()
    assert instance.status == "starting"  # the reconcile loop watches it from here
    assert fake_runtime.containers[instance.container_name].running
    reconcile_host(instance.host)
    instance.refresh_from_db()
    assert (instance.status, instance.health) == ("running", "healthy")


def test_the_nightly_backup_does_not_start_while_a_restore_holds_the_instance(
    org, fake_runtime, volume_openclaw
):
    instance = deployed(org)
    restore_op = OperationFactory(instance=instance, kind="restore", state="running")

    with pytest.raises(Retry):
        tasks.nightly_backup_task(str(instance.pk), "2026-11-25")

    assert not Backup.objects.filter(instance=instance).exists()
    assert list(instance.operations.filter(state__in=Operation.ACTIVE_STATES)) == [restore_op]
    assert not any(c[0] in ("exec", "export_volume") for c in fake_runtime.calls)


def test_a_busy_instance_is_given_up_for_the_night_after_its_retries(org, fake_runtime):
    instance = deployed(org)
    OperationFactory(instance=instance, kind="upgrade", state="queued")
    task = tasks.nightly_backup_task
    task.push_request(retries=tasks.NIGHTLY_BUSY_RETRIES)
    try:
        assert task.run(str(instance.pk), "2026-11-25") == "busy"
    finally:
        task.pop_request()
    assert not Backup.objects.filter(instance=instance).exists()


def test_the_nightly_backup_is_an_operation_that_holds_the_instance_lock(
    org, fake_runtime, volume_openclaw
):
    instance = deployed(org)
    volume_openclaw(instance).add("agent:main:a")

    assert tasks.nightly_backup_task(str(instance.pk), "2026-11-25") == "done"

    op = instance.operations.get(kind="backup")
    assert op.state == "succeeded", op.error_detail
    assert op.params["kind"] == "nightly" and op.requested_via == "system"
    backup = Backup.objects.get(instance=instance)
    assert (backup.kind, backup.state, backup.nightly_date) == (
        "nightly",
        "succeeded",
        date(2026, 11, 25),
    )
    assert backup.operation_id == op.pk and backup.session_count == 1
    # A second run the same night finds tonight's backup and starts no operation.
    assert tasks.nightly_backup_task(str(instance.pk), "2026-11-25") == "exists"
    assert instance.operations.filter(kind="backup").count() == 1


def test_a_hot_backup_waits_for_the_gateway_and_fails_cleanly_when_it_never_answers(
    org, fake_runtime, volume_openclaw
):
    instance = deployed(org)
    oc = volume_openclaw(instance)
    fake_runtime.ready = False  # the container runs, its gateway does not answer

    op = run(services.backup_request(actor=SYSTEM, instance=instance))

    assert op.state == "failed"
    assert ("wait_ready", instance.host_port, instance.container_name) in fake_runtime.calls
    assert oc.calls == []  # nothing asked of a gateway that is not there
    backup = Backup.objects.get(instance=instance)
    assert backup.state == "failed" and "NotReady" in backup.error


def test_a_backup_row_left_running_by_a_finished_operation_is_marked_failed(org, fake_runtime):
    instance = deployed(org)
    op = OperationFactory(instance=instance, kind="upgrade", state="running")
    stale = Backup.objects.create(
        instance=instance,
        organization=org,
        kind="pre_upgrade",
        state="running",
        operation=op,
    )

    operations.finish(op)

    stale.refresh_from_db()
    assert stale.state == "failed" and "ended before" in stale.error


def test_the_hooks_instances_runs_are_answered_by_sessions_mgmt(org, fake_runtime, volume_openclaw):
    from fleet import hooks

    instance = deployed(org)
    volume_openclaw(instance).add("agent:main:a")
    op = OperationFactory(instance=instance, kind="upgrade", state="running")

    backup = hooks.first("backup.create", instance=instance, kind="pre_upgrade", operation=op)

    assert isinstance(backup, Backup)
    assert (backup.kind, backup.state, backup.operation_id) == ("pre_upgrade", "succeeded", op.pk)
    assert backup.session_count == 1
