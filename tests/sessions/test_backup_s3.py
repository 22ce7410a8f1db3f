"""Backups in S3-compatible object storage (moto's server on loopback, tests/fakes/s3.py):
point-in-time backups that cost only what changed, a restore from the store after the volume
and the local directory are gone, any point restorable, an outage of the store, the nightly
proof catching a corrupted object. OpenClaw and the engine are the fakes (tests/fakes/runtime.py,
a session store kept in the volume); tests/sessions/test_docker_backups.py runs the same story on
the real engine and image."""

import json
import os
import shutil
from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from accounts.services import SYSTEM
from instances import operations
from instances import services as instance_services
from instances.models import Instance, InstanceEvent
from sessions_mgmt import backup_store, selectors, services, tasks
from sessions_mgmt.models import Backup, BackupProof
from sessions_mgmt.services import proofs

from .helpers import STORE, offline_sessions_program

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


@pytest.fixture
def instance(org, fake_runtime, volume_openclaw):
    op = instance_services.instance_deploy(actor=SYSTEM, organization=org, name="bot", **DEPLOY)
    op = operations.run_operation(op.pk)
    assert op.state == "succeeded", op.error_detail
    return Instance.objects.get(pk=op.instance_id)


@pytest.fixture
def proof_programs(fake_runtime):
    """What the proof runs in its helpers: OpenClaw's offline session list and config validate,
    and node reading the restored store (here: the fake store's JSON in the volume)."""
    from instances.runtime.types import STATE_DIR

    def openclaw(argv, fs):
        if argv[1:3] == ["config", "validate"]:
            ok = fs.read(f"{STATE_DIR}/openclaw.json") is not None
            return (0, b'{"valid":true}', b"") if ok else (1, b"", b"missing config")
        return offline_sessions_program(argv, fs)

    def node(argv, fs):
        raw = fs.read(f"{STATE_DIR}/{STORE}")
        keys = sorted(json.loads(raw)) if raw else []
        out = {"agents": 1, "key": keys[-1] if keys else None, "events": 2 if keys else 0}
        return 0, json.dumps({**out, "last_event_ok": bool(keys)}).encode(), b""

    fake_runtime.programs["openclaw"] = openclaw
    fake_runtime.programs["node"] = node


def point(instance) -> Backup:
    assert tasks.run_point_backup(str(instance.pk)) == "done"
    return Backup.objects.filter(instance=instance, kind="incremental").latest("created_at")


def keys_of(oc) -> set[str]:
    return {r.key for r in oc.list_sessions().rows}


def restore(instance, backup):
    op = operations.run_operation(
        services.restore_request(actor=SYSTEM, instance=instance, backup=backup).pk
    )
    assert op.state == "succeeded", (op.error_detail, op.steps)
    return op


def test_points_land_in_object_storage_and_restore_after_the_volume_and_local_dir_are_gone(
    instance, s3_store, volume_openclaw, fake_runtime, settings
):
    oc = volume_openclaw(instance)
    oc.add("agent:main:first")
    fake_runtime.volumes[instance.volume_name].put("workspace/big.bin", os.urandom(400_000))
    p1 = point(instance)
    assert p1.state == "succeeded", p1.error
    oc.add("agent:main:second")
    p2 = point(instance)
    assert p2.state == "succeeded", p2.error
    keys = s3_store.keys(s3_store.bucket)
    assert p1.storage_name in [k.removeprefix("backups/") for k in keys]
    assert all(
        k.startswith(f"backups/org-{instance.organization_id}/{instance.pk.hex}/") for k in keys
    )
    # The second point stores what changed, not the state again.
    assert p2.size_bytes < 0.05 * p1.size_bytes, (p2.size_bytes, p1.size_bytes)
    assert p2.manifest["session_keys"] == ["agent:main:first", "agent:main:second"]
    assert not os.path.exists(os.path.join(settings.FLEET_BACKUP_DIR, "org-"))

    # The machine loses the volume and anything kept locally.
    fake_runtime.volumes[instance.volume_name].files.clear()
    shutil.rmtree(settings.FLEET_BACKUP_DIR, ignore_errors=True)
    restore(instance, p2)
    assert keys_of(oc) == {"agent:main:first", "agent:main:second"}
    assert len(fake_runtime.volumes[instance.volume_name].files["workspace/big.bin"]) == 400_000

    # An earlier point: what came after it is gone, what came before is intact.
    restore(instance, p1)
    assert keys_of(oc) == {"agent:main:first"}


