"""The warm pool: pre-booted gateways per host, claimed by a deploy in seconds (docs/warm-pool.md).

A slot (PoolSlot) is a container and a fresh volume named for a future instance (its id), on a
random pool token, with no provider, no key and no tenant data. Its life:

    booting ──ready──> ready ──reserve──> claiming ──claim──> claimed
       └────────────────┴──────────────────┴──> retired (container and volume removed)

- `refill_host` (the beat task `refill_warm_pools`) keeps `pool_size(host)` slots per host:
  it boots missing ones without waiting, marks booted ones ready, retires dead ones.
- `reserve` runs inside placement (instances/placement.py) when a deploy's Instance is first
  saved: a ready slot of the same version and size is taken under SELECT ... FOR UPDATE SKIP
  LOCKED and moved to `claiming`, and the Instance gets its id, host and port. Two deploys never
  take one slot; a rolled-back deploy leaves it ready.
- `deploy_from_pool` is the deploy handler's claim branch: it writes the tenant's config
  through config.patch (hot reload), verifies the gateway answers the tenant's token, refuses
  the pool token and runs exactly the config we wrote, then marks the slot claimed. It resumes
  from the recorded state (a worker killed mid-claim: the retry finds `claiming` and finishes).
  Any failure retires the slot and the deploy continues cold, and says why in its steps.

Every state change is a conditional UPDATE on the old state (`move`), never a save().
"""

from __future__ import annotations

import json
import logging
import secrets
import time
import urllib.error
import urllib.request
from datetime import timedelta
from decimal import Decimal

from celery import shared_task
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from . import rules, specs
from .models import Host, Instance, Operation, PoolSlot
from .operations import step

log = logging.getLogger(__name__)
St = PoolSlot.State
# A pool gateway that is not ready this long after its container started is retired.
BOOT_TIMEOUT = 600
# Claimed and retired rows are kept this long for the overview's counts, then deleted.
KEEP_HISTORY = timedelta(days=7)
# How long the claim waits for the token change to reach the gateway's HTTP auth.
TOKEN_SWITCH_TIMEOUT = 15.0
PATCH_TIMEOUT = 90


class ClaimFailed(Exception):
    """A claim did not land; str() is a short reason for the operation's steps (no secrets)."""


# --- sizing -----------------------------------------------------------------------------------


def enabled() -> bool:
    return int(settings.FLEET_WARM_POOL_SIZE) > 0


def pool_size(host: Host, *, now=None) -> int:
    """N for a host: FLEET_WARM_POOL_SIZE, raised to the deploys on the host in the last hour
    (a busy hour keeps a deeper pool), capped at FLEET_WARM_POOL_MAX. 0 disables the pool."""
    base = int(settings.FLEET_WARM_POOL_SIZE)
    if base <= 0:
        return 0
    since = (now or timezone.now()) - timedelta(hours=1)
    recent = Operation.objects.filter(
        kind=Operation.Kind.DEPLOY, instance__host=host, created_at__gte=since
    ).count()
    return max(base, min(recent, int(settings.FLEET_WARM_POOL_MAX)))


def slot_shape() -> dict:
    """The version and size pool gateways are booted with: a deploy of another shape is cold."""
    return {
        "openclaw_version": settings.FLEET_DEFAULT_VERSION,
        "memory_mb": rules.DEFAULT_MEMORY_MB,
        "cpus": Decimal(rules.DEFAULT_CPUS),
    }


# --- state changes ----------------------------------------------------------------------------


def move(slot: PoolSlot, old, new: str, **fields) -> bool:
    """The one writer of PoolSlot.state: old → new if the row is still in `old`."""
    olds = [old] if isinstance(old, str) else list(old)
    updated = PoolSlot.objects.filter(pk=slot.pk, state__in=olds).update(state=new, **fields)
    if updated:
        slot.state = new
        for key, value in fields.items():
            setattr(slot, key, value)
    return bool(updated)


def _rt(host: Host):
    from .runtime import runtime_for

    return runtime_for(host)


def _remove_engine_objects(slot: PoolSlot) -> None:
    rt = _rt(slot.host)
    rt.remove(slot.container_name, force=True)
    rt.remove_volume(slot.volume_name)


