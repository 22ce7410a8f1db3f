"""The session mirror: a copy of each instance's OpenClaw session store in PostgreSQL.

Cost per instance is small and flat (docs/openclaw-runtime.md "Session sync"):
- **Unchanged** (the common case): one cheap question (`sessions.list` of one row: the total
  count and the newest updatedAt) and one COUNT on our side. Same newest updatedAt as our
  cursor and the same count: nothing is written at all.
- **Changed**: OpenClaw's own updated-since filter (`activeMinutes`, rounded out to whole
  minutes plus one, from `instance.sessions_cursor`) in pages of LIST_PAGE rows; per page one
  query for what we hold (`Session.openclaw_updated_ms`), then `sessions.usage` once for the
  rows that really changed, then one bulk INSERT .. ON CONFLICT DO UPDATE per page of
  UPSERT_BATCH rows, each page in its own transaction. Prices are looked up once per
  (provider, model, day) for the whole sync, never per session.
- **Deletions** leave no trace in an incremental list: a count that differs from our non-pruned
  rows (or the hourly full listing, or a prune or restore) lists everything and marks what is
  missing pruned in one UPDATE per 5,000 rows. A restored session comes back live.
- Costs: `cost_usd` is ours (billing.pricing.price_usage, per model the session used, at its last
  activity date); `openclaw_cost_usd` is OpenClaw's estimate from the prices the instance config
  carries. Both are kept; they match when the config was written from our table.
- A sync that fails (gateway down, slow, or answering garbage) records why as an InstanceEvent
  (`sessions_sync_failed`, once per distinct reason; `sessions_sync_recovered` after) and
  leaves the cursor alone; other instances' syncs are separate tasks and go on.
- After an operation leaves an instance ready (the "instance.ready" hook), a full sync is queued
  (`queue_sync_after_ready`); the beat syncs every running instance every few minutes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from instances.models import Instance

from ..models import Session
from . import access

log = logging.getLogger(__name__)

FULL_SYNC_SECONDS = 3600
UPSERT_BATCH = 1000
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


@dataclass
class SyncResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    pruned: int = 0
    skipped: bool = False
    full: bool = False
    # The one-question path: OpenClaw's newest update and count matched ours, nothing written.
    quick: bool = False
    pages: int = 0
    pending: list[str] = field(default_factory=list)


def _full_sync_key(instance) -> str:
    return f"sessions:fullsync:{instance.pk}"


def _failure_key(instance) -> str:
    return f"sessions:syncfail:{instance.pk}"


class _Prices:
    """billing.pricing.price_for memoised for one sync: one query per (provider, model, day),
    however many sessions share it."""

    def __init__(self, instance):
        from billing.pricing import own_price

        self.own = own_price(instance)  # the customer's own prices win over our table
        self.rows: dict = {}

    def row(self, provider: str, model: str, at):
        from billing.pricing import price_for

        key = (provider, model, at.date() if hasattr(at, "date") else at)
        if key not in self.rows:
            self.rows[key] = price_for(provider, model, at)
        return self.rows[key]


def _price(instance, usage, row, prices: _Prices | None = None):
    from billing.pricing import price_usage

    prices = prices or _Prices(instance)
    at = usage.last_activity or row.last_activity_at or timezone.now()
    parts = usage.by_model or [
        (usage.provider or row.provider, usage.model or row.model, usage.input, usage.output)
        + (usage.cache_read, usage.cache_write)
    ]
    total = 0
    for provider, model, inp, out, cr, cw in parts:
        if not any((inp, out, cr, cw)):
            continue  # nothing to price (a session without a model turn yet)
        # OpenClaw names our provider entry as the instance config does; our price table is keyed
        # by the real provider. Use OpenClaw's id when we have a price under it.
        table = prices.row(provider, model, at) if provider else None
        prov = provider if table is not None else instance.provider
        if prices.own is not None:
            price = prices.own
        else:
            price = table if table is not None else prices.row(prov, model, at)
        if price is None:
            total += price_usage(prov, model, inp, out, cr, cw, at=at, own=None)
            continue
        total += price_usage(prov, model, inp, out, cr, cw, at=at, own=price)
    return total


def _session_from(instance, row, usage, now, prices: _Prices | None = None) -> Session:
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
        cost_usd=_price(instance, usage, row, prices),
        first_seen_at=now,
        synced_at=now,
        pruned_at=None,
        openclaw_updated_ms=row.updated_ms,
    )


def _mark_missing_pruned(instance, present: set[str], now) -> int:
    live = (
        Session.objects.filter(instance=instance)
        .exclude(status=Session.Status.PRUNED)
        .values_list("session_key", "pk")
    )
    gone = [pk for key, pk in live if key not in present]
    for i in range(0, len(gone), 5000):
        Session.objects.filter(pk__in=gone[i : i + 5000]).update(
            status=Session.Status.PRUNED, pruned_at=now, synced_at=now, openclaw_updated_ms=0
        )
    return len(gone)


def _ours(instance) -> int:
    return Session.objects.filter(instance=instance).exclude(status=Session.Status.PRUNED).count()


def _wanted_status(row) -> str:
    return Session.Status.ARCHIVED if row.archived else Session.Status.LIVE


def _upsert(objs: list[Session]) -> None:
    """One transaction per page of rows: a failure later in the sync keeps what was written."""
    for i in range(0, len(objs), UPSERT_BATCH):
        with transaction.atomic():
            Session.objects.bulk_create(
                objs[i : i + UPSERT_BATCH],
                update_conflicts=True,
                unique_fields=["instance", "session_key"],
                update_fields=UPSERT_FIELDS,
            )


def sync_instance_sessions(*, instance: Instance, full: bool | None = None) -> SyncResult:
    """Mirror one instance's sessions. Idempotent; an instance that is not running is skipped.
    Raises OpenClawError (InstanceUnavailable for a gateway that does not answer) with the
    cursor untouched: `sync_or_record` is the caller that records why."""
    if instance.status not in access.SYNCABLE or instance.host_id is None:
        log.debug("session sync skipped for %s: %s", instance.pk, instance.status)
        return SyncResult(skipped=True)
    from django.conf import settings

    # One gateway call may take this long (a SIGSTOPped gateway accepts and never answers):
    # a stuck instance costs its own task this much, never the beat's other instances.
    timeout = int(getattr(settings, "FLEET_SESSION_SYNC_TIMEOUT", 60))
    client = access.client_for(instance, timeout=timeout)
    now = timezone.now()
    now_ms = int(now.timestamp() * 1000)
    cursor = int(instance.sessions_cursor or 0)
    if full is None:
        full = cursor == 0 or cache.get(_full_sync_key(instance)) is None
    if not full:
        total, newest_ms, pinned = client.newest()
        if not pinned and newest_ms <= cursor:
            ours = _ours(instance)
            if total == ours:
                log.debug("sessions of %s unchanged (%s)", instance.pk, total)
                return SyncResult(unchanged=total, quick=True)
    # The listing: every page first (newest update first), then one usage question for what
    # changed, then the writes, a transaction per page.
    rows = []
    known: dict[str, tuple[int, str]] = {}
    result = SyncResult(full=full)
    for page in client.session_pages(since_ms=0 if full else cursor, now_ms=now_ms):
        result.pages += 1
        keys = [r.key for r in page.rows]
        qs = Session.objects.filter(instance=instance, session_key__in=keys)
        for key, updated_ms, status in qs.values_list(
            "session_key", "openclaw_updated_ms", "status"
        ):
            known[key] = (updated_ms, status)
        rows.extend(page.rows)
    seen: dict[str, object] = {}
    for r in rows:  # a row repeated by offset paging over a moving list counts once
        seen.setdefault(r.key, r)
    rows = list(seen.values())
    changed = [
        r for r in rows if r.key not in known or known[r.key] != (r.updated_ms, _wanted_status(r))
    ]
    result.unchanged = len(rows) - len(changed)
    usage = client.usage([r.key for r in changed]) if changed else {}
    prices = _Prices(instance)
    objs = []
    for row in changed:
        u = usage.get(row.key)
        if u is None:
            result.pending.append(row.key)
            continue
        objs.append(_session_from(instance, row, u, now, prices))
        if row.key in known:
            result.updated += 1
        else:
            result.created += 1
    _upsert(objs)
    if full:
        result.pruned = _mark_missing_pruned(instance, set(seen), now)
    else:
        if changed:  # created since the first question: count again
            total = client.count_sessions()
        if total != _ours(instance):
            everything = client.list_sessions()
            result.pruned = _mark_missing_pruned(instance, {r.key for r in everything.rows}, now)
            result.full = True
    # The cursor: the newest updatedAt copied. A full listing sets it outright (a restore moves
    # OpenClaw's clock back); rows whose usage is not ready yet hold it back so we ask again.
    newest = max((r.updated_ms for r in rows), default=0)
    new_cursor = newest if full else max(cursor, newest)
    if result.pending:
        held = min(r.updated_ms for r in rows if r.key in set(result.pending)) - 1
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


def failure_reason(exc: BaseException) -> str:
    """Why a sync failed, in words for the event log: the client's message (a method and an
    error code, never a payload or a secret), or the exception's type."""
    from instances.openclaw.client import InstanceUnavailable, OpenClawError

    if isinstance(exc, InstanceUnavailable):
        return f"gateway unavailable: {exc}"[:300]
    if isinstance(exc, OpenClawError):
        return f"gateway error: {exc}"[:300]
    return f"sync error: {type(exc).__name__}"[:300]


