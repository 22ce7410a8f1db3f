"""Operation handlers of sessions_mgmt: backup, restore and prune (registered in
SessionsMgmtConfig.ready() with instances.operations.register_handler).

Each is a sequence of steps (instances.operations.step) the dashboard, the API and the admin show
live. Every status change goes through instances.state.transition; every operation ends in the
instance's desired state (a restore of an instance that is wanted running ends running and ready,
whatever status it was observed in when the restore began), and the reconcile loop converges the
rest.
"""

from __future__ import annotations

import logging
import time
from datetime import date, timedelta

from django.conf import settings
from django.utils import timezone

from fleet import hooks
from instances import edge, specs, state
from instances.models import Instance, InstanceEvent, Operation
from instances.openclaw.client import OpenClawError
from instances.operations import OperationError, step

from . import backup_store
from .models import Backup
from .services import access, backups, mirror, restore, retention

log = logging.getLogger(__name__)
S = Instance.Status
STOP_TIMEOUT = 30


# --- backup -----------------------------------------------------------------------------------


def handle_backup(op: Operation) -> None:
    kind = op.params.get("kind", Backup.Kind.MANUAL)
    with step(op, "Back up the state") as entry:
        if kind == Backup.Kind.NIGHTLY and op.params.get("nightly_date"):
            night = date.fromisoformat(op.params["nightly_date"])
            backup = backups.nightly_backup(instance=op.instance, nightly_date=night, operation=op)
            if backup is None:
                entry["detail"] = f"the nightly backup of {night} exists already"
                return
        else:
            backup = backups.backup_create_now(instance=op.instance, kind=kind, operation=op)
        entry["detail"] = f"{backup.session_count} sessions, {backup.size_bytes} bytes"
    Operation.objects.filter(pk=op.pk).update(params={**op.params, "backup_id": str(backup.pk)})


# --- prune ------------------------------------------------------------------------------------


def handle_prune(op: Operation) -> None:
    instance = op.instance
    if instance.status not in access.SYNCABLE:
        raise OperationError("Start the instance to prune its sessions.")
    client = access.client_for(instance)
    with step(op, "Read the sessions from OpenClaw"):
        mirror.sync_instance_sessions(instance=instance, full=True)
    with step(op, "Choose idle and surplus sessions") as entry:
        keys = retention.prune_preview(instance=instance)
        entry["detail"] = f"{len(keys)} to prune"
    if keys and instance.archive_before_prune:
        with step(op, "Archive them in OpenClaw"):
            retention.check_lifecycle(client.archive(keys), "archive")
    if keys:
        with step(op, "Delete them in OpenClaw"):
            retention.check_lifecycle(client.delete(keys), "delete")
    with step(op, "Update the session list") as entry:
        result = mirror.sync_instance_sessions(instance=instance, full=True)
        entry["detail"] = f"{result.pruned} marked pruned"
    Operation.objects.filter(pk=op.pk).update(params={**op.params, "pruned": len(keys)})


# --- restore ----------------------------------------------------------------------------------


def _restore_target(op: Operation, instance: Instance) -> tuple[bool, str]:
    """(end running?, the status at rest otherwise), decided from the desired state, never from
    the observed status (a "starting" instance the reconcile loop is bringing back is wanted
    running). A billing pause is kept: a paused instance is restored at rest and stays paused.
    Written into the operation's params on the first run, so a resumed run (its worker died
    after the status became "restoring") decides the same."""
    at_rest = op.params.get("at_rest")
    if at_rest is None:
        at_rest = S.PAUSED if instance.status == S.PAUSED else S.STOPPED
        op.params = {**op.params, "at_rest": str(at_rest)}
        Operation.objects.filter(pk=op.pk).update(params=op.params)
    wants_running = instance.desired_state == Instance.DesiredState.RUNNING and at_rest != S.PAUSED
    return wants_running, at_rest


def handle_restore(op: Operation) -> None:
    instance = op.instance
    wants_running, at_rest = _restore_target(op, instance)
    try:
        _restore(op, instance, wants_running, at_rest)
    except Exception:
        instance.refresh_from_db()
        if instance.status == S.RESTORING:
            _settle_after_failure(op, instance, wants_running, at_rest)
        raise