def retire(slot: PoolSlot, reason: str, *, from_states=None) -> bool:
    """Retire a slot (record first, then remove its container and volume). False when the slot
    was no longer in `from_states` (claimed meanwhile: nothing is removed)."""
    olds = from_states or (St.BOOTING, St.READY, St.CLAIMING)
    if not move(slot, olds, St.RETIRED, reason=reason[:300], retired_at=timezone.now()):
        return False
    remove_retired(slot)
    return True


def remove_retired(slot: PoolSlot) -> None:
    try:
        _remove_engine_objects(slot)
    except Exception as exc:  # noqa: BLE001 - the next refill pass removes it again
        log.warning("removing pool gateway %s failed: %s", slot.pk, type(exc).__name__)


# --- booting and refilling --------------------------------------------------------------------


def _new_slots(host: Host, wanted: int) -> list[PoolSlot]:
    """Rows for the missing slots, with ports and memory reserved under the host's row lock
    (the same lock placement takes, so a cold deploy and a refill never race for a port)."""
    from . import placement

    created: list[PoolSlot] = []
    with transaction.atomic():
        host = Host.objects.select_for_update().get(pk=host.pk)
        have = PoolSlot.objects.filter(host=host, state__in=PoolSlot.POOLED).count()
        shape = slot_shape()
        ports = placement.free_ports(host)
        for _ in range(max(0, wanted - have)):
            if not placement.has_room(host, shape["memory_mb"]):
                break
            port = next(ports, None)
            if port is None:
                break
            slot = PoolSlot(
                host=host, host_port=port, pool_token=secrets.token_urlsafe(32), **shape
            )
            try:
                with transaction.atomic():
                    slot.save(force_insert=True)
            except IntegrityError:
                continue
            created.append(slot)
    return created


def boot(slot: PoolSlot) -> None:
    """Volume, config, container, start: the cold deploy's steps with the pool spec. Does not
    wait for readiness (the next pass probes it)."""
    rt = _rt(slot.host)
    image = specs.image_for(slot.openclaw_version)
    rt.ensure_image(image)
    rt.ensure_network(settings.FLEET_NETWORK)
    fresh = rt.ensure_volume(slot.volume_name, specs.labels_for(slot))
    rt.write_config(
        slot.volume_name,
        image,
        specs.pool_config_for(slot),
        [],
        validate=not fresh,
        secrets=[slot.pool_token],
    )
    info = rt.inspect(slot.container_name)
    if info is None:
        rt.ensure_container(specs.spec_for(slot, image))
    rt.start(slot.container_name)


def _check(slot: PoolSlot, rt, now) -> None:
    """One booting or ready slot: ready when it answers, retired when dead or stuck."""
    info = rt.inspect(slot.container_name)
    if info is None or not info.running:
        what = "gone" if info is None else f"exited ({info.exit_code})"
        retire(slot, f"pool gateway {what}", from_states=(slot.state,))
        return
    if slot.state == St.BOOTING:
        if rt.probe(slot.host_port).get("readyz"):
            move(slot, St.BOOTING, St.READY, ready_at=now)
        elif (now - slot.created_at).total_seconds() > BOOT_TIMEOUT:
            retire(slot, "pool gateway not ready in time", from_states=(St.BOOTING,))


