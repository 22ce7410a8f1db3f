"""Backups: take one (hot through OpenClaw, or a cold copy of the volume), the nightly run,
retention of backup files, and the freshness alert.

- Running instance (once its gateway answers: one just restarted is waited for):
  `openclaw backup create --verify --json` inside the container (SQLite online
  backup: consistent while it serves), archive in the container's /tmp (OpenClaw refuses an
  output path inside the state dir), streamed out with `cat`, then removed. Stopped instance: a
  cold tar of the whole volume through runtime.export_volume (includes -wal files), gzipped here.
- Then: encrypt in chunks (backup_store), SHA-256 of the stored bytes, write to backup storage,
  read back (decrypt, gunzip, list the tar) to prove the file restores; only then "succeeded"
  with `verified_at`. Empty or unreadable archives fail the backup.
- Every backup runs inside an Operation (kind backup, or the upgrade/delete/pause/restore that
  asked for it), so it holds the instance's one-active-operation lock and never overlaps a
  restore or an upgrade. The nightly run requests one per instance (`nightly_backup_request`) and
  runs it in its lane; an instance busy with another operation is retried later (tasks.py).
- Nightly: the Backup row is created first with its `nightly_date`; the unique constraint makes a
  second run on the same day find the existing row and do nothing.
- Which instances need a backup is one rule, `selectors.needs_backup`, for the nightly run, the
  freshness alert and the admin.
"""

from __future__ import annotations

import json
import logging
import tarfile
import time
from collections.abc import Iterator
from datetime import date, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.services import SYSTEM, Actor, audit
from fleet import hooks
from instances.models import Instance, InstanceEvent, Operation
from instances.openclaw.client import OpenClawError
from instances.operations import OperationError, operation_request

from .. import backup_store, selectors
from ..models import Backup
from . import access, quotas

log = logging.getLogger(__name__)

