"""Writes for sessions and backups: the session mirror, transcripts on demand, pruning, backups,
retention and restore. Dashboard views, the API, admin, tasks and other apps call these.

Decisions written down (docs/backups.md has the operator's view):

Session mirror
- OpenClaw's `sessions.list` can filter by metadata update age (`activeMinutes`), so a sync asks
  only for sessions updated since `instance.sessions_cursor` (epoch ms of the newest updatedAt we
  copied, rounded out to whole minutes plus one), skips rows whose updatedAt we already hold
  (`Session.openclaw_updated_ms`), and asks `sessions.usage` only for the rest. Rows are upserted
  by (instance, session_key) with one bulk INSERT .. ON CONFLICT DO UPDATE per 1,000 rows.
- Deletions leave no trace in an incremental list, so every sync compares OpenClaw's total
  session count with our non-pruned rows; when they differ (or once an hour, or after a prune or
  restore) a full listing marks missing sessions pruned. A restored session comes back live.
- Costs: `cost_usd` is ours (billing.pricing.price_usage, per model the session used, at its last
  activity date); `openclaw_cost_usd` is OpenClaw's estimate from the prices the instance config
  carries. Both are kept; they match when the config was written from our table.

Backups
- Running instance: `openclaw backup create --verify --json` inside the container (SQLite online
  backup: consistent while it serves), archive in the container's /tmp (OpenClaw refuses an
  output path inside the state dir), streamed out with `cat`, then removed. Stopped instance: a
  cold tar of the whole volume through runtime.export_volume (includes -wal files), gzipped here.
- Then: encrypt in chunks (backup_store), SHA-256 of the stored bytes, write to backup storage,
  read back (decrypt, gunzip, list the tar) to prove the file restores; only then "succeeded"
  with `verified_at`. Empty or unreadable archives fail the backup.
- Nightly: the Backup row is created first with its `nightly_date`; the unique constraint makes a
  second run on the same day find the existing row and do nothing.

Restore
- Checksum, then decrypt and read the archive, before anything changes (a corrupt file is refused
  and the instance is untouched). Then a pre-restore backup, stop, unpack into a fresh volume,
  check it with OpenClaw's own offline `openclaw sessions --json`, keep the current volume as
  `<volume>-prerestore-<stamp>` (FLEET_PRERESTORE_KEEP_DAYS, removed by the nightly run), copy the
  fresh volume over the instance's volume (the volume name never changes, so the container spec
  stays as it is), start, wait until ready, compare the session keys with the manifest, re-sync.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta

from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import roles
from accounts.services import SYSTEM, Actor, audit
from instances import gateway_calls
from instances.models import Instance, InstanceEvent, Operation
from instances.openclaw.client import InstanceUnavailable, OpenClawClient, OpenClawError, ms_to_dt
from instances.operations import OperationError, operation_request, step

from . import backup_store
from .models import Backup, Session

log = logging.getLogger(__name__)

FULL_SYNC_SECONDS = 3600
UPSERT_BATCH = 1000
FRESHNESS_HOURS = 26  # selectors.BACKUP_MAX_AGE, in hours (the alert's wording)
PRERESTORE_KEEP_DAYS = int(os.environ.get("FLEET_PRERESTORE_KEEP_DAYS", "7"))
HOT_BACKUP_DIR = "/tmp/clawfleet-backup"  # noqa: S108 - inside the container, not here
STATE_PREFIX = "home/node/.openclaw"
SYNCABLE = (Instance.Status.RUNNING,)
UPSERT_FIELDS = [
    "organization",
    "session_id",
    "agent_id",
    "channel",
    "model",
    "provider",
    "status",
    "started_at",
    "last_activity_at",
    "message_count",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "openclaw_cost_usd",
    "cost_usd",
    "synced_at",
    "pruned_at",
    "openclaw_updated_ms",
]


def client_for(instance: Instance, **kwargs) -> OpenClawClient:
    """The OpenClaw client of an instance (tests replace this with a fake)."""
    return OpenClawClient.for_instance(instance, **kwargs)


def runtime_for_instance(instance: Instance):
    from instances.runtime import runtime_for

    if instance.host is None:
        raise OperationError("This instance has no host yet.")
    return runtime_for(instance.host)


def image_for_instance(instance: Instance) -> str:
    from instances.services import image_for

    return image_for(instance.openclaw_version)


# --- the session mirror ---------------------------------------------------------------------


@dataclass
class SyncResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    pruned: int = 0
    skipped: bool = False
    full: bool = False
    pending: list[str] = field(default_factory=list)


def _full_sync_key(instance) -> str:
    return f"sessions:fullsync:{instance.pk}"


def _price(instance, usage, row) -> tuple:
    from billing.pricing import price_for, price_usage

    at = usage.last_activity or row.last_activity_at or timezone.now()
    parts = usage.by_model or [
        (usage.provider or row.provider, usage.model or row.model, usage.input, usage.output)
        + (usage.cache_read, usage.cache_write)
    ]
    total = 0
    for provider, model, inp, out, cr, cw in parts:
        # OpenClaw names our provider entry as the instance config does; our price table is keyed
        # by the real provider. Use OpenClaw's id when we have a price under it.
        prov = provider if provider and price_for(provider, model, at) else instance.provider
        total += price_usage(prov, model, inp, out, cr, cw, at=at)
    return total


def _session_from(instance, row, usage, now) -> Session:
    model = row.model.split("/", 1)[1] if "/" in row.model and row.provider else row.model
    return Session(
        instance_id=instance.pk,
        organization_id=instance.organization_id,
        session_key=row.key[:255],
        session_id=row.session_id,
        agent_id=row.agent_id[:64],
        channel=row.channel,
        model=(usage.model or model)[:128],
        provider=(usage.provider or row.provider)[:64],
        status=Session.Status.ARCHIVED if row.archived else Session.Status.LIVE,
        started_at=usage.first_activity or row.started_at,
        last_activity_at=usage.last_activity or row.last_activity_at,
        message_count=usage.message_count,
        input_tokens=usage.input,
        output_tokens=usage.output,
        cache_read_tokens=usage.cache_read,
        cache_write_tokens=usage.cache_write,
        openclaw_cost_usd=usage.cost_usd,
        cost_usd=_price(instance, usage, row),
        first_seen_at=now,
        synced_at=now,
        pruned_at=None,
        openclaw_updated_ms=row.updated_ms,
    )


def _mark_missing_pruned(instance, present: set[str], now) -> int:
    live = dict(
        Session.objects.filter(instance=instance)
        .exclude(status=Session.Status.PRUNED)
        .values_list("session_key", "pk")
    )
    gone = [pk for key, pk in live.items() if key not in present]
    for i in range(0, len(gone), 5000):
        Session.objects.filter(pk__in=gone[i : i + 5000]).update(
            status=Session.Status.PRUNED, pruned_at=now, synced_at=now, openclaw_updated_ms=0
        )
    return len(gone)


def sync_instance_sessions(*, instance: Instance, full: bool | None = None) -> SyncResult:
    """Mirror one instance's sessions. Idempotent; an instance that is not running is skipped."""
    if instance.status not in SYNCABLE or instance.host_id is None:
        log.debug("session sync skipped for %s: %s", instance.pk, instance.status)
        return SyncResult(skipped=True)
    client = client_for(instance)
    now = timezone.now()
    now_ms = int(now.timestamp() * 1000)
    cursor = int(instance.sessions_cursor or 0)
    if full is None:
        full = cursor == 0 or cache.get(_full_sync_key(instance)) is None
    listing = client.list_sessions(since_ms=0 if full else cursor, now_ms=now_ms)
    keys = [r.key for r in listing.rows]
    known = {}
    if full:
        qs = Session.objects.filter(instance=instance)
    else:
        qs = Session.objects.filter(instance=instance, session_key__in=keys)
    for key, updated_ms, status in qs.values_list("session_key", "openclaw_updated_ms", "status"):
        known[key] = (updated_ms, status)

    def wanted_status(row):
        return Session.Status.ARCHIVED if row.archived else Session.Status.LIVE

    changed = [
        r
        for r in listing.rows
        if r.key not in known or known[r.key] != (r.updated_ms, wanted_status(r))
    ]
    result = SyncResult(unchanged=len(listing.rows) - len(changed), full=full)
    usage = client.usage([r.key for r in changed]) if changed else {}
    objs = []
    for row in changed:
        u = usage.get(row.key)
        if u is None:
            result.pending.append(row.key)
            continue
        objs.append(_session_from(instance, row, u, now))
        if row.key in known:
            result.updated += 1
        else:
            result.created += 1
    with transaction.atomic():
        for i in range(0, len(objs), UPSERT_BATCH):
            Session.objects.bulk_create(
                objs[i : i + UPSERT_BATCH],
                update_conflicts=True,
                unique_fields=["instance", "session_key"],
                update_fields=UPSERT_FIELDS,
            )
    if full:
        result.pruned = _mark_missing_pruned(instance, set(keys), now)
    else:
        ours = Session.objects.filter(instance=instance).exclude(status=Session.Status.PRUNED)
        if client.count_sessions() != ours.count():
            everything = client.list_sessions()
            result.pruned = _mark_missing_pruned(instance, {r.key for r in everything.rows}, now)
            result.full = True
    # The cursor: the newest updatedAt copied. A full listing sets it outright (a restore moves
    # OpenClaw's clock back); rows whose usage is not ready yet hold it back so we ask again.
    newest = max((r.updated_ms for r in listing.rows), default=0)
    new_cursor = newest if full else max(cursor, newest)
    if result.pending:
        held = min(r.updated_ms for r in listing.rows if r.key in set(result.pending)) - 1
        new_cursor = min(new_cursor, max(held, 0))
    Instance.objects.filter(pk=instance.pk).update(
        sessions_cursor=new_cursor, sessions_synced_at=now
    )
    instance.sessions_cursor, instance.sessions_synced_at = new_cursor, now
    if result.full:
        cache.set(_full_sync_key(instance), now_ms, FULL_SYNC_SECONDS)
    log.info(
        "sessions synced for %s: %s created, %s updated, %s unchanged, %s pruned%s",
        instance.pk,
        result.created,
        result.updated,
        result.unchanged,
        result.pruned,
        " (full)" if result.full else "",
    )
    return result