def test_the_store_down_for_an_interval_fails_visibly_lists_nothing_and_the_next_run_catches_up(
    instance, s3_store, volume_openclaw
):
    oc = volume_openclaw(instance)
    oc.add("agent:main:a")
    good = point(instance)
    oc.add("agent:main:b")
    s3_store.stop()
    Backup.objects.filter(pk=good.pk).update(created_at=timezone.now() - timedelta(minutes=20))
    assert tasks.points_due() == [instance.pk]
    failed = point(instance)
    assert failed.state == "failed"
    assert "storage did not answer" in failed.error
    # Nothing half-written is offered as a restore point.
    restorable = selectors.restorable_backups(instance=instance)
    assert [b.pk for b in restorable] == [good.pk]
    status = selectors.backup_status(instance=instance)
    assert status["failing"] and "storage did not answer" in status["message"]
    # Not retried in a storm: the next tick waits POINT_RETRY_SECONDS.
    assert tasks.points_due() == []
    s3_store.start()
    later = timezone.now() + timedelta(seconds=tasks.POINT_RETRY_SECONDS + 1)
    assert tasks.points_due(now=later) == [instance.pk]
    Backup.objects.filter(pk=failed.pk).update(created_at=timezone.now() - timedelta(minutes=3))
    caught_up = point(instance)
    assert caught_up.state == "succeeded", caught_up.error
    assert caught_up.manifest["session_keys"] == ["agent:main:a", "agent:main:b"]
    assert not selectors.backup_status(instance=instance)["failing"]
    # Every object in the bucket belongs to a succeeded point (or is swept by retention).
    services.apply_retention(instance=instance)
    named = set()
    for b in Backup.objects.filter(state="succeeded"):
        named |= {b.storage_name, *b.manifest.get("packs", [])}
    assert {k.removeprefix("backups/") for k in s3_store.keys(s3_store.bucket)} <= named


def test_the_nightly_proof_restores_into_a_scratch_volume_and_records_success(
    instance, s3_store, volume_openclaw, fake_runtime, proof_programs
):
    volume_openclaw(instance).add("agent:main:a")
    p = point(instance)
    proof = proofs.prove_backup(instance=instance)
    assert proof.ok, proof.error
    assert proof.backup_id == p.pk
    assert proof.checks["sessions"] == {"restored": 1, "manifest": 1, "missing": 0}
    assert proof.checks["transcript"]["events"] == 2 and proof.checks["config"]["valid"]
    assert not [v for v in fake_runtime.volumes if "-proof-" in v]  # scratch volume removed
    assert proofs.proven_share() == (1, 1)
    assert mail.outbox == []


def test_the_nightly_proof_catches_a_flipped_byte_in_the_store_and_earlier_points_restore(
    instance, s3_store, volume_openclaw, proof_programs, settings
):
    settings.ADMINS = [("Staff", "staff@clawfleet.test")]
    oc = volume_openclaw(instance)
    oc.add("agent:main:a")
    early = point(instance)
    Backup.objects.filter(pk=early.pk).update(created_at=timezone.now() - timedelta(minutes=20))
    oc.add("agent:main:b")
    late = point(instance)
    s3_store.flip_byte(s3_store.bucket, f"backups/{late.manifest['pack']}")

    proof = tasks.prove_backups.run() and BackupProof.objects.get()
    assert not proof.ok and "corrupt" in proof.error
    late.refresh_from_db()
    assert late.state == "failed" and "restore proof" in late.error
    assert [m.to for m in mail.outbox] == [["staff@clawfleet.test"]]
    assert "Backup proof failed" in mail.outbox[0].subject
    assert InstanceEvent.objects.filter(instance=instance, kind="backup_proof_failed").exists()
    assert proofs.proven_share() == (0, 1)
    # The earlier point is still offered and restores.
    assert [b.pk for b in selectors.restorable_backups(instance=instance)] == [early.pk]
    restore(instance, early)
    assert keys_of(oc) == {"agent:main:a"}


def test_a_full_backup_made_with_the_old_field_key_scheme_restores_after_backups_get_their_keys(
    instance, s3_store, volume_openclaw, settings, monkeypatch
):
    from fleet import fields

    oc = volume_openclaw(instance)
    oc.add("agent:main:old")
    # Before this change backups were sealed with the field keys.
    with monkeypatch.context() as m:
        m.setattr(backup_store, "encrypt_bytes", fields.encrypt_bytes)
        old = operations.run_operation(services.backup_request(actor=SYSTEM, instance=instance).pk)
    backup = Backup.objects.get(pk=old.params["backup_id"])
    oc.add("agent:main:later")
    from cryptography.fernet import Fernet

    settings.BACKUP_ENCRYPTION_KEYS = [
        Fernet.generate_key().decode(),
        *settings.BACKUP_ENCRYPTION_KEYS,
    ]
    restore(instance, backup)
    assert keys_of(oc) == {"agent:main:old"}


