"""Issue 15's acceptance on the real engine, image and mock LLM, with backups in a real
S3-compatible server on loopback (moto, tests/fakes/s3.py): points in time reach object storage,
a restore from it after the volume and the local directory are gone brings every session and the
last turn back (the mock LLM sees the earlier turns when the conversation continues), an earlier
point restores without what came after, the store down for an interval fails visibly and the
next run catches up, and the nightly proof catches a flipped byte in the store.

The deploy runs on the real worker; the points, restores and proofs run in this process (the
worker's environment has no S3 settings; the services are the same ones the beat task calls).
"""

from __future__ import annotations

import shutil
import time
import uuid
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from accounts.services import SYSTEM
from instances.operations import run_operation
from sessions_mgmt import selectors, services, tasks
from sessions_mgmt.models import Backup
from sessions_mgmt.services import proofs

from ..fleet_fixtures import deploy_and_wait
from .test_docker_sessions import chat, openclaw_keys, transcript

pytestmark = [pytest.mark.docker, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _patient(settings):
    settings.FLEET_GATEWAY_WEB_TIMEOUT = 120
    settings.FLEET_READY_TIMEOUT = max(settings.FLEET_READY_TIMEOUT, 300)


def point(instance) -> Backup:
    started = time.monotonic()
    assert tasks.run_point_backup(str(instance.pk)) == "done"
    b = Backup.objects.filter(instance=instance, kind="incremental").latest("created_at")
    print(f"point {b.state}: {b.size_bytes} bytes stored in {time.monotonic() - started:.1f} s")
    return b


def restore(instance, backup):
    """The restore operation, run here rather than on the worker (whose environment does not
    point at this test's S3 server): the same handler, requested without enqueueing."""
    from instances.models import Operation
    from instances.operations import operation_request

    op = operation_request(
        actor=SYSTEM,
        instance=instance,
        kind=Operation.Kind.RESTORE,
        params={"backup_id": str(backup.pk)},
        enqueue=False,
    )
    op = run_operation(op.pk)
    assert op.state == "succeeded", (op.error_detail, op.steps)
    instance.refresh_from_db()
    return op


def test_points_in_object_storage_restore_any_point_survive_an_outage_and_are_proven(
    alice_org,
    entitled_org,
    mock_prices,
    mock_llm,
    openclaw_image,
    docker_runtime,
    celery_worker_process,
    s3_store,
    settings,
):
    settings.ADMINS = [("Staff", "staff@clawfleet.test")]
    entitled_org(alice_org)
    instance, _ = deploy_and_wait(
        alice_org, name=f"dur-{uuid.uuid4().hex[:6]}", base_url=mock_llm.container_url
    )
    marker = uuid.uuid4().hex[:10]
    chat(instance, "early", f"first turn {marker}")
    chat(instance, "early", f"second turn {marker}")
    turns_before = [r for r in mock_llm.requests() if marker in r["last_user_message"]]
    p1 = point(instance)
    assert p1.state == "succeeded", p1.error
    assert "agent:main:early" in p1.manifest["session_keys"]

    chat(instance, "later", "a conversation after the first point")
    p2 = point(instance)
    assert p2.state == "succeeded", p2.error
    assert {"agent:main:early", "agent:main:later"} <= set(p2.manifest["session_keys"])
    assert p2.size_bytes < p1.size_bytes / 3, (p2.size_bytes, p1.size_bytes)
    # The session list as the beat would have mirrored it by now (the deploy's own sync ran
    # before these conversations began).
    services.sync_instance_sessions(instance=instance, full=True)
    early_transcript = transcript(instance, "agent:main:early")
    assert len(early_transcript) == 4

    # The store down for an interval: the point fails visibly, nothing half-written is listed.
    s3_store.stop()
    failed = point(instance)
    assert failed.state == "failed" and "storage did not answer" in failed.error
    assert selectors.backup_status(instance=instance)["failing"]
    assert failed.pk not in {b.pk for b in selectors.restorable_backups(instance=instance)}
    s3_store.start()
    Backup.objects.filter(pk=failed.pk).update(created_at=timezone.now() - timedelta(minutes=3))
    p3 = point(instance)
    assert p3.state == "succeeded", p3.error
    assert not selectors.backup_status(instance=instance)["failing"]

    # The machine loses the instance's volume and the local backup directory.
    docker_runtime.stop(instance.container_name, timeout=30)
    docker_runtime.remove(instance.container_name)
    docker_runtime.remove_volume(instance.volume_name)
    shutil.rmtree(settings.FLEET_BACKUP_DIR, ignore_errors=True)
    started = time.monotonic()
    restore(instance, p3)
    print(f"restore from object storage: {time.monotonic() - started:.1f} s")
    assert instance.status == "running"
    assert {"agent:main:early", "agent:main:later"} <= openclaw_keys(instance)
    assert transcript(instance, "agent:main:early") == early_transcript
    # The conversation continues where it was: the model sees the earlier turns.
    chat(instance, "early", f"third turn {marker}")
    third = [r for r in mock_llm.requests() if f"third turn {marker}" in r["last_user_message"]]
    assert third and third[-1]["message_count"] >= turns_before[-1]["message_count"] + 2

    # An earlier point: what came after it is gone, what came before is intact.
    restore(instance, p1)
    keys = openclaw_keys(instance)
    assert "agent:main:early" in keys and "agent:main:later" not in keys
    assert transcript(instance, "agent:main:early") == early_transcript

    # The nightly proof: a good point is proven; a flipped byte in the store is caught.
    good = proofs.prove_backup(backup=p2)
    assert good.ok, good.error
    assert good.checks["sessions"]["missing"] == 0
    assert good.checks["transcript"]["events"] > 0 and good.checks["config"]["valid"]
    p3.refresh_from_db()
    s3_store.flip_byte(s3_store.bucket, f"backups/{p3.manifest['pack'] or p3.storage_name}")
    bad = proofs.prove_backup(backup=p3)
    assert not bad.ok and "corrupt" in bad.error
    p3.refresh_from_db()
    assert p3.state == "failed"
    assert any("Backup proof failed" in m.subject for m in mail.outbox)
    restorable = {b.pk for b in selectors.restorable_backups(instance=instance)}
    assert {p1.pk, p2.pk} <= restorable and p3.pk not in restorable
    restore(instance, p2)
    assert {"agent:main:early", "agent:main:later"} <= openclaw_keys(instance)
