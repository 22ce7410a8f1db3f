"""The session mirror, pruning, backups and restore on the real engine, image and mock LLM.

One deployed instance, one scenario (the worker only sees committed rows and pytest-django
flushes the tables after each transactional test, so the steps share one test).

Ageing sessions for the prune test: OpenClaw has no clock override, so we write the old
sessions through OpenClaw's own write path with a shifted clock. With the gateway stopped, a
one-off container of the instance's image on its volume runs `openclaw agent --local` with
NODE_OPTIONS importing a 10-line module that shifts `Date` 40 days back. OpenClaw records those
turns (user message, model call, usage) as it would 40 days ago; our mirror only reads them.
"""

from __future__ import annotations

import contextlib
import time
import urllib.parse
import uuid
from decimal import Decimal

import pytest
import requests

from accounts.services import SYSTEM
from billing.pricing import price_usage
from sessions_mgmt import backup_store, services
from sessions_mgmt.models import Backup, Session

from ..fleet_fixtures import deploy_and_wait, wait_for_operation

pytestmark = [pytest.mark.docker, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

SHIFT_CLOCK_JS = (
    "const o=Number(process.env.CLAWFLEET_CLOCK_OFFSET_MS||0);const R=globalThis.Date;"
    "class S extends R{constructor(...a){if(a.length===0)super(R.now()+o);else super(...a)}"
    "static now(){return R.now()+o}}globalThis.Date=S;"
)


@pytest.fixture(autouse=True)
def _patient_transcript_reads(settings):
    """Transcripts are read here through the web tier's path (transcript_page), whose gateway
    timeout is short for a web request (10 s); a CLI call right after a restart, on a machine
    busy with other containers, can take longer. The test checks what is read, not how fast."""
    settings.FLEET_GATEWAY_WEB_TIMEOUT = 120


@pytest.fixture(autouse=True)
def _backup_dir():
    """The worker process writes and reads backups too: keep the shared default directory."""
    backup_store.backup_storage.cache_clear()
    yield
    for b in Backup.objects.exclude(storage_name=""):
        backup_store.delete(b.storage_name)


def chat(instance, key: str, text: str) -> None:
    r = requests.post(
        f"http://127.0.0.1:{instance.host_port}/v1/chat/completions",
        headers={
            "Authorization": f"Bearer {instance.gateway_token}",
            "x-openclaw-session-key": key,
        },
        json={"model": "openclaw", "messages": [{"role": "user", "content": text}]},
        timeout=120,
    )
    assert r.status_code == 200, r.status_code


def transcript(instance, key: str) -> list[tuple]:
    rows, before = [], None
    while True:
        page, before = services.transcript_page(
            instance=instance, session_key=key, before=before, limit=50
        )
        rows = [(m.id, m.role, m.text) for m in page] + rows
        if before is None:
            return rows


def openclaw_keys(instance) -> set[str]:
    return {r.key for r in services.client_for(instance).list_sessions().rows}


def synced(instance, **kwargs):
    instance.refresh_from_db()
    last = None
    for _ in range(5):  # right after a start OpenClaw's usage cache may still be warming up
        last = services.sync_instance_sessions(instance=instance, full=True, **kwargs)
        if not last.pending:
            return last
        time.sleep(2)
    return last


def run_old_turn(docker_runtime, instance, key: str, text: str, days: int) -> None:
    """One turn written by OpenClaw itself, with its clock `days` back (gateway stopped)."""
    from instances.runtime import BASE_ENV

    js = "data:text/javascript," + urllib.parse.quote(SHIFT_CLOCK_JS)
    container = docker_runtime.client.containers.run(
        services.image_for_instance(instance),
        ["openclaw", "agent", "--local", "--session-key", key, "--message", text, "--json"],
        entrypoint=[],
        user="1000:1000",
        volumes={instance.volume_name: {"bind": "/home/node/.openclaw", "mode": "rw"}},
        environment={
            **BASE_ENV,
            "NODE_OPTIONS": f"--import={js}",
            "CLAWFLEET_CLOCK_OFFSET_MS": str(-days * 86400000),
        },
        extra_hosts={"host.docker.internal": "host-gateway"},
        detach=True,
    )
    try:
        assert container.wait(timeout=600)["StatusCode"] == 0
    finally:
        import docker.errors

        # The engine is shared: a cleanup elsewhere may be removing the exited one-off already.
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            container.remove(force=True)


def test_sessions_backups_restore_and_prune_on_a_real_instance(
    alice_org,
    entitled_org,
    mock_prices,
    mock_llm,
    openclaw_image,
    docker_runtime,
    celery_worker_process,
):
    entitled_org(alice_org)
    instance, _ = deploy_and_wait(
        alice_org, name=f"sess-{uuid.uuid4().hex[:6]}", base_url=mock_llm.container_url
    )
    markers = {f"conv-{i}": f"marker-{uuid.uuid4().hex[:10]}" for i in range(3)}

    # 1. Three conversations through the HTTP API -> three Session rows, tokens as the mock saw.
    for key, marker in markers.items():
        chat(instance, key, f"Hello number {key} {marker}")
        chat(instance, key, f"And a second message {marker}")
    synced(instance)
    for key, marker in markers.items():
        s = Session.objects.get(instance=instance, session_key=f"agent:main:{key}")
        seen = [r for r in mock_llm.requests() if marker in r["last_user_message"]]
        assert len(seen) == 2
        assert s.input_tokens == sum(r["prompt_tokens"] for r in seen), key
        assert s.output_tokens == sum(r["completion_tokens"] for r in seen), key
        assert s.message_count == 4
        assert s.cost_usd == price_usage(
            "custom", "mock-model", s.input_tokens, s.output_tokens, 0, 0
        )
        assert s.cost_usd == (
            Decimal(s.input_tokens) * 3 + Decimal(s.output_tokens) * 15
        ) / Decimal(1_000_000)
        assert s.openclaw_cost_usd == s.cost_usd  # the config carries our prices
        assert s.status == Session.Status.LIVE
    keys = {f"agent:main:{k}" for k in markers}
    before = {k: transcript(instance, k) for k in keys}
    assert all(len(t) == 4 for t in before.values())

    # 2. A crash (SIGKILL) and a start lose no session.
    docker_runtime.client.containers.get(instance.container_name).kill()
    docker_runtime.start(instance.container_name)
    docker_runtime.wait_ready(instance.host_port, timeout=180, name=instance.container_name)
    result = synced(instance)
    assert result.pruned == 0
    assert keys <= openclaw_keys(instance)
    assert {k: transcript(instance, k) for k in keys} == before

    # 3. Back up (hot, through OpenClaw), talk more, restore: exactly the backup's sessions.
    backup = services.backup_create_now(instance=instance, kind=Backup.Kind.MANUAL)
    assert backup.state == Backup.State.SUCCEEDED and backup.verified_at
    assert backup.manifest["method"] == "openclaw-backup"
    assert keys <= set(backup.manifest["session_keys"])
    backed_up = set(backup.manifest["session_keys"])
    chat(instance, "after-backup", "This one comes after the backup")
    synced(instance)
    assert Session.objects.filter(session_key="agent:main:after-backup").exists()

    # 3a. A corrupted copy of the file is refused by its checksum; nothing changes.
    storage = backup_store.backup_storage()
    bad = Backup.objects.create(
        instance=instance,
        organization=alice_org,
        kind="manual",
        state="succeeded",
        sha256=backup.sha256,
        manifest=backup.manifest,
        size_bytes=backup.size_bytes,
    )
    with storage.open(backup.storage_name, "rb") as fh:
        data = bytearray(fh.read())
    data[len(data) // 2] ^= 0xFF
    from django.core.files.base import ContentFile

    bad.storage_name = storage.save(f"test-corrupt-{bad.pk.hex}.cfbk", ContentFile(bytes(data)))
    bad.save(update_fields=["storage_name"])
    op = services.restore_request(actor=SYSTEM, instance=instance, backup=bad)
    op = wait_for_operation(op, 300, worker=celery_worker_process)
    assert op.state == "failed" and "integrity" in op.error
    assert "agent:main:after-backup" in openclaw_keys(instance)
    assert not Backup.objects.filter(kind=Backup.Kind.PRE_RESTORE).exists()

    # 3b. The real restore.
    op = services.restore_request(actor=SYSTEM, instance=instance, backup=backup)
    op = wait_for_operation(op, 600, worker=celery_worker_process)
    assert op.state == "succeeded", (op.error, op.error_detail, op.steps)
    instance.refresh_from_db()
    assert instance.status == "running"
    assert openclaw_keys(instance) == backed_up
    assert {k: transcript(instance, k) for k in keys} == before
    assert Backup.objects.filter(kind=Backup.Kind.PRE_RESTORE, state="succeeded").count() == 1
    synced(instance)
    assert (
        Session.objects.get(session_key="agent:main:after-backup").status == Session.Status.PRUNED
    )
    assert Session.objects.get(session_key="agent:main:conv-0").status == Session.Status.LIVE

    # 3c. docker kill, the reconcile loop restarts it ("starting" until its next pass), and a
    # restore comes before that pass: it ends running and ready, as the instance is wanted.
    from instances.reconcile import reconcile_host

    docker_runtime.client.containers.get(instance.container_name).kill()
    reconcile_host(instance.host)
    instance.refresh_from_db()
    assert (instance.desired_state, instance.status) == ("running", "starting")
    op = services.restore_request(actor=SYSTEM, instance=instance, backup=backup)
    op = wait_for_operation(op, 600, worker=celery_worker_process)
    assert op.state == "succeeded", (op.error, op.error_detail, op.steps)
    instance.refresh_from_db()
    assert (instance.status, instance.health) == ("running", "healthy")
    assert instance.running_since is not None
    assert docker_runtime.inspect(instance.container_name).running
    assert openclaw_keys(instance) == backed_up

    # 4. Prune "idle more than 30 days": two sessions written 40 days ago by OpenClaw itself.
    docker_runtime.stop(instance.container_name, timeout=30)
    for i in range(2):
        run_old_turn(docker_runtime, instance, f"agent:main:old-{i}", f"old talk {i}", days=40)
    docker_runtime.start(instance.container_name)
    docker_runtime.wait_ready(instance.host_port, timeout=180, name=instance.container_name)
    synced(instance)
    old = {"agent:main:old-0", "agent:main:old-1"}
    assert set(services.prune_preview(instance=instance)) == old
    op = services.prune_sessions(actor=SYSTEM, instance=instance)
    op = wait_for_operation(op, 300, worker=celery_worker_process)
    assert op.state == "succeeded", (op.error, op.error_detail, op.steps)
    remaining = openclaw_keys(instance)
    assert not (old & remaining)
    assert keys <= remaining
    pruned = set(
        Session.objects.filter(instance=instance, status="pruned").values_list(
            "session_key", flat=True
        )
    )
    assert pruned == old | {"agent:main:after-backup"}
