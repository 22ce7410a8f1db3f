"""Thin Celery tasks: ids in, load, call the service (queue "maintenance", see settings).

Bounded fan-out: a coordinator splits the instances into N lanes (N = FLEET_BACKUP_CONCURRENCY)
and sends each lane as one Celery chain of per-instance tasks. A chain runs its tasks one after
another, so at most N backups (or prunes) run at once however many workers listen, and a lane's
task never raises (failures are recorded on the Backup or Operation row), so one broken instance
never stops the rest of its lane. Backups and prunes are Operations run inline in their lane:
they take the instance's one-active-operation lock like every other long action, so a nightly
backup never overlaps a restore or an upgrade (a busy instance's task waits and retries).
"""

from __future__ import annotations

import logging

from celery import chain, shared_task
from django.conf import settings
from django.utils import timezone

from instances.models import Instance

log = logging.getLogger(__name__)

COMMON = {"acks_late": True, "ignore_result": True}


def lanes(ids: list, n: int) -> list[list]:
    n = max(1, int(n or 1))
    return [ids[i::n] for i in range(n) if ids[i::n]]


def fan_out(task, ids: list, *args) -> int:
    for lane in lanes(ids, settings.FLEET_BACKUP_CONCURRENCY):
        chain(*(task.si(str(i), *args) for i in lane)).apply_async()
    return len(ids)


def _running_ids():
    return list(
        Instance.objects.filter(status=Instance.Status.RUNNING, host__isnull=False)
        .order_by("created_at")
        .values_list("pk", flat=True)
    )


@shared_task(soft_time_limit=300, time_limit=360, **COMMON)
def sync_all_sessions() -> int:
    """Beat (every FLEET_SESSION_SYNC_SECONDS): one sync task per running instance."""
    ids = _running_ids()
    for pk in ids:
        sync_instance_sessions_task.delay(str(pk))
    return len(ids)


@shared_task(soft_time_limit=600, time_limit=660, **COMMON)
def sync_instance_sessions_task(instance_id: str, full: bool | None = None) -> None:
    """One instance's sync (the beat's, or the full one queued when an operation left the
    instance ready: the "instance.ready" hook)."""
    from .services import mirror

    instance = Instance.objects.select_related("host").filter(pk=instance_id).first()
    if instance is None:
        return
    # A failure (down, slow, garbage) is recorded as an InstanceEvent by sync_or_record and
    # never raised: the other instances' tasks of the same beat go on.
    mirror.sync_or_record(instance=instance, full=full)


@shared_task(soft_time_limit=600, time_limit=660, **COMMON)
def nightly_backups(date_iso: str | None = None) -> int:
    """Beat (02:00): one nightly backup per instance that needs one, FLEET_BACKUP_CONCURRENCY at
    a time; also removes pre-restore volumes whose grace period is over."""
    from .selectors import BACKUP_MAX_AGE, needs_backup
    from .services import restore

    now = timezone.now()
    date_iso = date_iso or now.date().isoformat()
    # Every instance that would be overdue by the end of the coming cycle without tonight's run.
    ids = list(
        needs_backup(Instance.objects.all(), now=now + BACKUP_MAX_AGE)
        .order_by("created_at")
        .values_list("pk", flat=True)
    )
    try:
        restore.remove_expired_prerestore_volumes()
    except Exception as exc:  # noqa: BLE001
        log.warning("pre-restore volume cleanup failed: %s", type(exc).__name__)
    return fan_out(nightly_backup_task, ids, date_iso)


# An instance busy with another operation (a restore, an upgrade...) when its nightly backup comes:
# the task waits and tries again, NIGHTLY_BUSY_RETRIES times NIGHTLY_BUSY_COUNTDOWN seconds apart
# (its lane waits with it, so the concurrency bound holds), then gives up for the night (the
# freshness alert reports an instance that stays without a backup).
NIGHTLY_BUSY_RETRIES = 6
NIGHTLY_BUSY_COUNTDOWN = 300


def run_nightly_backup(instance_id: str, date_iso: str) -> str:
    """One instance's nightly backup as an Operation (kind backup), run inline in the lane.
    Returns what happened: "done" (the operation ran; a failure is on its row and the Backup's),
    "exists" (tonight's backup is there already), "busy" (another operation holds the instance:
    nothing was started) or "gone". Never raises for a failed backup."""
    from datetime import date

    from instances.operations import OperationInProgress, run_operation

    from .models import Backup
    from .services import backups

    instance = Instance.objects.select_related("host", "organization").filter(pk=instance_id)
    instance = instance.first()
    if instance is None or not instance.is_live:
        return "gone"
    night = date.fromisoformat(date_iso)
    if Backup.objects.filter(instance=instance, nightly_date=night).exists():
        return "exists"
    try:
        op = backups.nightly_backup_request(instance=instance, nightly_date=night)
    except OperationInProgress:
        return "busy"
    try:
        run_operation(op.pk)
    except Exception as exc:  # noqa: BLE001 - one broken instance never stops its lane
        log.warning("nightly backup of %s failed: %s", instance_id, type(exc).__name__)
    return "done"


@shared_task(bind=True, soft_time_limit=1800, time_limit=1900, **COMMON)
def nightly_backup_task(self, instance_id: str, date_iso: str) -> str:
    outcome = run_nightly_backup(instance_id, date_iso)
    if outcome == "busy":
        if self.request.retries < NIGHTLY_BUSY_RETRIES:
            log.info("nightly backup of %s waits: an operation is in progress", instance_id)
            raise self.retry(countdown=NIGHTLY_BUSY_COUNTDOWN, max_retries=NIGHTLY_BUSY_RETRIES)
        log.warning("nightly backup of %s skipped: the instance stayed busy", instance_id)
    return outcome