def _restore(op: Operation, instance: Instance, wants_running: bool, at_rest: str) -> None:
    backup = Backup.objects.filter(pk=op.params.get("backup_id"), instance=instance).first()
    if backup is None or backup.state != Backup.State.SUCCEEDED:
        raise OperationError("This backup is no longer available.")
    manifest = backup.manifest or {}
    with step(op, "Verify the backup's checksum"):
        try:
            backups.verify_stored(backup)
            contents = backups.inspect_archive(backups.archive_chunks(backup))
        except backup_store.BackupCorrupt as exc:
            raise OperationError(
                "The backup file failed its integrity check; nothing was changed.", str(exc)
            ) from exc
        if not contents["has_config"]:
            raise OperationError("The backup does not hold an OpenClaw state; nothing changed.")
    runtime = access.runtime_for_instance(instance)
    image = access.image_for_instance(instance)
    with step(op, "Back up the current state") as entry:
        try:
            pre = backups.backup_create_now(
                instance=instance, kind=Backup.Kind.PRE_RESTORE, operation=op
            )
        except backups.NothingToBackUp:
            # The state is lost (volume gone or empty): nothing to keep, the restore goes on.
            pre = None
            runtime.ensure_volume(instance.volume_name, {})
            entry["detail"] = "the instance holds no state (lost volume): nothing to keep"
    stamp = timezone.now().strftime("%Y%m%d%H%M%S")
    fresh = f"{instance.volume_name}-restore-{op.pk.hex[:8]}"
    kept = f"{instance.volume_name}-prerestore-{stamp}"
    with step(op, "Unpack the backup into a fresh volume"):
        runtime.remove_volume(fresh)
        runtime.import_volume(
            fresh,
            image,
            restore.volume_tar(backups.archive_chunks(backup), manifest),
            clear=True,
            owner="1000:1000",
        )
    with step(op, "Check the restored sessions") as entry:
        try:
            restored = backups.offline_session_keys(runtime, fresh, image)
        except Exception:
            runtime.remove_volume(fresh)  # nothing changed: leave no unpacked copy behind
            raise
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
        state.transition(instance, S.RESTORING, reason="restore", operation=op, message="")
        edge.sync_quietly(instance)  # the address answers "being restored" meanwhile
        runtime.stop(instance.container_name, timeout=STOP_TIMEOUT)
    swapped = False
    try:
        with step(op, "Keep the current state aside"):
            runtime.copy_volume(instance.volume_name, kept, image)
            days = restore.prerestore_keep_days()
            InstanceEvent.objects.create(
                instance=instance,
                kind="prerestore_volume_kept",
                message=f"State before the restore kept for {days} days",
                data={
                    "volume": kept,
                    "remove_after": (timezone.now() + timedelta(days=days)).isoformat(),
                    "pre_restore_backup": str(pre.pk) if pre else None,
                },
            )
        with step(op, "Swap the restored state in"):
            swapped = True
            runtime.copy_volume(fresh, instance.volume_name, image)
            runtime.remove_volume(fresh)
        with step(op, "Write the owned configuration"):
            # The backup's openclaw.json may predate a token rotation or an address change:
            # the owned paths (token, public origin, model...) are today's (issue 13).
            runtime.write_config(
                instance.volume_name,
                image,
                specs.config_for(instance),
                specs.owned_paths_for(instance),
                validate=False,
                secrets=specs.secrets_of(instance),
            )
    except Exception:
        if swapped:  # the instance volume may be half-written: put the kept copy back
            log.warning("restore swap failed for %s; putting the previous state back", instance.pk)
            runtime.copy_volume(kept, instance.volume_name, image)
        raise
    if not wants_running:
        with step(op, "Leave the instance at rest", str(at_rest)):
            state.transition(instance, at_rest, reason="restore: wanted at rest", operation=op)
            edge.sync_quietly(instance)
    else:
        with step(op, "Start the instance") as entry:
            runtime.ensure_container(specs.spec_for(instance, image))
            runtime.start(instance.container_name)
            state.transition(instance, S.STARTING, reason="restore: started", operation=op)
            try:
                waited = runtime.wait_ready(
                    instance.host_port,
                    timeout=settings.FLEET_READY_TIMEOUT,
                    name=instance.container_name,
                )
            except Exception as exc:
                raise OperationError(
                    "The restored instance did not become ready; it keeps trying to start.",
                    f"{type(exc).__name__}: {exc}",
                ) from exc
            state.transition(
                instance,
                S.RUNNING,
                reason="restore ready",
                operation=op,
                message="",
                crash_count=0,
                crash_window_started_at=None,
            )
            edge.sync_quietly(instance)  # the same address, the container's address now
            entry["detail"] = f"ready after {waited:.1f}s"
        with step(op, "Compare the sessions with the backup") as entry:
            listing = _retry(lambda: access.client_for(instance).list_sessions())
            live = sorted(r.key for r in listing.rows)
            missing = sorted(set(manifest.get("session_keys") or []) - set(live))
            entry["detail"] = f"{len(live)} sessions live, {len(missing)} missing"
            if missing:
                raise OperationError(
                    "The restored instance does not list every session of the backup.",
                    f"{len(missing)} sessions missing",
                )
        with step(op, "Update the session list"):
            mirror.sync_instance_sessions(instance=instance, full=True)
        _after_ready(op, instance)
    restore.restore_recorded(instance=instance, backup=backup, pre_restore=pre, kept_volume=kept)


def _after_ready(op: Operation, instance: Instance) -> None:
    """Tell the other subscribers the gateway is ready again (as instances' handlers do)."""
    try:
        hooks.run("instance.ready", instance=instance, operation=op)
    except Exception as exc:  # noqa: BLE001 - the restore itself succeeded
        log.warning("instance.ready hook for %s failed: %s", instance.pk, type(exc).__name__)


def _retry(fn, attempts: int = 5, delay: float = 2.0):
    for i in range(attempts):
        try:
            return fn()
        except OpenClawError:
            if i == attempts - 1:
                raise
            time.sleep(delay)
    return None


def _settle_after_failure(op: Operation, instance: Instance, wants_running: bool, at_rest: str):
    """A restore failed after the instance was stopped for it: end in the desired state as far as
    we can. Wanted running: start it and leave it "starting", which the reconcile loop watches
    (ready: running; not: restarted, then crash-looping). Otherwise back at rest."""
    if not wants_running:
        state.transition(instance, at_rest, reason="restore failed", operation=op)
        return
    try:
        runtime = access.runtime_for_instance(instance)
        runtime.start(instance.container_name)
    except Exception as exc:  # noqa: BLE001 - the reconcile loop takes it from here
        log.warning("could not restart %s after a failed restore: %s", instance.pk, exc)
    state.transition(
        instance,
        S.STARTING,
        reason="restore failed: starting again",
        operation=op,
        message="The restore failed; the instance is starting again.",
    )


def register_all() -> None:
    from instances.operations import register_handler

    register_handler(Operation.Kind.BACKUP, handle_backup)
    register_handler(Operation.Kind.RESTORE, handle_restore)
    register_handler(Operation.Kind.PRUNE, handle_prune)
