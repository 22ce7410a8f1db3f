import io
import tarfile
import threading
from datetime import date, timedelta

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone

from accounts.models import AuditEvent
from accounts.services import SYSTEM
from instances.models import InstanceEvent, Operation
from instances.operations import run_operation
from sessions_mgmt import backup_store, services
from sessions_mgmt.models import Backup
from sessions_mgmt.services import backups, restore


def _cold_tgz() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (
            ("openclaw.json", b"{}"),
            ("agents/main/agent/openclaw-agent.sqlite", b"x"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _stored_backup(instance, **kwargs) -> Backup:
    b = Backup.objects.create(
        instance=instance,
        organization_id=instance.organization_id,
        kind=Backup.Kind.MANUAL,
        state=Backup.State.SUCCEEDED,
        **kwargs,
    )
    written = backup_store.write_encrypted(f"t/{b.pk.hex}.cfbk", [_cold_tgz()])
    Backup.objects.filter(pk=b.pk).update(
        storage_name=written.name,
        sha256=written.sha256,
        size_bytes=written.size,
        manifest={"method": "cold-volume-tar", "session_keys": ["agent:main:a"]},
        session_count=1,
    )
    b.refresh_from_db()
    return b


@pytest.mark.django_db(transaction=True)
def test_two_nightly_runs_at_once_make_exactly_one_backup_per_instance(alice_instance, monkeypatch):
    calls = []

    def fake_create_now(*, instance, kind, operation=None, backup=None):
        calls.append(backup.pk)
        Backup.objects.filter(pk=backup.pk).update(state=Backup.State.SUCCEEDED)
        return backup

    monkeypatch.setattr(backups, "backup_create_now", fake_create_now)
    barrier = threading.Barrier(2)
    errors = []

    def run():
        try:
            barrier.wait()
            services.nightly_backup(instance=alice_instance, nightly_date=date(2026, 11, 25))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert Backup.objects.filter(instance=alice_instance, kind="nightly").count() == 1
    assert len(calls) == 1
    # And a later run the same day does nothing.
    assert services.nightly_backup(instance=alice_instance, nightly_date=date(2026, 11, 25)) is None
    assert Backup.objects.filter(instance=alice_instance).count() == 1


def test_a_failed_backup_is_marked_failed_and_raises(alice_instance, fake_runtime):
    from instances.operations import OperationError

    fake_runtime.errors["inspect"] = RuntimeError("engine down")
    with pytest.raises(OperationError):
        services.backup_create_now(instance=alice_instance, kind=Backup.Kind.MANUAL)
    b = Backup.objects.get()
    assert b.state == Backup.State.FAILED and b.error and not b.storage_name


def test_a_corrupted_backup_is_refused_by_its_checksum_and_nothing_changes(
    alice_instance, fake_runtime
):
    backup = _stored_backup(alice_instance)
    path = backup_store.backup_storage().path(backup.storage_name)
    with open(path, "r+b") as fh:
        fh.seek(30)
        fh.write(b"\xff\xff")
    op = services.restore_request(actor=SYSTEM, instance=alice_instance, backup=backup)
    op = run_operation(op.pk)
    assert op.state == Operation.State.FAILED
    assert "integrity" in op.error and "nothing was changed" in op.error
    assert fake_runtime.calls == []  # the engine was never touched
    assert Backup.objects.count() == 1  # no pre-restore backup either
    alice_instance.refresh_from_db()
    assert alice_instance.status == "running"


def test_restore_refuses_a_backup_of_another_instance(alice_instance, charlie_instance):
    from django.core.exceptions import ValidationError

    backup = _stored_backup(charlie_instance)
    with pytest.raises(ValidationError):
        services.restore_request(actor=SYSTEM, instance=alice_instance, backup=backup)


def test_cold_archive_becomes_the_volume_tar_unchanged_and_hot_archive_is_rewritten():
    cold = _cold_tgz()
    out = b"".join(restore.volume_tar([cold], {"method": "cold-volume-tar"}))
    with tarfile.open(fileobj=io.BytesIO(out)) as tar:
        assert sorted(tar.getnames()) == [
            "agents/main/agent/openclaw-agent.sqlite",
            "openclaw.json",
        ]
    root = "2026-11-25T17-21-03.433+00-00-openclaw-backup"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in ("manifest.json", "payload/posix/home/node/.openclaw/openclaw.json"):
            info = tarfile.TarInfo(f"{root}/{name}")
            info.size = 2
            tar.addfile(info, io.BytesIO(b"{}"))
    out = b"".join(
        restore.volume_tar([buf.getvalue()], {"method": "openclaw-backup", "archive_root": root})
    )
    with tarfile.open(fileobj=io.BytesIO(out)) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["openclaw.json"]
    assert members[0].uid == 1000


def test_a_hot_archive_entry_with_a_long_path_in_a_pax_header_lands_at_its_volume_path():
    root = "2026-11-25T17-21-03.433+00-00-openclaw-backup"
    deep = "agents/main/sessions/" + "0f" * 30 + ".jsonl"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"{root}/payload/posix/home/node/.openclaw/{deep}")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    manifest = {"method": "openclaw-backup", "archive_root": root}

    out = b"".join(restore.volume_tar([buf.getvalue()], manifest))

    with tarfile.open(fileobj=io.BytesIO(out)) as tar:
        assert tar.getnames() == [deep]


def _b(instance, kind, days_ago, state=Backup.State.SUCCEEDED):
    created = timezone.now() - timedelta(days=days_ago)
    return Backup(
        instance=instance,
        organization_id=instance.organization_id,
        kind=kind,
        state=state,
        created_at=created,
        nightly_date=created.date() if kind == Backup.Kind.NIGHTLY else None,
    )


def test_retention_keeps_7_daily_4_weekly_and_recent_manual_backups(alice_instance):
    nightly = [_b(alice_instance, "nightly", d) for d in range(60)]
    manual_old = _b(alice_instance, "manual", 20)
    manual_new = _b(alice_instance, "manual", 2)
    for b in [*nightly, manual_old, manual_new]:
        b.pk = __import__("uuid").uuid4()
    expired = services.backups_to_expire(
        [*nightly, manual_old, manual_new], daily=7, weekly=4, now=timezone.now()
    )
    kept = {b.pk for b in [*nightly, manual_old, manual_new]} - {b.pk for b in expired}
    kept_nightly = [b for b in nightly if b.pk in kept]
    assert all(b.pk in kept for b in nightly[:7])
    assert 7 < len(kept_nightly) <= 11
    assert manual_new.pk in kept and manual_old.pk not in kept
    assert max(b.created_at for b in kept_nightly) == nightly[0].created_at


def test_apply_retention_deletes_files_and_marks_rows_expired(alice_instance):
    old = _stored_backup(alice_instance)
    Backup.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
    new = _stored_backup(alice_instance)
    assert services.apply_retention(instance=alice_instance) == 1
    old.refresh_from_db()
    assert old.state == Backup.State.EXPIRED and old.storage_name == ""
    assert not backup_store.backup_storage().exists(f"t/{old.pk.hex}.cfbk")
    new.refresh_from_db()
    assert new.state == Backup.State.SUCCEEDED


def test_an_instance_without_a_good_backup_for_26_hours_raises_one_alert_a_day(alice_instance):
    from instances.models import Instance

    Instance.objects.filter(pk=alice_instance.pk).update(
        created_at=timezone.now() - timedelta(days=3)
    )
    alice_instance.organization.billing_email = "billing@alice.example"
    alice_instance.organization.save()
    _stored_backup(alice_instance)
    Backup.objects.update(created_at=timezone.now() - timedelta(hours=27))
    overdue = services.check_backup_freshness()
    assert overdue == [alice_instance]
    assert InstanceEvent.objects.filter(instance=alice_instance, kind="backup_overdue").count() == 1
    assert AuditEvent.objects.filter(action="backup.overdue").count() == 1
    assert mail.outbox[0].to == ["billing@alice.example"]
    assert services.check_backup_freshness() == []  # not again within the day
    _stored_backup(alice_instance)  # a fresh one: nothing overdue any more
    InstanceEvent.objects.all().delete()
    assert services.check_backup_freshness() == []


def test_backup_request_queues_a_backup_operation_and_audits(alice_instance):
    op = services.backup_request(actor=SYSTEM, instance=alice_instance)
    assert op.kind == Operation.Kind.BACKUP and op.params == {"kind": "manual"}
    assert AuditEvent.objects.filter(action="backup.requested").exists()


def test_nightly_fan_out_uses_bounded_lanes():
    from sessions_mgmt.tasks import lanes

    ids = list(range(7))
    assert lanes(ids, 2) == [[0, 2, 4, 6], [1, 3, 5]]
    assert lanes(ids, 0) == [ids]
    assert lanes([], 3) == []