def sync_or_record(*, instance: Instance, full: bool | None = None) -> SyncResult | None:
    """`sync_instance_sessions`, and on failure an InstanceEvent saying why (once per distinct
    reason, so a gateway down for hours writes one row, not one per beat). None on failure.
    The first success after a failure records `sessions_sync_recovered`."""
    from instances.models import InstanceEvent

    try:
        result = sync_instance_sessions(instance=instance, full=full)
    except Exception as exc:  # noqa: BLE001 - recorded; the next beat tries again
        reason = failure_reason(exc)
        log.warning("session sync failed for %s: %s", instance.pk, reason)
        if cache.get(_failure_key(instance)) != reason:
            InstanceEvent.objects.create(
                instance=instance,
                kind="sessions_sync_failed",
                message=reason,
                data={"error": type(exc).__name__, "kind": getattr(exc, "kind", "")},
            )
            cache.set(_failure_key(instance), reason, FULL_SYNC_SECONDS * 24)
        return None
    if cache.get(_failure_key(instance)) is not None:
        cache.delete(_failure_key(instance))
        InstanceEvent.objects.create(
            instance=instance, kind="sessions_sync_recovered", message="Session sync works again."
        )
    return result


def queue_sync_after_ready(*, instance: Instance, operation=None, **_) -> None:
    """The "instance.ready" hook: queue a full sync once the operation's transaction commits.
    Never raises into the operation (a failed queueing is logged; the beat syncs later)."""
    pk = str(instance.pk)

    def send():
        from ..tasks import sync_instance_sessions_task

        try:
            sync_instance_sessions_task.delay(pk, full=True)
        except Exception as exc:  # noqa: BLE001 - the beat syncs every few minutes anyway
            log.warning("could not queue the session sync of %s: %s", pk, type(exc).__name__)

    try:
        transaction.on_commit(send)
    except Exception as exc:  # noqa: BLE001 - never fail the operation that called the hook
        log.warning("could not schedule the session sync of %s: %s", pk, type(exc).__name__)