def sync_after_operation(*, instance: Instance) -> SyncResult | None:
    """Hook for instances: re-sync after an operation; never raises into the caller."""
    try:
        return sync_instance_sessions(instance=instance, full=True)
    except Exception as exc:  # noqa: BLE001 - a failed sync must not fail the operation
        log.warning("session sync after operation failed for %s: %s", instance.pk, exc)
        return None


# --- transcripts ----------------------------------------------------------------------------


class TranscriptUnavailable(Exception):
    """The instance is not running: transcripts live only inside it."""


def transcript_page(*, instance: Instance, session_key: str, before=None, limit: int = 50):
    """(messages oldest first, cursor of the next older page or None), fetched from OpenClaw.

    Never stored: the mirror holds counts and costs, the transcript stays in the instance."""
    limit = max(1, min(int(limit or 50), 200))
    if not Session.objects.filter(instance=instance, session_key=session_key).exists():
        raise Session.DoesNotExist(session_key)
    if instance.status not in SYNCABLE:
        raise TranscriptUnavailable("Start the instance to read its transcripts.")
    try:
        offset = int(before) if before not in (None, "") else None
    except (TypeError, ValueError):
        offset = None
    # A web request waits on the tenant's own process: one of the organization's few slots, a
    # short timeout and no retries (instances/gateway_calls.py), so a hung gateway stalls only
    # its own owner's page.
    try:
        with gateway_calls.slot(instance.organization_id):
            client = client_for(instance, timeout=int(gateway_calls.timeout()))
            return client.history(session_key, offset=offset, limit=limit, retries=0)
    except gateway_calls.GatewayBusy as exc:
        raise TranscriptUnavailable(exc.public) from exc
    except InstanceUnavailable as exc:
        raise TranscriptUnavailable("The instance is not answering right now.") from exc