def refill_host(host: Host, *, now=None) -> dict:
    """One pass over a host's pool: check what is there, retire the dead, boot the missing.
    Returns counts (for logs and the bench)."""
    now = now or timezone.now()
    rt = _rt(host)
    for slot in PoolSlot.objects.filter(host=host, state__in=PoolSlot.POOLED).select_related(
        "host"
    ):
        try:
            _check(slot, rt, now)
        except Exception as exc:  # noqa: BLE001 - one slot never stops the pass
            log.warning("pool slot %s check failed: %s", slot.pk, type(exc).__name__)
    wanted = pool_size(host, now=now) if host.is_active else 0
    shape = slot_shape()
    # Slots of an old shape (the default version or size changed) or beyond N: retire ready
    # ones first, never a booting one that is about to be useful.
    live = list(
        PoolSlot.objects.filter(host=host, state__in=PoolSlot.POOLED)
        .select_related("host")
        .order_by("-state", "created_at")  # ready before booting
    )
    keep = []
    for slot in live:
        fits = (slot.openclaw_version, slot.memory_mb, Decimal(slot.cpus)) == tuple(shape.values())
        if fits and len(keep) < wanted:
            keep.append(slot)
        else:
            retire(slot, "pool resized", from_states=(St.READY, St.BOOTING))
    booted = 0
    for slot in _new_slots(host, wanted):
        try:
            boot(slot)
            booted += 1
        except Exception as exc:  # noqa: BLE001 - recorded on the slot; the next pass retries
            retire(slot, f"boot failed: {type(exc).__name__}", from_states=(St.BOOTING,))
    # Retired rows whose removal failed are removed again; old history is dropped.
    # (Not a claim that failed: its instance's cold deploy reuses the names.)
    recent = PoolSlot.objects.filter(
        host=host, state=St.RETIRED, retired_at__gte=now - timedelta(minutes=10)
    ).exclude(pk__in=Instance.objects.filter(host=host).values("pk"))
    for slot in recent.select_related("host"):
        if rt.inspect(slot.container_name) is not None or rt.volume_exists(slot.volume_name):
            remove_retired(slot)
    PoolSlot.objects.filter(
        Q(state=St.CLAIMED, claimed_at__lt=now - KEEP_HISTORY)
        | Q(state=St.RETIRED, retired_at__lt=now - KEEP_HISTORY)
    ).delete()
    return {"wanted": wanted, "kept": len(keep), "booted": booted}


@shared_task(
    name="instances.tasks.refill_warm_pools",
    acks_late=True,
    ignore_result=True,
    soft_time_limit=240,
    time_limit=300,
)
def refill_warm_pools():
    """Beat: one refill pass per active host (a pass boots without waiting: seconds)."""
    from django.core.cache import cache

    if not enabled() and not PoolSlot.objects.filter(state__in=PoolSlot.POOLED).exists():
        return 0
    if not cache.add("instances:pool:refill", "1", timeout=240):
        return 0  # the previous pass still runs
    try:
        for host in Host.objects.all():
            try:
                refill_host(host)
            except Exception as exc:  # noqa: BLE001 - one host never stops the others
                log.warning("pool refill of host %s failed: %s", host.pk, type(exc).__name__)
    finally:
        cache.delete("instances:pool:refill")
    return 1


# --- reserve (inside placement) ---------------------------------------------------------------


def reserve(instance: Instance) -> PoolSlot | None:
    """Take a ready slot of the instance's version and size for it (in the caller's
    transaction): the slot goes to `claiming` and the instance takes its id, host and port.
    None when the pool has no such slot (or the host has no instance count left)."""
    from . import placement

    if not enabled():
        return None
    candidates = (
        PoolSlot.objects.select_for_update(skip_locked=True)
        .select_related("host")
        .filter(
            state=St.READY,
            host__is_active=True,
            openclaw_version=instance.openclaw_version,
            memory_mb=instance.memory_mb,
            cpus=instance.cpus,
        )
        .order_by("ready_at", "created_at")
    )
    for slot in candidates[:5]:
        _memory, count = placement.host_usage(slot.host)
        if count + 1 > slot.host.max_instances:
            continue
        if not move(slot, St.READY, St.CLAIMING):
            continue
        instance.id = slot.id
        instance.host, instance.host_port = slot.host, slot.host_port
        return slot
    return None


# --- the claim (the deploy handler's branch) --------------------------------------------------


