"""The events an organization hears about, by webhook and by email: one table.

`WEBHOOK_EVENTS` are what an endpoint may subscribe to. `EMAIL_KINDS` are the problems mailed
to owners and admins (each opt-out per person); `webhook.disabled` always goes to the owners.
"""

from __future__ import annotations

INSTANCE_STATUS = "instance.status_changed"
OPERATION_FINISHED = "operation.finished"
BACKUP_FAILED = "backup.failed"
BACKUP_MISSING = "backup.missing"
BUDGET_THRESHOLD = "budget.threshold_reached"
CHANNEL_BROKEN = "channel.broken"
WEBHOOK_DISABLED = "webhook.disabled"

WEBHOOK_EVENTS = {
    INSTANCE_STATUS: "An instance is now running, stopped, crash-looping or failed",
    OPERATION_FINISHED: "An operation finished (its kind and result)",
    BACKUP_FAILED: "A backup failed",
    BACKUP_MISSING: "An instance has had no good backup for 26 hours",
    BUDGET_THRESHOLD: "A budget reached 80 % or 100 %",
    CHANNEL_BROKEN: "A chat channel broke",
}

# The statuses an instance.status_changed event is sent for (the others are steps on the way).
NOTIFIED_STATUSES = ("running", "stopped", "crash_looping", "failed")

# Emails: the problems, by kind (an instance.status_changed event mails only these statuses).
EMAIL_KINDS = {
    "instance.crash_looping": "An instance is crash-looping",
    "instance.failed": "An instance failed",
    "operation.failed": "An operation failed",
    BACKUP_FAILED: "A backup failed",
    BACKUP_MISSING: "No backup for 26 hours",
    BUDGET_THRESHOLD: "A budget threshold was reached",
    CHANNEL_BROKEN: "A chat channel broke",
}


def email_kind(event_type: str, data: dict) -> str | None:
    """The email kind of an event, or None when it is not mailed."""
    if event_type == INSTANCE_STATUS:
        kind = f"instance.{data.get('status')}"
        return kind if kind in EMAIL_KINDS else None
    if event_type == OPERATION_FINISHED:
        if data.get("operation", {}).get("kind") == "backup":
            return None  # mailed as backup.failed
        return "operation.failed" if data.get("operation", {}).get("state") == "failed" else None
    return event_type if event_type in EMAIL_KINDS else None