def transcript_for_member(
    *, membership, instance: Instance, session_key: str, before=None, limit: int = 50
):
    """A customer reading their own organization's transcript (role table: view_transcripts)."""
    if membership.organization_id != instance.organization_id:
        raise Session.DoesNotExist(session_key)
    if not roles.role_allows(membership.role, roles.VIEW_TRANSCRIPTS):
        raise PermissionDenied("Your role in this organization does not allow reading transcripts.")
    return transcript_page(instance=instance, session_key=session_key, before=before, limit=limit)


def transcript_for_staff(
    *, staff_user, instance: Instance, session_key: str, reason: str = "", before=None, limit=50
):
    """Support reading a customer's transcript: allowed when the customer opted in or a reason
    is given; always audited ("transcript.viewed_by_staff")."""
    reason = (reason or "").strip()
    if not getattr(staff_user, "is_staff", False):
        raise PermissionDenied("Only staff may read customers' transcripts.")
    if not instance.support_transcript_access and not reason:
        raise PermissionDenied(
            "The customer has not allowed support access: give a reason to read this transcript."
        )
    page = transcript_page(instance=instance, session_key=session_key, before=before, limit=limit)
    audit(
        actor=Actor(user=staff_user, via="admin"),
        action="transcript.viewed_by_staff",
        organization=instance.organization,
        target=instance,
        data={
            "session_key": session_key,
            "reason": reason[:500],
            "customer_allowed": instance.support_transcript_access,
        },
    )
    return page


