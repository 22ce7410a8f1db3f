"""The session mirror: a copy of each instance's OpenClaw session store in PostgreSQL.

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
    pending: list[str] = field(default_factory=list)


def _full_sync_key(instance) -> str:
    return f"sessions:fullsync:{instance.pk}"


def _price(instance, usage, row) -> tuple:
    from billing.pricing import own_price, price_for, price_usage

    at = usage.last_activity or row.last_activity_at or timezone.now()
    own = own_price(instance)  # the customer's own prices win over our table
    parts = usage.by_model or [
        (usage.provider or row.provider, usage.model or row.model, usage.input, usage.output)
        + (usage.cache_read, usage.cache_write)
    ]
    total = 0
    for provider, model, inp, out, cr, cw in parts:
        # OpenClaw names our provider entry as the instance config does; our price table is keyed
        # by the real provider. Use OpenClaw's id when we have a price under it.
        prov = provider if provider and price_for(provider, model, at) else instance.provider
        total += price_usage(prov, model, inp, out, cr, cw, at=at, own=own)
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
    if instance.status not in access.SYNCABLE or instance.host_id is None:
        log.debug("session sync skipped for %s: %s", instance.pk, instance.status)
        return SyncResult(skipped=True)
    client = access.client_for(instance)
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
