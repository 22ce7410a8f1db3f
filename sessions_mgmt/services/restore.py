"""Restore: the request, and the archive turned back into a state volume.

- Checksum, then decrypt and read the archive, before anything changes (a corrupt file is refused
  and the instance is untouched). Then a pre-restore backup, unpack into a fresh volume, check it
  with OpenClaw's own offline `openclaw sessions --json`, stop, keep the current volume as
  `<volume>-prerestore-<stamp>` (FLEET_PRERESTORE_KEEP_DAYS, removed by the nightly run), copy the
  fresh volume over the instance's volume (the volume name never changes, so the container spec
  stays as it is), then end in the desired state: desired running, start, wait until ready,
  compare the session keys with the manifest, re-sync; desired stopped, stay at rest.
- Every status change goes through instances.state.transition (restoring, then starting and
  running, or back at rest). The handler is sessions_mgmt.handlers.handle_restore.
"""

from __future__ import annotations

import io
import logging
import tarfile
from collections.abc import Iterator

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.services import Actor, audit
from instances.models import Instance, InstanceEvent, Operation
from instances.operations import OperationError, operation_request

from .. import backup_store
from ..models import Backup
from . import access, quotas

log = logging.getLogger(__name__)

STATE_PREFIX = "home/node/.openclaw"


def prerestore_keep_days() -> int:
    """How long the state before a restore is kept as a volume (FLEET_PRERESTORE_KEEP_DAYS)."""
    return int(settings.FLEET_PRERESTORE_KEEP_DAYS)


def restore_request(*, actor: Actor, instance: Instance, backup: Backup) -> Operation:
    """Queue an Operation (kind restore) that puts this backup back into the instance."""
    if backup.instance_id != instance.pk:
        raise ValidationError({"backup": "This backup belongs to another instance."})
    if backup.state != Backup.State.SUCCEEDED or not backup.storage_name:
        raise ValidationError({"backup": "Only a complete backup can be restored."})
    if not instance.is_live:
        raise ValidationError("This instance is deleted.")
    quotas.check_restore(instance)
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


def restore_recorded(*, instance: Instance, backup: Backup, pre_restore: Backup, kept_volume):
    """The audit row of a finished restore (written by the service, as every audit row is)."""
    from accounts.services import SYSTEM

    audit(
        actor=SYSTEM,
        action="backup.restored",
        organization=instance.organization,
        target=instance,
        data={
            "backup": str(backup.pk),
            "pre_restore_backup": str(pre_restore.pk) if pre_restore else None,
            "kept_volume": kept_volume,
        },
    )


def volume_tar(plain_chunks, manifest: dict) -> Iterator[bytes]:
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
            # A long path came in a PAX header; written back it would win over the new name.
            for key in ("path", "linkpath", "uid", "gid", "uname", "gname"):
                member.pax_headers.pop(key, None)
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
            access.runtime_for_instance(event.instance).remove_volume(data["volume"])
        except Exception as exc:  # noqa: BLE001 - try again next night
            log.warning("could not remove %s: %s", data["volume"], type(exc).__name__)
            continue
        event.data = {**data, "removed_at": now.isoformat()}
        event.save(update_fields=["data"])
        removed += 1
    return removed