# --- pruning --------------------------------------------------------------------------------


def _protected(key: str) -> bool:
    # OpenClaw protects each agent's main session from archive and delete.
    parts = key.split(":")
    return len(parts) == 3 and parts[0] == "agent" and parts[2] == "main"


def prune_preview(*, instance: Instance, now=None) -> list[str]:
    """Session keys a prune would remove now: idle longer than session_idle_days, then the
    oldest beyond session_max_count (by last activity). Agent main sessions are never pruned."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=instance.session_idle_days)
    rows = list(
        Session.objects.filter(instance=instance)
        .exclude(status=Session.Status.PRUNED)
        .order_by("-last_activity_at", "-id")
        .values_list("session_key", "last_activity_at", "started_at")
    )
    rows = [r for r in rows if not _protected(r[0])]
    idle = []
    keep = []
    for key, last, started in rows:
        seen = last or started
        (idle if seen is not None and seen < cutoff else keep).append(key)
    overflow = keep[instance.session_max_count :]
    return idle + overflow


def prune_sessions(*, actor: Actor, instance: Instance, enqueue: bool = True) -> Operation:
    """Queue an Operation (kind prune) that prunes through OpenClaw's session lifecycle."""
    with transaction.atomic():
        op = operation_request(
            actor=actor, instance=instance, kind=Operation.Kind.PRUNE, enqueue=enqueue
        )
        audit(
            actor=actor,
            action="sessions.prune_requested",
            organization=instance.organization,
            target=instance,
            data={"operation": str(op.pk)},
        )
    return op


def handle_prune(op: Operation) -> None:
    instance = op.instance
    if instance.status not in SYNCABLE:
        raise OperationError("Start the instance to prune its sessions.")
    client = client_for(instance)
    with step(op, "Read the sessions from OpenClaw"):
        sync_instance_sessions(instance=instance, full=True)
    with step(op, "Choose idle and surplus sessions") as entry:
        keys = prune_preview(instance=instance)
        entry["detail"] = f"{len(keys)} to prune"
    if keys and instance.archive_before_prune:
        with step(op, "Archive them in OpenClaw"):
            _check_lifecycle(client.archive(keys), "archive")
    if keys:
        with step(op, "Delete them in OpenClaw"):
            _check_lifecycle(client.delete(keys), "delete")
    with step(op, "Update the session list") as entry:
        result = sync_instance_sessions(instance=instance, full=True)
        entry["detail"] = f"{result.pruned} marked pruned"
    Operation.objects.filter(pk=op.pk).update(params={**op.params, "pruned": len(keys)})


def _check_lifecycle(statuses: dict[str, str], what: str) -> None:
    failed = [k for k, s in statuses.items() if s not in ("archived", "deleted", "not_found", "ok")]
    if failed:
        raise OperationError(
            f"OpenClaw could not {what} {len(failed)} session(s); try again later.",
            f"{what} failed for {len(failed)} keys: statuses {sorted(set(statuses.values()))}",
        )


# --- backups --------------------------------------------------------------------------------


def _storage_name(backup: Backup) -> str:
    stamp = backup.created_at.strftime("%Y%m%dT%H%M%SZ")
    return (
        f"org-{backup.organization_id}/{backup.instance_id.hex}/"
        f"{stamp}-{backup.kind}-{backup.pk.hex[:8]}.cfbk"
    )


def _container_running(instance: Instance, runtime) -> bool:
    """What the engine says, not the row: a pre-upgrade backup runs while the row says
    "upgrading" and the gateway still serves, and a cold copy of a live volume is inconsistent."""
    info = runtime.inspect(instance.container_name)
    return bool(info and getattr(info, "running", False))


