"""The nightly proof: a backup is a hope until it has been restored.

`prove_backup` restores one instance's latest good backup (any kind: nightly, point, manual)
into a scratch volume, in helper containers with no network, and checks it the way a customer
would notice: every session key of the manifest is there and the count holds, a transcript reads
back (OpenClaw's per-agent SQLite of the *restored copy*, never a live file), the config
validates (`openclaw config validate --json`). The result is a BackupProof row. A failed proof
alerts staff (mail_admins, an InstanceEvent, an audit row); a backup found corrupt or
incomplete is marked failed, so it is no longer offered as a restore point (earlier points stay).
The nightly task (`tasks.prove_backups`) proves one random instance, and any instance never
proven or not proven for 7 days first.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from datetime import timedelta

from django.core.mail import mail_admins
from django.db.models import Exists, OuterRef
from django.utils import timezone

from accounts.services import SYSTEM, audit
from instances.models import Instance, InstanceEvent

from .. import backup_store
from ..models import Backup, BackupProof
from . import access, backups, restore

log = logging.getLogger(__name__)

PROOF_WINDOW = timedelta(days=7)

# Reads the restored copy's per-agent store: the most recently updated session that has a
# transcript, how many events it holds and whether its last event decodes.
TRANSCRIPT_SCRIPT = r"""
const {DatabaseSync} = require('node:sqlite');
const fs = require('fs'), path = require('path');
const root = path.join(process.env.OPENCLAW_STATE_DIR || '/home/node/.openclaw', 'agents');
const out = {agents: 0, sessions_with_transcript: 0, key: null, events: 0, last_event_ok: false};
for (const agent of (fs.existsSync(root) ? fs.readdirSync(root) : [])) {
  const file = path.join(root, agent, 'agent', 'openclaw-agent.sqlite');
  if (!fs.existsSync(file)) continue;
  out.agents += 1;
  const db = new DatabaseSync(file);
  const rows = db.prepare(`SELECT n.session_key AS key, n.current_session_id AS sid,
      (SELECT count(*) FROM transcript_events e WHERE e.session_id = n.current_session_id) AS c
      FROM session_nodes n ORDER BY n.updated_at DESC`).all();
  for (const r of rows) {
    if (!r.c) continue;
    out.sessions_with_transcript += 1;
    if (out.key) continue;
    const last = db.prepare(`SELECT event_json, length(event_zstd) AS z FROM transcript_events
        WHERE session_id = ? ORDER BY seq DESC LIMIT 1`).get(r.sid);
    let ok = false;
    if (last && last.event_json) { try { JSON.parse(last.event_json); ok = true; } catch (e) {} }
    else if (last && last.z > 0) { ok = true; }
    Object.assign(out, {key: r.key, events: r.c, last_event_ok: ok});
  }
  db.close();
}
process.stdout.write(JSON.stringify(out));
"""


class ProofFailed(Exception):
    """A check of the restored state failed (the backup itself is at fault)."""


def choose_instance(*, now=None, rng: random.Random | None = None) -> Instance | None:
    """An instance with a good backup, chosen at random among those not proven in the last
    7 days (all of them when every one was)."""
    now = now or timezone.now()
    rng = rng or random.SystemRandom()
    with_backup = Backup.objects.filter(instance=OuterRef("pk"), state=Backup.State.SUCCEEDED)
    recent_proof = BackupProof.objects.filter(
        instance=OuterRef("pk"), ok=True, created_at__gte=now - PROOF_WINDOW
    )
    live = Instance.objects.filter(Exists(with_backup), host__isnull=False).exclude(
        status__in=[Instance.Status.DELETED, Instance.Status.PURGED]
    )
    ids = list(live.exclude(Exists(recent_proof)).values_list("pk", flat=True)) or list(
        live.values_list("pk", flat=True)
    )
    if not ids:
        return None
    return Instance.objects.select_related("host", "organization").get(pk=rng.choice(sorted(ids)))


def _check_sessions(runtime, volume, image, manifest) -> dict:
    restored = backups.offline_session_keys(runtime, volume, image)
    expected = manifest.get("session_keys") or []
    missing = sorted(set(expected) - set(restored))
    result = {"restored": len(restored), "manifest": len(expected), "missing": len(missing)}
    if missing or len(restored) < len(expected):
        raise ProofFailed(f"{len(missing)} sessions of the manifest are missing after restore")
    return result


def _check_transcript(runtime, volume, image, manifest) -> dict:
    code, out, err = runtime.run_in_volume(volume, image, ["node", "-e", TRANSCRIPT_SCRIPT])
    if code != 0:
        raise ProofFailed(f"the restored session store does not open (exit {code})")
    data = json.loads(out.decode(errors="replace") or "{}")
    if (manifest.get("session_keys") or []) and not (data.get("events") and data["last_event_ok"]):
        raise ProofFailed("no transcript of the restored sessions reads back")
    return data


def _check_config(runtime, volume, image) -> dict:
    code, out, _err = runtime.run_in_volume(
        volume, image, ["openclaw", "config", "validate", "--json"], timeout=300
    )
    if code != 0:
        raise ProofFailed(f"the restored config does not validate (exit {code})")
    return {"valid": True}


def prove_backup(
    *, instance: Instance | None = None, backup: Backup | None = None, now=None, rng=None
) -> BackupProof | None:
    """Restore `backup` (default: the newest good backup of `instance`, default: one chosen by
    `choose_instance`) into a scratch volume and check it. Never raises; returns the proof row."""
    now = now or timezone.now()
    if backup is not None:
        instance = backup.instance
    instance = instance or choose_instance(now=now, rng=rng)
    if instance is None:
        return None
    backup = backup or (
        Backup.objects.filter(instance=instance, state=Backup.State.SUCCEEDED)
        .order_by("-created_at")
        .first()
    )
    if backup is None:
        return None
    started = time.monotonic()
    proof_id = uuid.uuid4()
    checks: dict = {"backup_kind": backup.kind, "backup_created": backup.created_at.isoformat()}
    scratch = f"{instance.volume_name}-proof-{proof_id.hex[:8]}"
    runtime = None
    error = ""
    blame_backup = False
    try:
        runtime = access.runtime_for_instance(instance)
        image = access.image_for_instance(instance)
        manifest = backup.manifest or {}
        try:
            backups.verify_stored(backup)
            checks["checksum"] = True
            runtime.remove_volume(scratch)
            runtime.import_volume(
                scratch,
                image,
                restore.volume_tar(backups.archive_chunks(backup), manifest),
                clear=True,
                owner="1000:1000",
            )
        except backup_store.BackupCorrupt as exc:
            raise ProofFailed(f"the stored backup is corrupt: {exc}") from exc
        checks["sessions"] = _check_sessions(runtime, scratch, image, manifest)
        checks["transcript"] = _check_transcript(runtime, scratch, image, manifest)
        checks["config"] = _check_config(runtime, scratch, image)
    except ProofFailed as exc:
        error, blame_backup = str(exc), True
    except Exception as exc:  # noqa: BLE001 - the proof records every failure
        error = f"the proof could not run: {type(exc).__name__}: {str(exc)[:300]}"
    finally:
        if runtime is not None:
            try:
                runtime.remove_volume(scratch)
            except Exception as exc:  # noqa: BLE001
                log.warning("could not remove proof volume %s: %s", scratch, type(exc).__name__)
    proof = BackupProof.objects.create(
        id=proof_id,
        instance=instance,
        organization_id=instance.organization_id,
        backup=backup,
        ok=not error,
        checks=checks,
        error=error,
        seconds=round(time.monotonic() - started, 2),
    )
    if error:
        _alert(instance, backup, proof, blame_backup)
    return proof


def _alert(instance: Instance, backup: Backup, proof: BackupProof, blame_backup: bool) -> None:
    if blame_backup:
        # No longer offered as a restore point; earlier points stay restorable.
        Backup.objects.filter(pk=backup.pk, state=Backup.State.SUCCEEDED).update(
            state=Backup.State.FAILED,
            error=f"Failed its restore proof: {proof.error[:300]}",
        )
    InstanceEvent.objects.create(
        instance=instance,
        kind="backup_proof_failed",
        message=f"The restore proof of a backup failed: {proof.error[:200]}",
        data={"backup": str(backup.pk), "proof": str(proof.pk)},
    )
    audit(
        actor=SYSTEM,
        action="backup.proof_failed",
        organization=instance.organization,
        target=instance,
        data={
            "backup": str(backup.pk),
            "proof": str(proof.pk),
            "backup_marked_failed": blame_backup,
        },
    )
    mail_admins(
        f"Backup proof failed: {instance.name} ({instance.pk})",
        f"The nightly restore proof of backup {backup.pk} ({backup.get_kind_display()}, "
        f"{backup.created_at:%Y-%m-%d %H:%M} UTC) failed: {proof.error}\n"
        + (
            "The backup is marked failed; earlier backups remain restorable.\n"
            if blame_backup
            else "The backup was not marked failed (the proof itself could not run).\n"
        ),
        fail_silently=True,
    )


def proven_share(*, now=None) -> tuple[int, int]:
    """(instances with a good proof in the last 7 days, instances that have a good backup)."""
    now = now or timezone.now()
    with_backup = (
        Backup.objects.filter(state=Backup.State.SUCCEEDED)
        .values_list("instance_id", flat=True)
        .distinct()
    )
    total = (
        Instance.objects.filter(pk__in=with_backup)
        .exclude(status__in=[Instance.Status.DELETED, Instance.Status.PURGED])
        .count()
    )
    proven = (
        BackupProof.objects.filter(ok=True, created_at__gte=now - PROOF_WINDOW)
        .exclude(instance__status__in=[Instance.Status.DELETED, Instance.Status.PURGED])
        .values("instance_id")
        .distinct()
        .count()
    )
    return proven, total
