"""Operations: long work recorded in PostgreSQL before it runs, safe to retry.

The life of an operation:
1. `operation_request()` inserts a queued Operation in the caller's transaction. The partial
   unique index `one_active_operation_per_instance` makes a second request for the same
   instance fail in the database; we turn that into `OperationInProgress` (HTTP 409 / a form
   error). The Celery task is enqueued with transaction.on_commit, so it never races the insert.
2. `run_operation(op_id)` (the Celery task calls it) claims the row with a conditional
   UPDATE (queued → running, or running → running for a redelivered task after a worker died),
   then calls the handler registered for the kind. Handlers are written as a sequence of
   converging steps (running one twice is harmless), so a redelivery finishes the job.
3. Each `step()` appends {name, state, started_at, finished_at, detail} to Operation.steps so
   the dashboard, the API and admin show progress. The first exception fails the operation
   with a message a customer can read (`OperationError.public`) and the detail kept for staff.

Other apps register handlers for their kinds (sessions_mgmt: backup, restore, prune) with
`register_handler()` from their AppConfig.ready(), and hear about every finished operation
through the "operation.finished" hook (fleet.hooks).

A worker that dies mid-operation (kill -9, OOM, a lost host) leaves its operation "running".
The broker would redeliver the task only after its visibility timeout (an hour in production),
and meanwhile nothing else can be done to the instance. `resume_stranded()`, run by the
reconcile beat every FLEET_RECONCILE_SECONDS, finds such operations and enqueues them again:
on PostgreSQL an operation is stranded when nobody holds its advisory lock (the dead worker's
connection closed, so the lock is free); elsewhere (SQLite in development) when its heartbeat,
written every HEARTBEAT_SECONDS by the running worker, is older than STRANDED_AFTER_SECONDS.
The resumed run converges like any redelivery; a late redelivery of the original task finds
the operation finished and does nothing.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from datetime import timedelta

from django.core.cache import cache
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.db.models import F
from django.utils import timezone

from fleet import hooks

from .models import Instance, Operation

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10
STRANDED_AFTER_SECONDS = 45
Handler = Callable[[Operation], None]
_HANDLERS: dict[str, Handler] = {}


class OperationInProgress(Exception):
    """Another operation is queued or running on this instance."""

    def __init__(self, active: Operation | None = None):
        self.active = active
        what = f" ({active.get_kind_display().lower()})" if active else ""
        super().__init__(
            f"An operation is in progress on this instance{what}. Wait for it to finish."
        )


class OperationError(Exception):
    """A failure worth showing to the customer. `public` is safe to display; str() is detail."""

    def __init__(self, public: str, detail: str = ""):
        self.public = public
        super().__init__(detail or public)


def register_handler(kind: str, handler: Handler) -> None:
    _HANDLERS[kind] = handler


def handler_for(kind: str) -> Handler:
    try:
        return _HANDLERS[kind]
    except KeyError as exc:
        raise OperationError("This action is not available.", f"no handler for {kind}") from exc


def active_operation(instance: Instance) -> Operation | None:
    return instance.operations.filter(state__in=Operation.ACTIVE_STATES).first()


def operation_request(
    *, actor, instance: Instance, kind: str, params: dict | None = None, enqueue: bool = True
) -> Operation:
    """Record a queued operation and enqueue it after commit. Raises OperationInProgress."""
    try:
        with transaction.atomic():
            op = Operation.objects.create(
                instance=instance,
                organization_id=instance.organization_id,
                kind=kind,
                params=params or {},
                requested_by=getattr(actor, "user", None),
                requested_via=getattr(actor, "via", "system"),
            )
    except IntegrityError as exc:
        raise OperationInProgress(active_operation(instance)) from exc
    if enqueue:
        transaction.on_commit(lambda: enqueue_operation(op.pk))
    return op


def enqueue_operation(op_id) -> None:
    from .tasks import run_operation_task

    result = run_operation_task.apply_async(args=[str(op_id)])
    Operation.objects.filter(pk=op_id, task_id="").update(task_id=result.id or "")


def claim(op_id) -> Operation | None:
    """queued → running, or take over a running op whose worker died (redelivery)."""
    now = timezone.now()
    updated = Operation.objects.filter(pk=op_id, state__in=Operation.ACTIVE_STATES).update(
        state=Operation.State.RUNNING,
        started_at=now,
        heartbeat_at=now,
        attempts=F("attempts") + 1,
    )
    if updated != 1:
        return None  # finished already (a duplicate delivery): nothing to do
    return Operation.objects.select_related("instance", "instance__host").get(pk=op_id)


def _save_steps(op: Operation) -> None:
    Operation.objects.filter(pk=op.pk).update(steps=op.steps)


@contextmanager
def step(op: Operation, name: str, detail: str = ""):
    """Record one progress step around a block of converging work."""
    entry = {
        "name": name,
        "state": "running",
        "started_at": timezone.now().isoformat(),
        "finished_at": None,
        "detail": detail,
    }
    # A redelivered op re-runs its steps; show the new attempt instead of a duplicate row.
    op.steps = [s for s in op.steps if s.get("name") != name] + [entry]
    _save_steps(op)
    try:
        yield entry
    except Exception:
        entry["state"] = "failed"
        entry["finished_at"] = timezone.now().isoformat()
        _save_steps(op)
        raise
    entry["state"] = "done"
    entry["finished_at"] = timezone.now().isoformat()
    _save_steps(op)


def finish(op: Operation, *, error: Exception | None = None) -> Operation:
    fields = {"finished_at": timezone.now()}
    if error is None:
        fields["state"] = Operation.State.SUCCEEDED
    else:
        fields["state"] = Operation.State.FAILED
        fields["error"] = (
            getattr(error, "public", None) or "Something went wrong; staff have the detail."
        )
        fields["error_detail"] = f"{type(error).__name__}: {error}"[:4000]
    Operation.objects.filter(pk=op.pk, state=Operation.State.RUNNING).update(**fields)
    op.refresh_from_db()
    try:
        hooks.run("operation.finished", operation=op)
    except Exception as exc:  # noqa: BLE001 - a subscriber never changes the outcome
        log.warning("operation.finished hook for %s failed: %s", op.pk, type(exc).__name__)
    return op


@contextmanager
def _run_lock(op_id):
    """A PostgreSQL session advisory lock per operation, held while a worker runs it.

    Redis redelivers an unacked task after the visibility timeout even when its worker is still
    alive (a long restore, a short timeout in tests). The lock makes such a duplicate a no-op
    while the first run lives; when a worker is killed, its connection closes and the lock is
    released, so the redelivered task takes over. Yields False when another run holds it.
    """
    if connection.vendor != "postgresql":
        yield True
        return
    key = lock_key(op_id)
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s)", [key])
        got = bool(cur.fetchone()[0])
    try:
        yield got
    finally:
        if got:
            try:
                with connection.cursor() as cur:
                    cur.execute("SELECT pg_advisory_unlock(%s)", [key])
            except Exception:  # noqa: BLE001 - a closed connection released it already
                log.debug("advisory unlock failed", exc_info=True)


def lock_key(op_id) -> int:
    return uuid.UUID(str(op_id)).int >> 65  # fits a signed bigint


def _lock_is_held(op_id) -> bool:
    """Whether any session of this database holds the operation's advisory lock (advisory locks
    are per database; pg_locks splits a bigint key into classid, the high 32 bits, and objid,
    the low 32 bits)."""
    key = lock_key(op_id)
    with connection.cursor() as cur:
        cur.execute(
            "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND classid = %s AND objid = %s AND objsubid = 1",
            [key >> 32, key & 0xFFFFFFFF],
        )
        return cur.fetchone() is not None


@contextmanager
def _heartbeat(op_id):
    """Write Operation.heartbeat_at every HEARTBEAT_SECONDS while the body runs."""
    done = threading.Event()

    def beat():
        try:
            while not done.wait(HEARTBEAT_SECONDS):
                Operation.objects.filter(pk=op_id, state=Operation.State.RUNNING).update(
                    heartbeat_at=timezone.now()
                )
        except Exception:  # noqa: BLE001 - a missed heartbeat only delays nothing
            log.debug("heartbeat of %s failed", op_id, exc_info=True)
        finally:
            close_old_connections()
            connection.close()

    thread = threading.Thread(target=beat, name=f"heartbeat-{op_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()


def stranded_operations(*, now=None) -> list[Operation]:
    """Running operations whose worker is gone (see the module docstring)."""
    now = now or timezone.now()
    settle = now - timedelta(seconds=HEARTBEAT_SECONDS)
    running = Operation.objects.filter(state=Operation.State.RUNNING, started_at__lt=settle)
    if connection.vendor == "postgresql":
        return [op for op in running if not _lock_is_held(op.pk)]
    stale = now - timedelta(seconds=STRANDED_AFTER_SECONDS)
    return list(running.filter(heartbeat_at__lt=stale))


def resume_stranded(*, now=None) -> list[Operation]:
    """Enqueue every stranded operation again (at most once per two minutes each)."""
    resumed = []
    for op in stranded_operations(now=now):
        if not cache.add(f"instances:resume:{op.pk}", "1", timeout=120):
            continue
        log.warning("operation %s (%s) lost its worker; resuming it", op.pk, op.kind)
        enqueue_operation(op.pk)
        resumed.append(op)
    return resumed


def run_operation(op_id) -> Operation | None:
    """Claim and run one operation to the end. Safe to call twice for the same id, also at the
    same time (the second call returns None while the first runs)."""
    with _run_lock(op_id) as got:
        if not got:
            log.info("operation %s is being run by another worker; skipping", op_id)
            return None
        op = claim(op_id)
        if op is None:
            return None
        try:
            with _heartbeat(op.pk):
                handler_for(op.kind)(op)
        except Exception as exc:  # noqa: BLE001 - every failure is recorded on the operation
            log.warning("operation %s (%s) failed: %s", op.pk, op.kind, type(exc).__name__)
            log.debug("operation failure detail", exc_info=True)
            return finish(op, error=exc)
        return finish(op)