def _offline_session_keys(runtime, volume: str, image: str) -> list[str]:
    """OpenClaw's own offline session listing of a volume (helper container, no gateway)."""
    cmd = ["openclaw", "sessions", "--all-agents", "--limit", "all", "--json"]
    code, out, _err = runtime.run_in_volume(volume, image, cmd, timeout=300)
    if code != 0:
        raise OperationError("OpenClaw could not read the sessions of the restored state.")
    from instances.openclaw.client import extract_json

    payload = extract_json(out)
    return sorted({s["key"] for s in payload.get("sessions") or [] if s.get("key")})


def _inspect_archive(chunks) -> dict:
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
    out_dir = f"{HOT_BACKUP_DIR}-{backup.pk.hex[:12]}"
    try:
        result = client.backup_create(out_dir)
        code, data, _ = client.run(["cat", result["archivePath"]], timeout=1800)
    finally:
        try:
            client.remove_path(out_dir)
        except OpenClawError:
            log.warning("could not remove the backup scratch of %s", instance.pk)
    if code != 0 or not backup_store.is_gzip(data[:2]):
        raise OperationError("The backup archive could not be read from the instance.")
    info = {
        "method": "openclaw-backup",
        "verified_by_openclaw": bool(result.get("verified")),
        "archive_root": result.get("archiveRoot", ""),
        "assets": [a.get("kind") for a in result.get("assets") or []],
    }
    return iter([data]), info


def _cold_archive(instance, runtime, image) -> tuple[Iterator[bytes], dict]:
    raw = runtime.export_volume(instance.volume_name, image)
    return backup_store.gzip_stream(raw), {"method": "cold-volume-tar"}


def _nightly_row(instance, nightly_date: date) -> tuple[Backup, bool]:
    try:
        with transaction.atomic():
            return (
                Backup.objects.create(
                    instance=instance,
                    organization_id=instance.organization_id,
                    kind=Backup.Kind.NIGHTLY,
                    nightly_date=nightly_date,
                    state=Backup.State.PENDING,
                ),
                True,
            )
    except IntegrityError:
        return Backup.objects.get(instance=instance, nightly_date=nightly_date), False


def nightly_backup(*, instance: Instance, nightly_date: date | None = None) -> Backup | None:
    """Exactly one nightly backup per instance and day, however many runs race for it."""
    nightly_date = nightly_date or timezone.now().date()
    backup, created = _nightly_row(instance, nightly_date)
    if not created:
        log.info("nightly backup of %s for %s exists already", instance.pk, nightly_date)
        return None
    return backup_create_now(instance=instance, kind=Backup.Kind.NIGHTLY, backup=backup)


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
    name = ""
    try:
        runtime = runtime_for_instance(instance)
        image = image_for_instance(instance)
        if _container_running(instance, runtime):
            client = client_for(instance)
            version = client.version() or instance.openclaw_version
            keys = sorted(r.key for r in client.list_sessions().rows)
            chunks, info = _hot_archive(instance, client, backup)
        else:
            version = instance.openclaw_version
            keys = _offline_session_keys(runtime, instance.volume_name, image)
            chunks, info = _cold_archive(instance, runtime, image)
        name = _storage_name(backup)
        written = backup_store.write_encrypted(name, chunks)
        name = written.name
        if written.plain_size == 0:
            raise OperationError("The backup came out empty.")
        # Read it back the way a restore will: checksum, decrypt, gunzip, every tar entry.
        backup_store.verify_checksum(name, written.sha256)
        contents = _inspect_archive(backup_store.open_plaintext(name))
        if not contents["files"] or not contents["has_config"]:
            raise OperationError("The backup does not hold an OpenClaw state.")
        manifest = {
            "format": "cfbk1",
            **info,
            "openclaw_version": version,
            "session_keys": keys,
            "session_count": len(keys),
            "files": contents["files"],
            "archive_sha256": written.plain_sha256,
            "archive_size": written.plain_size,
            "size": written.size,
            "created": backup.created_at.isoformat(),
            "seconds": round(time.monotonic() - started, 2),
        }
        now = timezone.now()
        Backup.objects.filter(pk=backup.pk).update(
            state=Backup.State.SUCCEEDED,
            storage_name=name,
            size_bytes=written.size,
            sha256=written.sha256,
            manifest=manifest,
            session_count=len(keys),
            openclaw_version=version[:32],
            verified_at=now,
            finished_at=now,
            error="",
        )
    except Exception as exc:
        public = getattr(exc, "public", None) or "The backup failed; staff have the detail."
        log.warning("backup %s of %s failed: %s", backup.pk, instance.pk, type(exc).__name__)
        if name:
            try:
                backup_store.delete(name)
            except Exception:  # noqa: BLE001
                log.warning("could not delete the partial backup file %s", name)
        Backup.objects.filter(pk=backup.pk).update(
            state=Backup.State.FAILED,
            error=f"{public} ({type(exc).__name__}: {str(exc)[:300]})",
            finished_at=timezone.now(),
            storage_name="",
        )
        backup.refresh_from_db()
        if isinstance(exc, OperationError):
            raise
        raise OperationError(public, f"{type(exc).__name__}: {exc}") from exc
    backup.refresh_from_db()
    return backup


