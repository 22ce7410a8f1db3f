"""Restoring an ``openclaw backup create`` archive into a state volume with OpenClaw's own
``openclaw backup restore`` (it verifies the archive and its SQLite snapshots), composed from a
runtime's ``ensure_volume`` and ``run_in_volume``. Creating a backup runs in the live gateway
(``client.OpenClawClient.backup_create``)."""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterable
from typing import BinaryIO

from ..runtime.errors import HelperFailed

RESTORE_DIR = "/tmp/clawfleet-restore"
RESTORE_TIMEOUT = 1800
# Runs as uid 1000 in a helper whose /tmp is its own layer (the archive is put there first).
# The state asset's path in the extracted tree comes from the archive's manifest.json
# (assets[kind=state].archivePath).
RESTORE_SCRIPT = (
    "set -eu; R=" + RESTORE_DIR + "; mkdir -p $R/tmp; "
    "openclaw backup restore $R/backup.tar.gz --target $R/out --json > $R/restore.json; "
    "SRC=$(node -e \"const fs=require('fs'),p=require('path');const t=process.argv[1];"
    "const root=fs.readdirSync(t).find(d=>fs.existsSync(p.join(t,d,'manifest.json')));"
    "const m=JSON.parse(fs.readFileSync(p.join(t,root,'manifest.json'),'utf8'));"
    "const a=m.assets.find(a=>a.kind==='state');"
    "if(!a){console.error('no state asset in manifest');process.exit(4)}"
    'process.stdout.write(p.join(t,a.archivePath))" $R/out); '
    'find "$OPENCLAW_STATE_DIR" -mindepth 1 -delete; '
    'cp -a "$SRC"/. "$OPENCLAW_STATE_DIR"/; chmod 700 "$OPENCLAW_STATE_DIR"; '
    'mkdir -p "$OPENCLAW_STATE_DIR/tmp" "$OPENCLAW_STATE_DIR/cache"; '
    "cat $R/restore.json"
)


def restore_backup(
    runtime,
    volume_name: str,
    image: str,
    archive: bytes | BinaryIO | Iterable[bytes] | str,
    *,
    timeout: float = RESTORE_TIMEOUT,
) -> dict:
    """Replace the volume's content (created if absent) with an ``openclaw backup create``
    archive (.tar.gz); returns OpenClaw's restore JSON.

    Stop the instance's gateway first. In a helper (no network, uid 1000): ``openclaw backup
    restore ARCHIVE --target FRESH --json`` (verifies, extracts to a fresh dir), then the
    ``state`` asset named by the archive's manifest replaces the volume's content. The restored
    ``openclaw.json`` is the backup's: call ``write_config`` afterwards (new token, current
    provider settings). ``archive``: bytes, a binary file, an iterator of chunks or a path on
    this machine."""
    runtime.ensure_volume(volume_name, {})
    with contextlib.ExitStack() as stack:
        if isinstance(archive, str):
            content = stack.enter_context(open(archive, "rb"))  # noqa: SIM115
        elif isinstance(archive, bytes | bytearray) or hasattr(archive, "read"):
            content = archive
        else:
            content = stack.enter_context(tempfile.TemporaryFile())
            for chunk in archive:
                content.write(chunk)
            content.seek(0)
        code, out, err = runtime.run_in_volume(
            volume_name,
            image,
            ["sh", "-c", RESTORE_SCRIPT],
            env={"TMPDIR": f"{RESTORE_DIR}/tmp"},
            timeout=timeout,
            files={f"{RESTORE_DIR}/backup.tar.gz": content},
        )
    if code != 0:
        raise HelperFailed(
            f"openclaw backup restore failed (exit {code}): "
            f"{(out + err).decode(errors='replace')[-1500:]}"
        )
    text = out.decode(errors="replace")
    start = text.find("{")
    return json.loads(text[start:]) if start >= 0 else {}