@shared_task(soft_time_limit=600, time_limit=660, **COMMON)
def nightly_prune() -> int:
    """Beat (03:00): prune every running instance with something to prune, in lanes."""
    from .services import retention

    ids = [
        pk for pk in _running_ids() if retention.prune_preview(instance=Instance.objects.get(pk=pk))
    ]
    return fan_out(prune_instance_task, ids)


@shared_task(soft_time_limit=1800, time_limit=1900, **COMMON)
def prune_instance_task(instance_id: str) -> None:
    """Runs the prune Operation inline, so the lane bounds how many run at once."""
    from accounts.services import SYSTEM
    from instances.operations import OperationInProgress, run_operation

    from .services import retention

    instance = Instance.objects.select_related("host", "organization").filter(pk=instance_id)
    instance = instance.first()
    if instance is None:
        return
    try:
        op = retention.prune_sessions(actor=SYSTEM, instance=instance, enqueue=False)
    except OperationInProgress:
        log.info("nightly prune of %s skipped: an operation is in progress", instance_id)
        return
    run_operation(op.pk)


@shared_task(soft_time_limit=600, time_limit=660, **COMMON)
def check_backup_freshness() -> int:
    """Beat (hourly): alert on instances that need a backup (selectors.needs_backup: no good
    backup for 26 hours)."""
    from .services import backups

    return len(backups.check_backup_freshness())


# --- frequent points, retention, the nightly proof ----------------------------------------------

# A point that failed (the store down...) is tried again at the next beat tick after this many
# seconds, so an outage does not leave a failed row a minute per instance.
POINT_RETRY_SECONDS = 120


def points_due(*, now=None) -> list:
    """Running instances whose plan interval has passed since their newest good backup (of any
    kind), and whose last point attempt is not younger than POINT_RETRY_SECONDS."""
    from datetime import timedelta

    from .models import Backup
    from .services import backups

    now = now or timezone.now()
    due = []
    instances = Instance.objects.filter(
        status=Instance.Status.RUNNING, host__isnull=False
    ).select_related("organization")
    for instance in instances.order_by("created_at"):
        interval = timedelta(minutes=backups.backup_policy(instance)["interval_minutes"])
        last_good = (
            Backup.objects.filter(instance=instance, state=Backup.State.SUCCEEDED)
            .order_by("-created_at")
            .values_list("created_at", flat=True)
            .first()
        )
        if last_good and last_good > now - interval:
            continue
        last_try = (
            Backup.objects.filter(instance=instance, kind=Backup.Kind.INCREMENTAL)
            .order_by("-created_at")
            .values_list("created_at", flat=True)
            .first()
        )
        if last_try and last_try > now - timedelta(seconds=POINT_RETRY_SECONDS):
            continue
        due.append(instance.pk)
    return due


@shared_task(soft_time_limit=120, time_limit=180, **COMMON)
def point_backups() -> int:
    """Beat (every minute): a point-in-time backup of every running instance whose plan
    interval has passed, in FLEET_BACKUP_CONCURRENCY lanes."""
    return fan_out(point_backup_task, points_due())


def run_point_backup(instance_id: str) -> str:
    """One instance's point as an Operation (kind backup, params kind=incremental), run inline in
    its lane. "done", "busy" (another operation holds the instance: the next tick tries again)
    or "gone". Never raises for a failed backup (it is on the Backup row; the next tick after
    POINT_RETRY_SECONDS tries again)."""
    from accounts.services import SYSTEM
    from instances.models import Operation
    from instances.operations import OperationInProgress, operation_request, run_operation

    from .models import Backup

    instance = Instance.objects.select_related("host", "organization").filter(pk=instance_id)
    instance = instance.first()
    if instance is None or not instance.is_live or instance.status != Instance.Status.RUNNING:
        return "gone"
    try:
        op = operation_request(
            actor=SYSTEM,
            instance=instance,
            kind=Operation.Kind.BACKUP,
            params={"kind": Backup.Kind.INCREMENTAL},
            enqueue=False,
        )
    except OperationInProgress:
        return "busy"
    try:
        run_operation(op.pk)
    except Exception as exc:  # noqa: BLE001 - one broken instance never stops its lane
        log.warning("point backup of %s failed: %s", instance_id, type(exc).__name__)
    return "done"


@shared_task(soft_time_limit=900, time_limit=960, **COMMON)
def point_backup_task(instance_id: str) -> str:
    return run_point_backup(instance_id)


@shared_task(soft_time_limit=1800, time_limit=1900, **COMMON)
def backup_retention() -> int:
    """Beat (hourly): the one retention job, for every instance that has backups (the plan's
    points, dailies and weeklies; never the newest good backup)."""
    from .models import Backup
    from .services import backups

    ids = Backup.objects.values_list("instance_id", flat=True).distinct()
    expired = 0
    for instance in Instance.objects.filter(pk__in=list(ids)).select_related("organization"):
        try:
            expired += backups.apply_retention(instance=instance)
        except Exception as exc:  # noqa: BLE001
            log.warning("backup retention failed for %s: %s", instance.pk, type(exc).__name__)
    return expired


@shared_task(soft_time_limit=3000, time_limit=3100, **COMMON)
def prove_backups(count: int = 1) -> int:
    """Beat (nightly, 04:30): restore the latest backup of `count` random instances (those not
    proven for 7 days first) into scratch volumes and check them; a failure alerts staff."""
    from .services import proofs

    done = 0
    for _ in range(max(1, int(count))):
        if proofs.prove_backup() is not None:
            done += 1
    return done