def backup_request(*, actor: Actor, instance: Instance, kind: str = "manual") -> Operation:
    """Queue an Operation (kind backup) that takes a backup of this kind."""
    if kind not in Backup.Kind.values:
        raise ValidationError({"kind": "Unknown backup kind."})
    if not instance.is_live:
        raise ValidationError("This instance is deleted.")
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


def handle_backup(op: Operation) -> None:
    kind = op.params.get("kind", Backup.Kind.MANUAL)
    with step(op, "Back up the state") as entry:
        backup = backup_create_now(instance=op.instance, kind=kind, operation=op)
        entry["detail"] = f"{backup.session_count} sessions, {backup.size_bytes} bytes"
    Operation.objects.filter(pk=op.pk).update(params={**op.params, "backup_id": str(backup.pk)})


# --- retention ------------------------------------------------------------------------------


def _retention(instance) -> tuple[int, int]:
    try:
        from billing.entitlements import retention_for

        policy = retention_for(instance.organization)
        return int(policy.get("backup_daily", 7)), int(policy.get("backup_weekly", 4))
    except Exception:  # noqa: BLE001 - retention must run even if billing is unavailable
        log.warning("retention policy unavailable for %s; using 7 daily, 4 weekly", instance.pk)
        return 7, 4


def backups_to_expire(backups: list[Backup], *, daily: int, weekly: int, now) -> list[Backup]:
    """Pure rule. Nightly backups: the newest of each of the last `daily` days that have one,
    plus the newest of each of the last `weekly` ISO weeks. Manual and safety backups: kept for
    `daily` days. The newest good backup is always kept."""
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


def apply_retention(*, instance: Instance, now=None) -> int:
    """Delete expired backup files, mark their rows expired. Returns how many."""
    now = now or timezone.now()
    daily, weekly = _retention(instance)
    expired = backups_to_expire(
        list(Backup.objects.filter(instance=instance)), daily=daily, weekly=weekly, now=now
    )
    for b in expired:
        try:
            backup_store.delete(b.storage_name)
        except Exception as exc:  # noqa: BLE001 - try again next night
            log.warning("could not delete backup file of %s: %s", b.pk, type(exc).__name__)
            continue
        Backup.objects.filter(pk=b.pk, state=Backup.State.SUCCEEDED).update(
            state=Backup.State.EXPIRED, storage_name=""
        )
    return len(expired)


# --- freshness ------------------------------------------------------------------------------


def check_backup_freshness(*, now=None) -> list[Instance]:
    """Instances that need a backup (selectors.needs_backup, the rule the nightly run and the
    admin use too; running or stopped) without a good one for FRESHNESS_HOURS: an InstanceEvent
    "backup_overdue", an audit row and an email to the organization's billing address (at most
    once a day per instance)."""
    from .selectors import needs_backup

    now = now or timezone.now()
    overdue = []
    candidates = needs_backup(Instance.objects.all(), now=now).order_by("created_at")
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
        overdue.append(instance)
    return overdue


# --- restore --------------------------------------------------------------------------------


def restore_request(*, actor: Actor, instance: Instance, backup: Backup) -> Operation:
    """Queue an Operation (kind restore) that puts this backup back into the instance."""
    if backup.instance_id != instance.pk:
        raise ValidationError({"backup": "This backup belongs to another instance."})
    if backup.state != Backup.State.SUCCEEDED or not backup.storage_name:
        raise ValidationError({"backup": "Only a complete backup can be restored."})
    if not instance.is_live:
        raise ValidationError("This instance is deleted.")
    with transaction.atomic():
        op = operation_request(
            actor=actor,
            instance=instance,
            kind=Operation.Kind.RESTORE,
            params={"backup_id": str(backup.pk)},
        )
        audit(
            actor=actor,
            action="backup.restore_requested",
            organization=instance.organization,
            target=instance,
            data={"operation": str(op.pk), "backup": str(backup.pk)},
        )
    return op