def test_retention_keeps_the_plans_points_and_never_the_last_good_backup(instance, s3_store):
    now = timezone.now()
    rows = [
        Backup(
            instance=instance,
            organization_id=instance.organization_id,
            kind="incremental",
            state="succeeded",
            created_at=now - timedelta(hours=h),
        )
        for h in (1, 47, 49, 100)
    ]
    expired = services.backups_to_expire(rows, daily=7, weekly=4, now=now, point_hours=48)
    assert {round((now - b.created_at).total_seconds() / 3600) for b in expired} == {49, 100}
    only_old = rows[3:]
    assert services.backups_to_expire(only_old, daily=7, weekly=4, now=now, point_hours=48) == []


def test_the_instance_page_says_where_backups_are_kept_and_when_they_are_failing(
    instance, s3_store, volume_openclaw, client, alice
):
    volume_openclaw(instance).add("agent:main:a")
    point(instance)
    client.force_login(alice)
    page = client.get(f"/instances/{instance.pk}/").content.decode()
    assert f"Object storage s3://{s3_store.bucket}/backups" in page
    assert "a point every 15 minutes, each kept 48 hours; 7 daily and 4 weekly" in page
    assert "Backups are failing" not in page
    assert "Point in time" in page  # the point is listed, with its restore link
    s3_store.stop()
    Backup.objects.update(created_at=timezone.now() - timedelta(minutes=20))
    point(instance)
    page = client.get(f"/instances/{instance.pk}/").content.decode()
    assert "Backups are failing" in page and "storage did not answer" in page
    backups_page = client.get(reverse("sessions_mgmt:backups", args=[instance.pk])).content.decode()
    assert "Backups are failing" in backups_page


def test_the_admin_shows_the_last_proof_where_backups_are_kept_and_the_proven_share(
    instance, s3_store, volume_openclaw, proof_programs, client, settings
):
    from tests.admin.door import sign_in_staff
    from tests.factories import UserFactory

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    root = UserFactory(email="root@clawfleet.test", is_staff=True, is_superuser=True)
    sign_in_staff(client, root)
    volume_openclaw(instance).add("agent:main:a")
    point(instance)
    proofs.prove_backup(instance=instance)
    page = client.get("/admin/sessions_mgmt/backupproof/").content.decode()
    assert "1 of 1 instances proven in the last 7 days (100%)" in page
    page = client.get(f"/admin/instances/instance/{instance.pk}/change/").content.decode()
    assert "✓" in page and f"s3://{s3_store.bucket}/backups/org-{instance.organization_id}" in page


def test_the_retention_job_expires_old_points_but_keeps_every_pack_a_kept_point_names(
    instance, s3_store, volume_openclaw, fake_runtime
):
    oc = volume_openclaw(instance)
    fake_runtime.volumes[instance.volume_name].put("workspace/big.bin", os.urandom(300_000))
    oc.add("agent:main:a")
    p1 = point(instance)
    oc.add("agent:main:b")
    p2 = point(instance)
    old = timezone.now() - timedelta(hours=60)
    Backup.objects.filter(pk__in=[p1.pk, p2.pk]).update(created_at=old)
    oc.add("agent:main:c")
    p3 = point(instance)
    assert p1.manifest["pack"] in p3.manifest["packs"]  # the big file's blocks are still p1's

    assert tasks.backup_retention.run() == 2
    p1.refresh_from_db()
    p2.refresh_from_db()
    assert (p1.state, p2.state) == ("expired", "expired")
    stored = {k.removeprefix("backups/") for k in s3_store.keys(s3_store.bucket)}
    assert p1.manifest["pack"] in stored and p1.manifest.get("pack_left")
    assert not {f"{n}" for n in stored if n.endswith(".cfpt")} - {p3.storage_name}
    restore(instance, p3)
    assert keys_of(oc) == {"agent:main:a", "agent:main:b", "agent:main:c"}


def test_the_plan_sets_the_point_interval_and_how_long_points_are_kept(instance, alice_org):
    from billing.models import Subscription

    plan = Subscription.objects.get(organization=alice_org).plan
    plan.backup_interval_minutes, plan.backup_point_hours = 5, 24
    plan.save()
    policy = services.backups.backup_policy(instance)
    assert (policy["interval_minutes"], policy["point_hours"]) == (5, 24)
    Backup.objects.create(
        instance=instance,
        organization_id=instance.organization_id,
        kind="incremental",
        state="succeeded",
        storage_name="x",
        created_at=timezone.now() - timedelta(minutes=4),
    )
    assert tasks.points_due() == []
    assert tasks.points_due(now=timezone.now() + timedelta(minutes=2)) == [instance.pk]
    assert "a point every 5 minutes, each kept 24 hours" in services.backups.policy_text(policy)