FRESHNESS_HOURS = int(selectors.BACKUP_MAX_AGE.total_seconds() // 3600)  # the alert's wording
HOT_BACKUP_DIR = "/tmp/clawfleet-backup"  # noqa: S108 - inside the container, not here


def _storage_name(backup: Backup) -> str:
    stamp = backup.created_at.strftime("%Y%m%dT%H%M%SZ")
    return (
        f"org-{backup.organization_id}/{backup.instance_id.hex}/"
        f"{stamp}-{backup.kind}-{backup.pk.hex[:8]}.cfbk"
    )


class NothingToBackUp(OperationError):
    """The instance holds no state (its volume is gone or empty): a restore goes on without a
    pre-restore backup; any other backup fails."""


def _container_running(instance: Instance, runtime) -> bool:
    """What the engine says, not the row: a pre-upgrade backup runs while the row says
    "upgrading" and the gateway still serves, and a cold copy of a live volume is inconsistent."""
    info = runtime.inspect(instance.container_name)
    return bool(info and getattr(info, "running", False))


def offline_session_keys(runtime, volume: str, image: str) -> list[str]:
    """OpenClaw's own offline session listing of a volume (helper container, no gateway)."""
    cmd = ["openclaw", "sessions", "--all-agents", "--limit", "all", "--json"]
    code, out, _err = runtime.run_in_volume(volume, image, cmd, timeout=300)
    if code != 0:
        raise OperationError("OpenClaw could not read the sessions of the restored state.")
    payload = _sessions_document(out)
    if payload is None:
        # A helper's output is its container log, which the runtime caps (1 MB): a large state's
        # listing (about 1 kB a session) comes back cut. Write it into the volume and read it.
        payload = _sessions_document(_listing_via_file(runtime, volume, image, cmd) or b"")
    if payload is None:
        log.warning(
            "offline session list of %s unreadable: %d bytes, starts %r, ends %r",
            volume,
            len(out),
            out[:120],
            out[-120:],
        )
        raise OperationError("OpenClaw's session list of the state could not be read.")
    return sorted({s["key"] for s in payload.get("sessions") or [] if s.get("key")})


LISTING_FILE = ".clawfleet-session-list.json"


def _listing_via_file(runtime, volume: str, image: str, cmd: list[str]) -> bytes | None:
    import shlex

    target = f'"$OPENCLAW_STATE_DIR"/{LISTING_FILE}'
    script = f"{shlex.join(cmd)} > {target}"
    try:
        code, _out, _err = runtime.run_in_volume(volume, image, ["sh", "-c", script], timeout=300)
        return runtime.read_file(volume, image, LISTING_FILE) if code == 0 else None
    finally:
        runtime.run_in_volume(volume, image, ["sh", "-c", f"rm -f {target}"], timeout=60)


def _sessions_document(out: bytes) -> dict | None:
    """The JSON object of `openclaw sessions --json` among whatever else it printed (log lines
    before it, a notice after it): the first object that decodes and has "sessions"."""
    text = out.decode(errors="replace")
    decoder = json.JSONDecoder()
    pos = text.find("{")
    while pos >= 0:
        try:
            doc, _end = decoder.raw_decode(text, pos)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and "sessions" in doc:
            return doc
        pos = text.find("{", pos + 1)
    return None


def inspect_archive(chunks) -> dict:
    """Read a gzipped tar stream to the end: entry count, and the files that make it a state."""
    reader = backup_store.IterReader(backup_store.gunzip_stream(chunks))
    files = 0
    has_config = has_sessions = False
    manifest = None
    with tarfile.open(fileobj=reader, mode="r|") as tar:
        for member in tar:
            name = member.name.lstrip("./")
            if member.isfile():
                files += 1
                if name.endswith("openclaw.json"):
                    has_config = True
                if name.endswith("agent/openclaw-agent.sqlite"):
                    has_sessions = True
                if name.endswith("/manifest.json") and name.count("/") == 1:
                    fh = tar.extractfile(member)
                    manifest = json.loads(fh.read()) if fh else None
    return {
        "files": files,
        "has_config": has_config,
        "has_sessions": has_sessions,
        "openclaw_manifest": manifest,
    }


def _hot_archive(instance, client, backup) -> tuple[Iterator[bytes], dict]:
    """OpenClaw's own verified archive, streamed out of the container (at most
    FLEET_BACKUP_MAX_BYTES: a tenant cannot make the worker read without end); the scratch
    directory in the container is removed when the stream ends, however it ends."""
    out_dir = f"{HOT_BACKUP_DIR}-{backup.pk.hex[:12]}"
    try:
        result = client.backup_create(out_dir)
    except BaseException:
        _remove_scratch(instance, client, out_dir)
        raise
    info = {
        "method": "openclaw-backup",
        "verified_by_openclaw": bool(result.get("verified")),
        "archive_root": result.get("archiveRoot", ""),
        "assets": [a.get("kind") for a in result.get("assets") or []],
    }

    def chunks() -> Iterator[bytes]:
        try:
            first = True
            for chunk in client.stream_file(
                result["archivePath"], max_bytes=int(settings.FLEET_BACKUP_MAX_BYTES)
            ):
                if first and not backup_store.is_gzip(chunk[:2]):
                    raise OperationError("The backup archive could not be read from the instance.")
                first = False
                yield chunk
            if first:
                raise OperationError("The backup archive could not be read from the instance.")
        except OpenClawError as exc:
            if exc.kind == "too_large":
                raise OperationError(
                    "The backup is larger than the platform allows "
                    f"({int(settings.FLEET_BACKUP_MAX_BYTES) // 1024**2} MB)."
                ) from exc
            raise OperationError("The backup archive could not be read from the instance.") from exc
        finally:
            _remove_scratch(instance, client, out_dir)

    return chunks(), info


def _remove_scratch(instance, client, out_dir: str) -> None:
    try:
        client.remove_path(out_dir)
    except OpenClawError:
        log.warning("could not remove the backup scratch of %s", instance.pk)


def _cold_archive(instance, runtime, image) -> tuple[Iterator[bytes], dict]:
    raw = runtime.export_volume(instance.volume_name, image)
    return backup_store.gzip_stream(raw), {"method": "cold-volume-tar"}


def _previous_point(instance: Instance) -> backup_store.PointIndex | None:
    """The index of the instance's newest good point, whose blocks the next point reuses. A
    damaged one is skipped (the next point then stores everything again); a store that is down
    fails the backup."""
    prev = (
        Backup.objects.filter(
            instance=instance, kind=Backup.Kind.INCREMENTAL, state=Backup.State.SUCCEEDED
        )
        .order_by("-created_at")
        .first()
    )
    if prev is None:
        return None
    try:
        return backup_store.read_point(prev.storage_name, prev.sha256)
    except backup_store.BackupCorrupt:
        log.warning("the last point of %s is unreadable; the next one stores all", instance.pk)
        return None


def _write_point_backup(instance, backup, chunks, written_names: list[str]):
    """An incremental point: only the blocks the previous point does not hold, then the index;
    read back (index checksum and decryption, the new pack's checksum, every other pack there)
    before the row says succeeded."""
    previous = _previous_point(instance)
    base = _storage_name(backup).removesuffix(".cfbk")
    written = backup_store.write_point(base, chunks, previous)
    written_names.extend(written.names)
    if not written.stats["blocks"]:
        raise OperationError("The backup came out empty.")
    index = backup_store.read_point(written.index_name, written.index_sha256)
    backup_store.verify_packs(index, full=[written.pack["name"]] if written.pack else [])
    if not index.file_count() or not index.has_config():
        raise NothingToBackUp("The backup does not hold an OpenClaw state.")
    manifest = {
        "format": "cfpt2",
        "files": index.file_count(),
        "archive_size": written.stats["state_bytes"],
        "blocks": written.stats["blocks"],
        "new_blocks": written.stats["new_blocks"],
        "new_plain_bytes": written.stats["new_plain_bytes"],
        "pack": written.pack["name"] if written.pack else "",
        "packs": index.pack_names(),
        "base": previous is not None,
    }
    return written.index_name, written.index_sha256, written.new_bytes, manifest


def is_point(backup: Backup) -> bool:
    """A point in time (an index and packs; format 1 held databases as pages, 2 as rows)."""
    return (backup.manifest or {}).get("format") in ("cfpt1", "cfpt2")


def verify_stored(backup: Backup) -> None:
    """The stored objects of a backup match their checksums (raises BackupCorrupt or
    StoreUnavailable): the first step of a restore and of the nightly proof."""
    if is_point(backup):
        index = backup_store.read_point(backup.storage_name, backup.sha256)
        backup_store.verify_packs(index)
    else:
        backup_store.verify_checksum(backup.storage_name, backup.sha256)


def archive_chunks(backup: Backup) -> Iterator[bytes]:
    """The backup's archive as gzipped tar chunks, whatever its format (a full .cfbk file or a
    point rebuilt from its blocks)."""
    if is_point(backup):
        index = backup_store.read_point(backup.storage_name, backup.sha256)
        return backup_store.gzip_stream(backup_store.point_tar(index), level=1)
    return backup_store.open_plaintext(backup.storage_name)


def _nightly_row(instance, nightly_date: date, operation=None) -> tuple[Backup, bool]:
    try:
        with transaction.atomic():
            return (
                Backup.objects.create(
                    instance=instance,
                    organization_id=instance.organization_id,
                    kind=Backup.Kind.NIGHTLY,
                    nightly_date=nightly_date,
                    state=Backup.State.PENDING,
                    operation=operation,
                ),
                True,
            )
    except IntegrityError:
        return Backup.objects.get(instance=instance, nightly_date=nightly_date), False


def nightly_backup(
    *, instance: Instance, nightly_date: date | None = None, operation: Operation | None = None
) -> Backup | None:
    """Exactly one nightly backup per instance and day, however many runs race for it. A
    redelivered run of the same operation (its worker died) takes the unfinished row over."""
    nightly_date = nightly_date or timezone.now().date()
    backup, created = _nightly_row(instance, nightly_date, operation)
    if not created:
        unfinished = backup.state in (Backup.State.PENDING, Backup.State.RUNNING)
        if not (operation is not None and backup.operation_id == operation.pk and unfinished):
            log.info("nightly backup of %s for %s exists already", instance.pk, nightly_date)
            return None
    return backup_create_now(
        instance=instance, kind=Backup.Kind.NIGHTLY, backup=backup, operation=operation
    )


def nightly_backup_request(*, instance: Instance, nightly_date: date) -> Operation:
    """The nightly run's Operation (kind backup) for one instance, not enqueued: the nightly
    lane runs it inline, so the lanes bound how many run at once. Raises OperationInProgress
    when another operation (a restore, an upgrade...) holds the instance: a backup never
    overlaps another operation."""
    return operation_request(
        actor=SYSTEM,
        instance=instance,
        kind=Operation.Kind.BACKUP,
        params={"kind": Backup.Kind.NIGHTLY, "nightly_date": nightly_date.isoformat()},
        enqueue=False,
    )


def backup_create_now(
    *,
    instance: Instance,
    kind: str,
    operation: Operation | None = None,
    backup: Backup | None = None,
) -> Backup:
    """Take a backup now (synchronous). Raises OperationError after marking the Backup failed."""
    if backup is None:
        backup = Backup.objects.create(
            instance=instance,
            organization_id=instance.organization_id,
            kind=kind,
            state=Backup.State.RUNNING,
            operation=operation,
        )
    else:
        Backup.objects.filter(pk=backup.pk).update(state=Backup.State.RUNNING, operation=operation)
        backup.state = Backup.State.RUNNING
    started = time.monotonic()
    written_names: list[str] = []
    try:
        runtime = access.runtime_for_instance(instance)
        image = access.image_for_instance(instance)
        if _container_running(instance, runtime):
            # A gateway just (re)started, by the reconcile loop after a crash or by an operation,
            # runs before it answers: a hot backup reads its session list, so it waits.
            runtime.wait_ready(
                instance.host_port,
                timeout=settings.FLEET_READY_TIMEOUT,
                name=instance.container_name,
            )
            client = access.client_for(instance)
            version = client.version() or instance.openclaw_version
            keys = sorted(r.key for r in client.list_sessions().rows)
            chunks, info = _hot_archive(instance, client, backup)
        else:
            if not runtime.volume_exists(instance.volume_name):
                raise NothingToBackUp("The instance's state volume does not exist.")
            version = instance.openclaw_version
            keys = offline_session_keys(runtime, instance.volume_name, image)
            chunks, info = _cold_archive(instance, runtime, image)
        if kind == Backup.Kind.INCREMENTAL:
            name, sha, size, manifest = _write_point_backup(instance, backup, chunks, written_names)
        else:
            name = _storage_name(backup)
            written = backup_store.write_encrypted(name, chunks)
            name = written.name
            written_names.append(name)
            if written.plain_size == 0:
                raise OperationError("The backup came out empty.")
            # Read it back the way a restore will: checksum, decrypt, gunzip, every tar entry.
            backup_store.verify_checksum(name, written.sha256)
            contents = inspect_archive(backup_store.open_plaintext(name))
            if not contents["files"] or not contents["has_config"]:
                raise NothingToBackUp("The backup does not hold an OpenClaw state.")
            sha, size = written.sha256, written.size
            manifest = {
                "format": "cfbk1",
                "files": contents["files"],
                "archive_sha256": written.plain_sha256,
                "archive_size": written.plain_size,
            }
        manifest = {
            **manifest,
            **info,
            "key_id": backup_store.current_key_id(),
            "openclaw_version": version,
            "session_keys": keys,
            "session_count": len(keys),
            "size": size,
            "created": backup.created_at.isoformat(),
            "seconds": round(time.monotonic() - started, 2),
        }
        now = timezone.now()
        Backup.objects.filter(pk=backup.pk).update(
            state=Backup.State.SUCCEEDED,
            storage_name=name,
            size_bytes=size,
            sha256=sha,
            manifest=manifest,
            session_count=len(keys),
            openclaw_version=version[:32],
            verified_at=now,
            finished_at=now,
            error="",
        )
    except Exception as exc:
        public = getattr(exc, "public", None) or "The backup failed; staff have the detail."
        if isinstance(exc, backup_store.StoreUnavailable) or isinstance(
            exc.__cause__, backup_store.StoreUnavailable
        ):
            public = "The backup storage did not answer; the backup is tried again shortly."
        log.warning("backup %s of %s failed: %s", backup.pk, instance.pk, type(exc).__name__)
        try:
            # Nothing half-written stays: what could not be deleted now (the store is down) is
            # kept on the failed row for the retention job to delete later.
            orphans = backup_store.delete_names(written_names)
        except Exception:  # noqa: BLE001
            orphans = list(written_names)
            log.warning("could not delete the partial backup files of %s", backup.pk)
        Backup.objects.filter(pk=backup.pk).update(
            state=Backup.State.FAILED,
            error=f"{public} ({type(exc).__name__}: {str(exc)[:300]})",
            finished_at=timezone.now(),
            storage_name="",
            manifest={"orphans": orphans} if orphans else {},
        )
        backup.refresh_from_db()
        if isinstance(exc, OperationError):
            raise
        raise OperationError(public, f"{type(exc).__name__}: {exc}") from exc
    backup.refresh_from_db()
    try:
        quotas.report_disk_usage(instance=instance, backup=backup)
    except Exception:  # noqa: BLE001 - a report never fails the backup it follows
        log.warning("could not check the disk allowance of %s", instance.pk)
    return backup


def backup_request(*, actor: Actor, instance: Instance, kind: str = "manual") -> Operation:
    """Queue an Operation (kind backup) that takes a backup of this kind."""
    if kind not in Backup.Kind.values:
        raise ValidationError({"kind": "Unknown backup kind."})
    if not instance.is_live:
        raise ValidationError("This instance is deleted.")
    if kind == Backup.Kind.MANUAL:
        quotas.check_manual_backup(instance)
    with transaction.atomic():
        op = operation_request(
            actor=actor, instance=instance, kind=Operation.Kind.BACKUP, params={"kind": kind}
        )
        audit(
            actor=actor,
            action="backup.requested",
            organization=instance.organization,
            target=instance,
            data={"operation": str(op.pk), "kind": kind},
        )
    return op


# --- retention ------------------------------------------------------------------------------


DEFAULT_POINT_INTERVAL_MINUTES = 15
DEFAULT_POINT_HOURS = 48


def _plan(instance):
    try:
        from billing.entitlements import plan_for

        return plan_for(instance.organization)
    except Exception:  # noqa: BLE001 - backups must run even if billing is unavailable
        log.warning("plan unavailable for %s; using the default backup policy", instance.pk)
        return None


def backup_policy(instance) -> dict:
    """The plan's backup policy: a point every `interval_minutes`, every point kept for
    `point_hours`, then `daily` nightly backups (one a day) and `weekly` (one an ISO week)."""
    plan = _plan(instance)
    return {
        "interval_minutes": int(
            getattr(plan, "backup_interval_minutes", 0) or DEFAULT_POINT_INTERVAL_MINUTES
        ),
        "point_hours": int(getattr(plan, "backup_point_hours", 0) or DEFAULT_POINT_HOURS),
        "daily": int(getattr(plan, "backup_daily_retention", 7) if plan else 7),
        "weekly": int(getattr(plan, "backup_weekly_retention", 4) if plan else 4),
    }


def policy_text(policy: dict) -> str:
    """The policy in words, as the customer sees it."""
    return (
        f"a point every {policy['interval_minutes']} minutes, each kept {policy['point_hours']} "
        f"hours; {policy['daily']} daily and {policy['weekly']} weekly backups"
    )


def _retention(instance) -> tuple[int, int]:
    policy = backup_policy(instance)
    return policy["daily"], policy["weekly"]


def backups_to_expire(
    backups: list[Backup], *, daily: int, weekly: int, now, point_hours: int = DEFAULT_POINT_HOURS
) -> list[Backup]:
    """Pure rule. Nightly backups: the newest of each of the last `daily` days that have one,
    plus the newest of each of the last `weekly` ISO weeks. Points (incremental): every one of
    the last `point_hours`. Manual and safety backups: kept for `daily` days. The newest good
    backup is always kept."""
    good = sorted(
        (b for b in backups if b.state == Backup.State.SUCCEEDED),
        key=lambda b: b.created_at,
        reverse=True,
    )
    if not good:
        return []
    keep = {good[0].pk}
    days: dict = {}
    weeks: dict = {}
    for b in good:
        if b.kind == Backup.Kind.INCREMENTAL:
            if b.created_at >= now - timedelta(hours=point_hours):
                keep.add(b.pk)
            continue
        if b.kind != Backup.Kind.NIGHTLY:
            if b.created_at >= now - timedelta(days=daily):
                keep.add(b.pk)
            continue
        d = b.nightly_date or b.created_at.date()
        days.setdefault(d, b)
        weeks.setdefault(d.isocalendar()[:2], b)
    for d in sorted(days, reverse=True)[:daily]:
        keep.add(days[d].pk)
    for w in sorted(weeks, reverse=True)[:weekly]:
        keep.add(weeks[w].pk)
    return [b for b in good if b.pk not in keep]


FAILED_ROWS_KEEP = timedelta(days=7)


def apply_retention(*, instance: Instance, now=None) -> int:
    """The one retention job of an instance: expire backups the plan no longer keeps (their
    files deleted, rows marked expired), delete block packs no kept point names any more,
    delete what failed backups left behind, and drop failed rows older than a week. Never the
    newest good backup. Returns how many backups expired."""
    now = now or timezone.now()
    policy = backup_policy(instance)
    rows = list(Backup.objects.filter(instance=instance))
    expired = backups_to_expire(
        rows,
        daily=policy["daily"],
        weekly=policy["weekly"],
        now=now,
        point_hours=policy["point_hours"],
    )
    gone = {b.pk for b in expired}
    # Packs named by a point that stays are kept, whoever wrote them.
    referenced = {
        name
        for b in rows
        if b.state == Backup.State.SUCCEEDED and b.pk not in gone
        for name in (b.manifest or {}).get("packs", [])
    }
    done = 0
    for b in expired:
        manifest = b.manifest or {}
        own_pack = manifest.get("pack") or ""
        try:
            backup_store.delete(b.storage_name)
            if own_pack and own_pack not in referenced:
                backup_store.delete(own_pack)
                own_pack = ""
        except Exception as exc:  # noqa: BLE001 - try again at the next run
            log.warning("could not delete backup file of %s: %s", b.pk, type(exc).__name__)
            continue
        Backup.objects.filter(pk=b.pk, state=Backup.State.SUCCEEDED).update(
            state=Backup.State.EXPIRED,
            storage_name="",
            manifest={**manifest, "pack_left": own_pack},
        )
        done += 1
    # Packs of points expired earlier that a later point still named then.
    for b in rows:
        manifest = b.manifest or {}
        left = manifest.get("pack_left")
        if b.state == Backup.State.EXPIRED and left and left not in referenced:
            try:
                backup_store.delete(left)
            except Exception:  # noqa: BLE001,S112 - the store is down: next run
                continue
            Backup.objects.filter(pk=b.pk).update(manifest={**manifest, "pack_left": ""})
        if b.state == Backup.State.FAILED and manifest.get("orphans"):
            remaining = backup_store.delete_names(manifest["orphans"])
            Backup.objects.filter(pk=b.pk).update(manifest={**manifest, "orphans": remaining})
    old_failed = [
        b.pk
        for b in rows
        if b.state == Backup.State.FAILED
        and b.created_at < now - FAILED_ROWS_KEEP
        and not (b.manifest or {}).get("orphans")
    ]
    Backup.objects.filter(pk__in=old_failed).delete()
    return done


# --- freshness ------------------------------------------------------------------------------


def check_backup_freshness(*, now=None) -> list[Instance]:
    """Instances that need a backup (selectors.needs_backup, the rule the nightly run and the
    admin use too; running or stopped) without a good one for FRESHNESS_HOURS: an InstanceEvent
    "backup_overdue", an audit row and an email to the organization's billing address (at most
    once a day per instance)."""

    now = now or timezone.now()
    overdue = []
    candidates = selectors.needs_backup(Instance.objects.all(), now=now).order_by("created_at")
    for instance in candidates.select_related("organization"):
        if InstanceEvent.objects.filter(
            instance=instance, kind="backup_overdue", created_at__gte=now - timedelta(hours=24)
        ).exists():
            continue
        last = (
            Backup.objects.filter(instance=instance, state=Backup.State.SUCCEEDED)
            .order_by("-created_at")
            .values_list("created_at", flat=True)
            .first()
        )
        message = f"No good backup for {FRESHNESS_HOURS} hours" + (
            f" (last {last:%Y-%m-%d %H:%M} UTC)" if last else " (never backed up)"
        )
        InstanceEvent.objects.create(
            instance=instance,
            kind="backup_overdue",
            message=message,
            data={"last_backup": last.isoformat() if last else None},
        )
        audit(
            actor=SYSTEM,
            action="backup.overdue",
            organization=instance.organization,
            target=instance,
            data={"last_backup": last.isoformat() if last else None},
        )
        email = instance.organization.billing_email
        if email:
            send_mail(
                f"Clawfleet: {instance.name} has no recent backup",
                f"{message}. We are looking into it; you can also start a backup from the "
                "instance page.",
                None,
                [email],
                fail_silently=True,
            )
        hooks.run("backup.missing", instance=instance, last_backup_at=last, hours=FRESHNESS_HOURS)
        overdue.append(instance)
    return overdue


# --- what instances asks for through fleet.hooks -------------------------------------------------


def backup_for_operation(*, instance: Instance, kind: str, operation=None, **_) -> Backup:
    """The "backup.create" hook: a backup of this kind now (pre_upgrade, pre_delete, pre_pause),
    inside the caller's operation. Returns the succeeded Backup; raises on failure (the caller
    decides whether that aborts its operation)."""
    if kind not in Backup.Kind.values:
        raise OperationError("This kind of backup does not exist.", f"unknown kind {kind!r}")
    return backup_create_now(instance=instance, kind=kind, operation=operation)


def close_unfinished_backups(*, operation, **_) -> int:
    """The "operation.finished" hook: a backup row of the operation still pending or running (its
    worker died mid-backup and the resumed run started another) is marked failed, so no row
    says "running" forever. Never raises."""
    try:
        return Backup.objects.filter(
            operation_id=operation.pk, state__in=[Backup.State.PENDING, Backup.State.RUNNING]
        ).update(
            state=Backup.State.FAILED,
            error="The operation ended before this backup finished.",
            finished_at=timezone.now(),
        )
    except Exception as exc:  # noqa: BLE001 - a subscriber never changes the outcome
        log.warning("closing the backups of %s failed: %s", operation.pk, type(exc).__name__)
        return 0