def _volume_tar(plain_chunks, manifest: dict) -> Iterator[bytes]:
    """The state as a tar of the volume root, from either archive format."""
    reader = backup_store.IterReader(backup_store.gunzip_stream(plain_chunks))
    if manifest.get("method") != "openclaw-backup":
        # A cold archive is a tar of the volume already (gzipped by us).
        yield from iter(lambda: reader.read(1024 * 1024), b"")
        return
    prefix = f"{manifest['archive_root']}/payload/posix/{STATE_PREFIX}"
    out = _Pipe()
    with (
        tarfile.open(fileobj=reader, mode="r|") as src,
        tarfile.open(fileobj=out, mode="w|") as dst,
    ):
        for member in src:
            name = member.name
            if name != prefix and not name.startswith(prefix + "/"):
                continue  # manifest.json and anything outside the state asset
            rel = name[len(prefix) :].lstrip("/")
            if not rel:
                continue
            if ".." in rel.split("/"):
                raise OperationError("The backup holds an unsafe path.")
            if member.islnk():
                if not member.linkname.startswith(prefix + "/"):
                    continue
                member.linkname = member.linkname[len(prefix) :].lstrip("/")
            member.name = rel
            member.uid = member.gid = 1000
            member.uname = member.gname = "node"
            fh = src.extractfile(member) if member.isfile() else None
            dst.addfile(member, fh)
            yield from out.drain()
    yield from out.drain()


class _Pipe(io.RawIOBase):
    def __init__(self):
        self.chunks: list[bytes] = []

    def writable(self):
        return True

    def write(self, b):
        self.chunks.append(bytes(b))
        return len(b)

    def drain(self):
        chunks, self.chunks = self.chunks, []
        return chunks


def handle_restore(op: Operation) -> None:
    instance = op.instance
    backup = Backup.objects.filter(pk=op.params.get("backup_id"), instance=instance).first()
    if backup is None or backup.state != Backup.State.SUCCEEDED:
        raise OperationError("This backup is no longer available.")
    manifest = backup.manifest or {}
    with step(op, "Verify the backup's checksum"):
        try:
            backup_store.verify_checksum(backup.storage_name, backup.sha256)
            contents = _inspect_archive(backup_store.open_plaintext(backup.storage_name))
        except backup_store.BackupCorrupt as exc:
            raise OperationError(
                "The backup file failed its integrity check; nothing was changed.", str(exc)
            ) from exc
        if not contents["has_config"]:
            raise OperationError("The backup does not hold an OpenClaw state; nothing changed.")
    runtime = runtime_for_instance(instance)
    image = image_for_instance(instance)
    with step(op, "Back up the current state"):
        pre = backup_create_now(instance=instance, kind=Backup.Kind.PRE_RESTORE, operation=op)
    stamp = timezone.now().strftime("%Y%m%d%H%M%S")
    fresh = f"{instance.volume_name}-restore-{op.pk.hex[:8]}"
    kept = f"{instance.volume_name}-prerestore-{stamp}"
    was_running = instance.status in SYNCABLE
    with step(op, "Unpack the backup into a fresh volume"):
        runtime.remove_volume(fresh)
        runtime.import_volume(
            fresh,
            image,
            _volume_tar(backup_store.open_plaintext(backup.storage_name), manifest),
            clear=True,
            owner="1000:1000",
        )
    with step(op, "Check the restored sessions") as entry:
        restored = _offline_session_keys(runtime, fresh, image)
        expected = manifest.get("session_keys") or []
        missing = sorted(set(expected) - set(restored))
        entry["detail"] = f"{len(restored)} sessions (backup manifest: {len(expected)})"
        if missing:
            runtime.remove_volume(fresh)
            raise OperationError(
                "The restored state is missing sessions; nothing was changed.",
                f"{len(missing)} manifest sessions missing after unpack",
            )
    with step(op, "Stop the instance"):
        Instance.objects.filter(pk=instance.pk).update(status=Instance.Status.RESTORING)
        runtime.stop(instance.container_name, timeout=30)
    swapped = False
    try:
        with step(op, "Keep the current state aside"):
            runtime.copy_volume(instance.volume_name, kept, image)
            InstanceEvent.objects.create(
                instance=instance,
                kind="prerestore_volume_kept",
                message=f"State before the restore kept for {PRERESTORE_KEEP_DAYS} days",
                data={
                    "volume": kept,
                    "remove_after": (
                        timezone.now() + timedelta(days=PRERESTORE_KEEP_DAYS)
                    ).isoformat(),
                    "pre_restore_backup": str(pre.pk),
                },
            )
        with step(op, "Swap the restored state in"):
            swapped = True
            runtime.copy_volume(fresh, instance.volume_name, image)
            runtime.remove_volume(fresh)
    except Exception:
        if swapped:  # the instance volume may be half-written: put the kept copy back
            log.warning("restore swap failed for %s; putting the previous state back", instance.pk)
            runtime.copy_volume(kept, instance.volume_name, image)
        _restart_after_failure(instance, runtime, was_running)
        raise
    with step(op, "Start the instance"):
        if was_running:
            runtime.start(instance.container_name)
            from django.conf import settings

            runtime.wait_ready(
                instance.host_port,
                timeout=settings.FLEET_READY_TIMEOUT,
                name=instance.container_name,
            )
            Instance.objects.filter(pk=instance.pk).update(
                status=Instance.Status.RUNNING, last_ready_at=timezone.now()
            )
            instance.status = Instance.Status.RUNNING
        else:
            Instance.objects.filter(pk=instance.pk).update(status=Instance.Status.STOPPED)
    if was_running:
        with step(op, "Compare the sessions with the backup") as entry:
            live = sorted(r.key for r in _retry(lambda: client_for(instance).list_sessions()).rows)
            missing = sorted(set(manifest.get("session_keys") or []) - set(live))
            entry["detail"] = f"{len(live)} sessions live, {len(missing)} missing"
            if missing:
                raise OperationError(
                    "The restored instance does not list every session of the backup.",
                    f"{len(missing)} sessions missing",
                )
        with step(op, "Update the session list"):
            sync_instance_sessions(instance=instance, full=True)
    audit(
        actor=SYSTEM,
        action="backup.restored",
        organization=instance.organization,
        target=instance,
        data={"backup": str(backup.pk), "pre_restore_backup": str(pre.pk), "kept_volume": kept},
    )


