from datetime import timedelta

from django.utils import timezone

from accounts.services import SYSTEM
from instances.models import Instance, Operation
from instances.operations import run_operation
from sessions_mgmt import services
from sessions_mgmt.models import Session


def _session(instance, key, days_idle, status=Session.Status.LIVE):
    return Session.objects.create(
        instance=instance,
        organization_id=instance.organization_id,
        session_key=key,
        last_activity_at=timezone.now() - timedelta(days=days_idle),
        status=status,
    )


def test_preview_lists_idle_sessions_then_the_oldest_beyond_the_maximum(alice_instance):
    Instance.objects.filter(pk=alice_instance.pk).update(session_idle_days=30, session_max_count=2)
    alice_instance.refresh_from_db()
    _session(alice_instance, "agent:main:idle", 31)
    _session(alice_instance, "agent:main:new1", 1)
    _session(alice_instance, "agent:main:new2", 2)
    _session(alice_instance, "agent:main:new3", 3)
    _session(alice_instance, "agent:main:gone", 90, status=Session.Status.PRUNED)
    _session(alice_instance, "agent:main:main", 400)  # OpenClaw protects main sessions
    assert services.prune_preview(instance=alice_instance) == [
        "agent:main:idle",
        "agent:main:new3",
    ]


def test_preview_takes_a_different_now(alice_instance):
    _session(alice_instance, "agent:main:a", 10)
    later = timezone.now() + timedelta(days=25)
    assert services.prune_preview(instance=alice_instance) == []
    assert services.prune_preview(instance=alice_instance, now=later) == ["agent:main:a"]


def test_prune_operation_archives_then_deletes_in_openclaw_and_resyncs(
    alice_instance, fake_openclaw, price, django_capture_on_commit_callbacks
):
    oc = fake_openclaw(alice_instance)
    oc.add("agent:main:old", age_days=45)
    oc.add("agent:main:fresh", age_days=1)
    op = services.prune_sessions(actor=SYSTEM, instance=alice_instance, enqueue=False)
    assert op.kind == Operation.Kind.PRUNE
    op = run_operation(op.pk)
    assert op.state == Operation.State.SUCCEEDED, op.error_detail
    assert "archive:1" in oc.calls and "delete:1" in oc.calls
    assert list(oc.sessions) == ["agent:main:fresh"]
    old = Session.objects.get(session_key="agent:main:old")
    assert old.status == Session.Status.PRUNED
    assert Session.objects.get(session_key="agent:main:fresh").status == Session.Status.LIVE
    assert [s["state"] for s in op.steps] == ["done"] * len(op.steps)


def test_prune_without_archive_deletes_directly(alice_instance, fake_openclaw, price):
    Instance.objects.filter(pk=alice_instance.pk).update(archive_before_prune=False)
    oc = fake_openclaw(alice_instance)
    oc.add("agent:main:old", age_days=45)
    op = services.prune_sessions(actor=SYSTEM, instance=alice_instance, enqueue=False)
    op = run_operation(op.pk)
    assert op.state == Operation.State.SUCCEEDED
    assert not any(c.startswith("archive") for c in oc.calls)


def test_prune_of_a_stopped_instance_fails_with_a_clear_message(alice_instance, fake_openclaw):
    Instance.objects.filter(pk=alice_instance.pk).update(status=Instance.Status.STOPPED)
    op = services.prune_sessions(actor=SYSTEM, instance=alice_instance, enqueue=False)
    op = run_operation(op.pk)
    assert op.state == Operation.State.FAILED
    assert "Start the instance" in op.error
