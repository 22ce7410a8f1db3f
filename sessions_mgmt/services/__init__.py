"""Writes for sessions and backups, one module per sub-domain (docs/backups.md has the
operator's view):

    mirror       the session mirror: incremental, idempotent sync from OpenClaw's store
    transcripts  transcripts read from the instance on demand, never stored
    retention    which sessions a prune removes, and the prune request
    backups      backups (hot or cold), the nightly run, backup retention, the freshness alert
    restore      the restore request and the archive turned back into a volume
    access       the OpenClaw client, runtime and image of an instance

The operation handlers (backup, restore, prune) are in sessions_mgmt/handlers.py. The names
below are this app's service API for dashboard views, the API, the admin and management
commands; code inside the package calls the modules (a test replaces the OpenClaw client with
`access.client_for`).
"""

from __future__ import annotations

from instances.openclaw.client import ms_to_dt

from .access import client_for, image_for_instance, runtime_for_instance
from .backups import (
    FRESHNESS_HOURS,
    apply_retention,
    backup_create_now,
    backup_request,
    backups_to_expire,
    check_backup_freshness,
    nightly_backup,
    nightly_backup_request,
)
from .mirror import SyncResult, sync_instance_sessions
from .restore import remove_expired_prerestore_volumes, restore_request
from .retention import prune_preview, prune_sessions
from .transcripts import (
    TranscriptUnavailable,
    transcript_for_member,
    transcript_for_staff,
    transcript_page,
)

__all__ = [
    "FRESHNESS_HOURS",
    "SyncResult",
    "TranscriptUnavailable",
    "apply_retention",
    "backup_create_now",
    "backup_request",
    "backups_to_expire",
    "check_backup_freshness",
    "client_for",
    "image_for_instance",
    "ms_to_dt",
    "nightly_backup",
    "nightly_backup_request",
    "prune_preview",
    "prune_sessions",
    "remove_expired_prerestore_volumes",
    "restore_request",
    "runtime_for_instance",
    "sync_instance_sessions",
    "transcript_for_member",
    "transcript_for_staff",
    "transcript_page",
]