def _retry(fn, attempts: int = 5, delay: float = 2.0):
    for i in range(attempts):
        try:
            return fn()
        except OpenClawError:
            if i == attempts - 1:
                raise
            time.sleep(delay)
    return None


def _restart_after_failure(instance, runtime, was_running: bool) -> None:
    if not was_running:
        Instance.objects.filter(pk=instance.pk).update(status=Instance.Status.STOPPED)
        return
    try:
        runtime.start(instance.container_name)
        Instance.objects.filter(pk=instance.pk).update(status=Instance.Status.STARTING)
    except Exception:  # noqa: BLE001 - the reconcile loop takes it from here
        log.warning("could not restart %s after a failed restore", instance.pk)


def remove_expired_prerestore_volumes(*, now=None) -> int:
    """Remove `<volume>-prerestore-*` copies whose grace period is over (nightly)."""
    now = now or timezone.now()
    removed = 0
    events = InstanceEvent.objects.filter(kind="prerestore_volume_kept").select_related(
        "instance__host"
    )
    for event in events:
        data = event.data or {}
        if data.get("removed_at") or not data.get("volume"):
            continue
        remove_after = data.get("remove_after")
        if remove_after and timezone.datetime.fromisoformat(remove_after) > now:
            continue
        try:
            runtime_for_instance(event.instance).remove_volume(data["volume"])
        except Exception as exc:  # noqa: BLE001 - try again next night
            log.warning("could not remove %s: %s", data["volume"], type(exc).__name__)
            continue
        event.data = {**data, "removed_at": now.isoformat()}
        event.save(update_fields=["data"])
        removed += 1
    return removed


__all__ = [
    "SyncResult",
    "TranscriptUnavailable",
    "apply_retention",
    "backup_create_now",
    "backup_request",
    "check_backup_freshness",
    "ms_to_dt",
    "nightly_backup",
    "prune_preview",
    "prune_sessions",
    "restore_request",
    "sync_after_operation",
    "sync_instance_sessions",
    "transcript_for_member",
    "transcript_for_staff",
    "transcript_page",
]
