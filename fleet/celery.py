"""The Celery app and the static beat schedule (one commented line per periodic job)."""

import os

from celery import Celery
from celery.schedules import crontab
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fleet.settings")

app = Celery("fleet")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Separate queues so that nightly maintenance never starves a customer's deploy.
app.conf.task_queues = (Queue("operations"), Queue("maintenance"), Queue("billing"))
app.autodiscover_tasks()


app.conf.beat_schedule = {
    # Compare what PostgreSQL wants with what every engine reports; restart crashed instances.
    "reconcile-fleet": {
        "task": "instances.tasks.reconcile_fleet",
        "schedule": 30.0,  # settings.FLEET_RECONCILE_SECONDS, see _periods_from_settings
    },
    # Keep each host's warm pool of pre-booted gateways full (a no-op with the pool off).
    "refill-warm-pools": {
        "task": "instances.tasks.refill_warm_pools",
        "schedule": 15.0,
    },
    # Read every connected chat channel's health from OpenClaw; restart recovered ones.
    "channel-health": {
        "task": "channels.tasks.check_all_channels",
        "schedule": 30.0,  # settings.FLEET_CHANNEL_HEALTH_SECONDS
    },
    # Mirror each running instance's sessions, tokens and costs into PostgreSQL.
    "sync-sessions": {
        "task": "sessions_mgmt.tasks.sync_all_sessions",
        "schedule": 180.0,  # settings.FLEET_SESSION_SYNC_SECONDS
    },
    # Nightly backups of every instance, fanned out with a bounded concurrency.
    "nightly-backups": {
        "task": "sessions_mgmt.tasks.nightly_backups",
        "schedule": crontab(hour=2, minute=0),
    },
    # Point-in-time backups of running instances whose plan interval (default 15 min) passed.
    "point-backups": {
        "task": "sessions_mgmt.tasks.point_backups",
        "schedule": 60.0,
    },
    # The one backup retention job (plan: points, dailies, weeklies; never the last good one).
    "backup-retention": {
        "task": "sessions_mgmt.tasks.backup_retention",
        "schedule": crontab(minute=40),
    },
    # Restore a random instance's latest backup into a scratch volume and check it.
    "prove-backups": {
        "task": "sessions_mgmt.tasks.prove_backups",
        "schedule": crontab(hour=4, minute=30),
    },
    # Nightly session pruning by each instance's retention policy.
    "nightly-prune": {
        "task": "sessions_mgmt.tasks.nightly_prune",
        "schedule": crontab(hour=3, minute=0),
    },
    # Alert on instances without a good backup for 26 hours.
    "backup-freshness": {
        "task": "sessions_mgmt.tasks.check_backup_freshness",
        "schedule": crontab(minute=15),
    },
    # Roll usage up into the per-instance, per-day cost ledger; budgets and meter events.
    "usage-rollup": {
        "task": "billing.tasks.rollup_usage",
        "schedule": crontab(minute=5),
    },
    # Pause instances whose payment grace period has ended (after a backup).
    "billing-grace": {
        "task": "billing.tasks.enforce_grace_periods",
        "schedule": crontab(minute="*/15"),
    },
    # Queue the outgoing webhook deliveries whose next try is due (notifications/).
    "webhook-deliveries": {
        "task": "notifications.tasks.deliver_due_webhooks",
        "schedule": 60.0,
    },
    # Purge instances deleted more than FLEET_DELETE_GRACE_DAYS ago.
    "purge-deleted": {
        "task": "instances.tasks.purge_expired_instances",
        "schedule": crontab(hour=4, minute=0),
    },
}


@app.on_after_configure.connect
def _periods_from_settings(sender, **kwargs):
    """The two short periods are settings (read from the environment in fleet/settings.py only);
    Django's settings are loaded by the time Celery reads its configuration from them."""
    from django.conf import settings

    schedule = sender.conf.beat_schedule
    schedule["reconcile-fleet"]["schedule"] = float(settings.FLEET_RECONCILE_SECONDS)
    schedule["sync-sessions"]["schedule"] = float(settings.FLEET_SESSION_SYNC_SECONDS)
    schedule["channel-health"]["schedule"] = float(settings.FLEET_CHANNEL_HEALTH_SECONDS)