def _token_accepted(port: int, token: str, timeout: float = 5.0) -> bool | None:
    """Whether the gateway on 127.0.0.1:port accepts `token` (GET /v1/models): True on 200,
    False on 401/403, None when it does not answer."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{int(port)}/v1/models", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - loopback
            return resp.status == 200
    except urllib.error.HTTPError as exc:
        return False if exc.code in (401, 403) else None
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _client(target, timeout: int = PATCH_TIMEOUT):
    """The OpenClaw client for an instance or a slot (same names; a slot's token is the pool
    token): whichever transport OpenClawClient uses, the claim goes through it."""
    from .openclaw.client import OpenClawClient

    return OpenClawClient.for_instance(target, timeout=timeout)


def _wait_tokens(instance: Instance, slot: PoolSlot) -> None:
    deadline = time.monotonic() + TOKEN_SWITCH_TIMEOUT
    while True:
        tenant = _token_accepted(instance.host_port, instance.gateway_token)
        pool = _token_accepted(instance.host_port, slot.pool_token)
        if tenant is True and pool is False:
            return
        if time.monotonic() >= deadline:
            raise ClaimFailed(
                f"token check: tenant token {_word(tenant)}, pool token {_word(pool)}"
            )
        time.sleep(0.2)


def _word(answer: bool | None) -> str:
    return {True: "accepted", False: "refused", None: "no answer"}[answer]


def _check_config(instance: Instance, snapshot: dict, written_hash: str | None) -> None:
    """The gateway runs the file we wrote: its hash is the one config.patch answered, the
    applied revision is the file's, and every owned path holds our value (secrets redacted by
    OpenClaw are compared by presence)."""
    from .openclaw import config as oc

    if written_hash and snapshot.get("hash") != written_hash:
        raise ClaimFailed("config hash differs from the one written")
    revision, applied = snapshot.get("configRevisionHash"), snapshot.get("appliedConfigHash")
    if revision and applied and revision != applied:
        raise ClaimFailed("the gateway has not applied the written config")
    desired = specs.config_for(instance)
    current = snapshot.get("parsed") or snapshot.get("sourceConfig") or {}
    secret = set(oc.secret_paths(instance.provider))
    missing = object()
    for path in specs.owned_paths_for(instance):
        want = oc.get_path(desired, path, missing)
        have = oc.get_path(current, path, missing)
        if path in secret:
            if (want is missing) != (have is missing):
                raise ClaimFailed(f"config path {path} differs")
            continue
        if want is missing or path.startswith("models.providers."):
            continue  # the provider entry holds the key: checked below without it
        if want != have:
            raise ClaimFailed(f"config path {path} differs")
    provider = f"models.providers.{instance.provider}"
    want_p, have_p = oc.get_path(desired, provider) or {}, oc.get_path(current, provider) or {}
    for key in ("baseUrl", "api"):
        if want_p.get(key) != have_p.get(key):
            raise ClaimFailed(f"config path {provider}.{key} differs")
    wanted_models = [m.get("id") for m in want_p.get("models") or []]
    if wanted_models != [m.get("id") for m in have_p.get("models") or []]:
        raise ClaimFailed(f"config path {provider}.models differs")


def _patch(instance: Instance, slot: PoolSlot) -> str | None:
    """config.get with the pool token, then the claim patch; returns the hash OpenClaw wrote."""
    client = _client(slot)
    current = client.call("config.get", {})
    patch = specs.claim_patch_for(instance, current.get("parsed") or {})
    params = {"raw": json.dumps(patch), "baseHash": current.get("hash") or "", "note": "claim"}
    answer = client.call("config.patch", params, retries=0)
    stats = ((answer.get("sentinel") or {}).get("payload") or {}).get("stats") or {}
    if stats.get("requiresRestart"):
        raise ClaimFailed("the claim patch needs a gateway restart")
    return answer.get("hash")


def claim(op: Operation, instance: Instance, slot: PoolSlot) -> None:
    """Claim `slot` for `instance` (already in `claiming`, recorded by reserve()). Converges:
    a retry after a killed worker finds out from the gateway which token it holds."""
    from .openclaw.client import OpenClawError

    written = None
    with step(op, "config", "tenant config through config.patch") as entry:
        holds = _token_accepted(instance.host_port, instance.gateway_token)
        if holds is not True:
            if _token_accepted(instance.host_port, slot.pool_token) is not True:
                raise ClaimFailed("the pool gateway does not answer its pool token")
            try:
                written = _patch(instance, slot)
            except OpenClawError as exc:
                raise ClaimFailed(f"config.patch failed ({exc})") from exc
        else:
            entry["detail"] = "tenant config already written (resumed)"
    with step(op, "verify", "tenant token, pool token refused, config hash"):
        _wait_tokens(instance, slot)
        try:
            snapshot = _client(instance).call("config.get", {})
        except OpenClawError as exc:
            raise ClaimFailed(f"config.get failed ({exc})") from exc
        _check_config(instance, snapshot, written)


def drop_backup_copies(instance: Instance) -> None:
    """OpenClaw keeps the previous file (with the pool token) as openclaw.json.bak: remove it.
    Best effort: the pool token is refused by then anyway."""
    try:
        if _client(instance, timeout=30).drop_config_backups() != 0:
            log.warning("could not remove the pool config copies of %s", instance.pk)
    except Exception as exc:  # noqa: BLE001 - best effort
        log.warning("could not remove the pool config copies: %s", type(exc).__name__)


def _fallback(op: Operation, reason: str) -> bool:
    with step(op, "pool", f"cold deploy ({reason})") as entry:
        entry["pool"] = "empty" if reason == "pool empty" else "failed"
    return False


def deploy_from_pool(op: Operation, instance: Instance, mark_running) -> bool:
    """The deploy's claim branch. True: the instance runs on its claimed pool gateway
    (`mark_running(op, instance)` called). False: deploy cold (the step says why); the pool
    slot, if any, is retired and its container and volume are gone."""
    slot = PoolSlot.objects.select_related("host").filter(pk=instance.pk).first()
    if slot is None:
        if not enabled():
            return False
        return _fallback(op, "pool empty")
    if slot.state == St.CLAIMED:  # a redelivery after the claim landed
        mark_running(op, instance)
        return True
    if slot.state != St.CLAIMING:
        return _fallback(op, f"claim failed: {slot.reason or slot.state}")
    with step(op, "pool", f"claimed warm gateway {slot.pk.hex[:12]}") as entry:
        entry["pool"] = "claimed"
    try:
        claim(op, instance, slot)
    except Exception as exc:  # noqa: BLE001 - every failure falls back to a cold deploy
        reason = str(exc) if isinstance(exc, ClaimFailed) else type(exc).__name__
        reason = _scrub(instance, slot, reason)[:200]
        log.warning("claim of pool slot %s failed: %s", slot.pk, reason)
        retire(slot, f"claim failed: {reason}", from_states=(St.CLAIMING,))
        return _fallback(op, f"claim failed: {reason}")
    move(slot, St.CLAIMING, St.CLAIMED, claimed_at=timezone.now())
    mark_running(op, instance)
    drop_backup_copies(instance)
    return True


def _scrub(instance: Instance, slot: PoolSlot, text: str) -> str:
    for secret in [*specs.secrets_of(instance), slot.pool_token]:
        if secret:
            text = text.replace(secret, "***")
    return text


# --- staff overview ---------------------------------------------------------------------------


def overview(*, now=None, hours: int = 24) -> list[dict]:
    """Per host: slots ready and booting, N, claims and fallbacks in the last `hours`."""
    now = now or timezone.now()
    since = now - timedelta(hours=hours)
    rows = {
        r["host"]: r
        for r in PoolSlot.objects.order_by()
        .values("host")
        .annotate(
            ready=Count("pk", filter=Q(state=St.READY)),
            booting=Count("pk", filter=Q(state=St.BOOTING)),
            claims=Count("pk", filter=Q(state=St.CLAIMED, claimed_at__gte=since)),
            failed_claims=Count(
                "pk",
                filter=Q(state=St.RETIRED, retired_at__gte=since, reason__startswith="claim"),
            ),
        )
    }
    # Read in Python: JSON containment is not a lookup SQLite has (`make run`), and a day's
    # deploys are few.
    empty: dict[int, int] = {}
    deploys = Operation.objects.filter(kind=Operation.Kind.DEPLOY, created_at__gte=since)
    for host_id, steps in deploys.order_by().values_list("instance__host", "steps").iterator():
        if any(s.get("name") == "pool" and s.get("pool") == "empty" for s in steps or ()):
            empty[host_id] = empty.get(host_id, 0) + 1
    result = []
    for host in Host.objects.order_by("name"):
        r = rows.get(host.pk, {})
        result.append(
            {
                "host": host,
                "size": pool_size(host, now=now),
                "ready": r.get("ready", 0),
                "booting": r.get("booting", 0),
                "claims": r.get("claims", 0),
                "fallbacks_failed": r.get("failed_claims", 0),
                "fallbacks_empty": empty.get(host.pk, 0),
            }
        )
    return result
