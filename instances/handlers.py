"""Operation handlers for the instance lifecycle (registered in InstancesConfig.ready()).

Every handler is a sequence of converging steps (operations.step): running a step twice is
harmless, so a task redelivered after a worker was killed finishes the job without doubling
anything (one container, one volume, whatever step it died in).

Status changes go through instances.state.transition (the one writer of Instance.status);
other fields are written with `Instance.objects.filter(pk=...).update(...)`, never `save()`, so a
rename or a retention change made by a user while an operation runs is not overwritten.

Other apps act on instance events through fleet.hooks, never imported from here:
"backup.create" (the backup before a risky change) and "instance.ready" (mirror the sessions).
"""

from __future__ import annotations

import contextlib
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from fleet import hooks

from . import placement, pool, specs, state
from .models import Instance, InstanceEvent, Operation
from .operations import OperationError, register_handler, step

log = logging.getLogger(__name__)
S = Instance.Status
STOP_TIMEOUT = 30


# --- small helpers ----------------------------------------------------------------------------


def _set(instance: Instance, **fields) -> None:
    """Write fields other than the status (those go through state.transition)."""
    assert "status" not in fields, "status changes go through instances.state.transition"
    fields["updated_at"] = timezone.now()
    Instance.objects.filter(pk=instance.pk).update(**fields)
    for key, value in fields.items():
        setattr(instance, key, value)


def event(instance: Instance, kind: str, message: str, **data) -> InstanceEvent:
    return InstanceEvent.objects.create(
        instance=instance, kind=kind, message=message[:300], data=data
    )


def _rt(instance: Instance):
    from .runtime import runtime_for

    if instance.host is None:
        raise OperationError("This instance has not been placed on a host yet.")
    return runtime_for(instance.host)


def _scrub(instance: Instance, text: str) -> str:
    for secret in specs.secrets_of(instance):
        text = text.replace(secret, "***")
    return text


def public_error(instance: Instance, exc: Exception) -> OperationError:
    """Turn a runtime error into words a customer can read (the detail stays for staff)."""
    from . import runtime

    if isinstance(exc, OperationError):
        return exc
    detail = _scrub(instance, f"{type(exc).__name__}: {exc}")
    if isinstance(exc, runtime.EngineUnavailable):
        public = "The host running this instance is unreachable. Try again in a few minutes."
    elif isinstance(exc, runtime.ImageMissing):
        public = f"OpenClaw {instance.openclaw_version} is not available on this host."
    elif isinstance(exc, runtime.ConfigInvalid):
        public = "OpenClaw rejected the instance configuration."
    elif isinstance(exc, runtime.NotReady):
        # The runtime's text names the host port (127.0.0.1:PORT/readyz): staff detail only.
        info = getattr(exc, "info", None)
        if info is not None and not info.running:
            public = f"OpenClaw did not become ready: it stopped (exit {info.exit_code})."
        elif "not ready after" in str(exc):
            public = "OpenClaw did not become ready in time. Try again; staff have the detail."
        else:
            public = "OpenClaw did not become ready. Try again; staff have the detail."
    else:
        public = "The operation failed; staff have the detail."
    return OperationError(public, detail)


def _write_config(rt, instance: Instance, image: str, *, fresh_volume: bool = False) -> bool:
    """Converge openclaw.json (owned paths only). On a volume created by this very step the
    file is our own build_config() output, which the tests validate with every OpenClaw
    version we ship, so the `openclaw config validate` round trip (a Node start-up, several
    seconds) is skipped there; every rewrite of an existing config is validated."""
    return rt.write_config(
        instance.volume_name,
        image,
        specs.config_for(instance),
        specs.owned_paths_for(instance),
        validate=not fresh_volume,
        secrets=specs.secrets_of(instance),
    )


def _edge(instance: Instance) -> None:
    """The proxy's route follows the status (instances/edge.py); never fails the operation:
    the reconcile loop repairs a route the proxy did not take."""
    from . import edge

    edge.sync_quietly(instance)


def _ensure_container(rt, instance: Instance, image: str, *, recreate: bool = False):
    """The instance's container with exactly this spec (created, maybe not started). An
    existing container with another spec (image, memory, port...) is stopped and replaced."""
    spec = specs.spec_for(instance, image)
    info = rt.inspect(spec.name)
    if info is not None and (recreate or not info.matches(spec)):
        rt.stop(spec.name, timeout=STOP_TIMEOUT)
        rt.remove(spec.name)
        info = None
    if info is None:
        info = rt.ensure_container(spec)
    return info


def _wait_ready(rt, instance: Instance, timeout: float | None = None) -> float:
    return rt.wait_ready(
        instance.host_port,
        timeout or settings.FLEET_READY_TIMEOUT,
        name=instance.container_name,
    )


def _mark_running(op: Operation, instance: Instance, message: str = "") -> None:
    """Ready: running, healthy, crash counting starts afresh (a person or an upgrade acted)."""
    state.transition(
        instance,
        S.RUNNING,
        reason=f"{op.kind} ready",
        operation=op,
        message=message,
        crash_count=0,
        crash_window_started_at=None,
    )
    _edge(instance)


def _to(op: Operation, instance: Instance, status: str, message: str | None = None, **fields):
    state.transition(instance, status, reason=op.kind, operation=op, message=message, **fields)
    _edge(instance)


def _is_running(rt, instance: Instance) -> bool:
    info = rt.inspect(instance.container_name)
    return bool(info and info.running)


def _backup(op: Operation, instance: Instance, rt, kind: str, *, required: bool) -> None:
    """A backup before a risky change. `required`: a failure aborts the operation."""
    with step(op, "backup", kind) as entry:
        if not _is_running(rt, instance):
            entry["detail"] = f"{kind}: skipped (the gateway is not running)"
            return
        try:
            backup = hooks.first("backup.create", instance=instance, kind=kind, operation=op)
        except Exception as exc:
            if required:
                raise OperationError(
                    "The backup before this change failed, so nothing was changed.",
                    _scrub(instance, f"{type(exc).__name__}: {exc}"),
                ) from exc
            log.warning("%s backup of %s failed: %s", kind, instance.pk, type(exc).__name__)
            entry["detail"] = f"{kind}: failed ({type(exc).__name__}); continuing"
            return
        entry["detail"] = f"{kind}: {getattr(backup, 'pk', 'not available')}"


def _after_ready(op: Operation, instance: Instance) -> None:
    """Tell the apps above (sessions_mgmt mirrors the sessions) that the gateway is ready.
    A subscriber's failure never fails the operation."""
    try:
        hooks.run("instance.ready", instance=instance, operation=op)
    except Exception as exc:  # noqa: BLE001 - the operation itself succeeded
        log.warning("instance.ready hook for %s failed: %s", instance.pk, type(exc).__name__)


def _run(op: Operation, body, *, on_error_status: str | None = S.FAILED, sync: bool = False):
    """Run a handler body; on error mark the instance and raise a public OperationError."""
    instance = op.instance
    try:
        body(op, instance)
    except Exception as exc:
        err = public_error(instance, exc)
        instance.refresh_from_db(fields=["status"])
        if on_error_status is not None and instance.status not in (S.RUNNING,):
            _to(op, instance, on_error_status, err.public)
        raise err from exc
    if sync:
        _after_ready(op, instance)


# --- deploy -----------------------------------------------------------------------------------


def _deploy_body(op: Operation, instance: Instance) -> None:
    _to(op, instance, S.DEPLOYING, "")
    with step(op, "place") as entry:
        if instance.host_id is None or instance.host_port is None:
            with transaction.atomic():
                placement.place(instance)
        entry["detail"] = f"{instance.host.name}:{instance.host_port}"
    # A warm pool gateway reserved for this instance at placement is claimed (seconds); when
    # there is none, or the claim fails (its gateway is removed then), the deploy goes on cold.
    if pool.deploy_from_pool(op, instance, _mark_running):
        return
    rt = _rt(instance)
    image = specs.image_for(instance.openclaw_version)
    with step(op, "image", image):
        rt.ensure_image(image)
    with step(op, "network", settings.FLEET_NETWORK):
        rt.ensure_network(settings.FLEET_NETWORK)
    with step(op, "volume", instance.volume_name):
        fresh = rt.ensure_volume(instance.volume_name, specs.labels_for(instance))
    with step(op, "config"):
        _write_config(rt, instance, image, fresh_volume=fresh)
    with step(op, "container", instance.container_name):
        _ensure_container(rt, instance, image)
    with step(op, "start"):
        rt.start(instance.container_name)
    _to(op, instance, S.STARTING)
    with step(op, "health") as entry:
        try:
            waited = _wait_ready(rt, instance)
        except Exception:
            with contextlib.suppress(Exception):
                rt.stop(instance.container_name, timeout=10)
            raise
        entry["detail"] = f"ready after {waited:.1f}s"
    _mark_running(op, instance)


def handle_deploy(op: Operation) -> None:
    _run(op, _deploy_body, sync=True)


# --- start / stop / restart -------------------------------------------------------------------


def _bring_up(op: Operation, instance: Instance, *, restart: bool, recreate: bool) -> None:
    """Converge to a running, ready container with the current spec and owned config."""
    rt = _rt(instance)
    image = specs.image_for(instance.openclaw_version)
    with step(op, "config"):
        if not rt.volume_exists(instance.volume_name):
            raise OperationError("The state volume of this instance is missing.")
        rt.ensure_network(settings.FLEET_NETWORK)
        _write_config(rt, instance, image)
    with step(op, "container", instance.container_name):
        before = rt.inspect(instance.container_name)
        info = _ensure_container(rt, instance, image, recreate=recreate)
        replaced = before is None or before.id != info.id
        if info.running and restart and not replaced:
            rt.restart(instance.container_name, timeout=STOP_TIMEOUT)
        elif not info.running:
            rt.start(instance.container_name)
    with step(op, "health") as entry:
        entry["detail"] = f"ready after {_wait_ready(rt, instance):.1f}s"


def _never_deployed(instance: Instance) -> bool:
    """A deploy that failed before the gateway was ever ready: start/restart retry the deploy
    (its steps converge), so a customer fixes a failed deploy with one click."""
    return instance.last_ready_at is None


def _start_body(op: Operation, instance: Instance) -> None:
    if _never_deployed(instance):
        return _deploy_body(op, instance)
    _to(op, instance, S.STARTING, "")
    _bring_up(op, instance, restart=False, recreate=False)
    _mark_running(op, instance)


def handle_start(op: Operation) -> None:
    _run(op, _start_body, sync=True)


def _restart_body(op: Operation, instance: Instance) -> None:
    if _never_deployed(instance):
        return _deploy_body(op, instance)
    _to(op, instance, S.RESTARTING, "")
    _bring_up(op, instance, restart=True, recreate=bool(op.params.get("recreate")))
    _mark_running(op, instance)


def handle_restart(op: Operation) -> None:
    _run(op, _restart_body, sync=True)


def _stop_body(op: Operation, instance: Instance) -> None:
    _to(op, instance, S.STOPPING)
    rt = _rt(instance)
    with step(op, "stop", f"docker stop -t {STOP_TIMEOUT}"):
        rt.stop(instance.container_name, timeout=STOP_TIMEOUT)
    _to(op, instance, S.STOPPED, "")


def handle_stop(op: Operation) -> None:
    _run(op, _stop_body)


# --- upgrade ----------------------------------------------------------------------------------


def _upgrade_body(op: Operation, instance: Instance) -> None:
    from_version = op.params.get("from_version") or instance.openclaw_version
    to_version = op.params["to_version"]
    if instance.openclaw_version == to_version:  # a redelivery after the swap succeeded
        _mark_running(op, instance)
        return
    rt = _rt(instance)
    old_image, new_image = specs.image_for(from_version), specs.image_for(to_version)
    previous_status = instance.status
    with step(op, "image", new_image):
        rt.ensure_image(new_image)
    _to(op, instance, S.UPGRADING, "")
    try:
        _backup(op, instance, rt, "pre_upgrade", required=True)
    except OperationError:
        _to(op, instance, previous_status)
        raise
    with step(op, "stop", f"docker stop -t {STOP_TIMEOUT}"):
        rt.stop(instance.container_name, timeout=STOP_TIMEOUT)
    with step(op, "config"):
        _write_config(rt, instance, new_image)
    with step(op, "container", new_image):
        _ensure_container(rt, instance, new_image, recreate=True)
        rt.start(instance.container_name)
    try:
        with step(op, "health") as entry:
            entry["detail"] = f"ready after {_wait_ready(rt, instance):.1f}s"
    except Exception as exc:
        reason = _scrub(instance, str(exc))
        _rollback(op, instance, rt, old_image, from_version, to_version, reason)
        raise OperationError(
            f"OpenClaw {to_version} did not become ready ({reason[:120]}); "
            f"rolled back to {from_version}.",
            reason,
        ) from exc
    _set(instance, openclaw_version=to_version, previous_version=from_version)
    _mark_running(op, instance)
    event(instance, "upgraded", f"Upgraded from {from_version} to {to_version}.")


def _rollback(op, instance, rt, old_image, from_version, to_version, reason) -> None:
    with step(op, "rollback", f"back to {from_version}"):
        _ensure_container(rt, instance, old_image, recreate=True)
        rt.start(instance.container_name)
        _wait_ready(rt, instance)
    _mark_running(
        op, instance, f"The upgrade to {to_version} failed; rolled back to {from_version}."
    )
    event(
        instance,
        "upgrade_rolled_back",
        f"OpenClaw {to_version} did not become ready; rolled back to {from_version}.",
        reason=reason[:500],
    )


def handle_upgrade(op: Operation) -> None:
    _run(op, _upgrade_body, sync=True)


# --- delete / purge / pause -------------------------------------------------------------------


def _delete_body(op: Operation, instance: Instance) -> None:
    from .services import grace_deadline

    _to(op, instance, S.DELETING)
    if instance.host is not None:
        rt = _rt(instance)
        _backup(op, instance, rt, "pre_delete", required=False)
        with step(op, "stop", f"docker stop -t {STOP_TIMEOUT}"):
            rt.stop(instance.container_name, timeout=STOP_TIMEOUT)
        with step(op, "container", "remove (the volume is kept)"):
            rt.remove(instance.container_name)
    now = timezone.now()
    _to(
        op,
        instance,
        S.DELETED,
        "",
        desired_state=Instance.DesiredState.DELETED,
        deleted_at=now,
        purge_after=grace_deadline(now),
    )


def handle_delete(op: Operation) -> None:
    _run(op, _delete_body)


def _purge_body(op: Operation, instance: Instance) -> None:
    if instance.host is not None:
        rt = _rt(instance)
        with step(op, "container", "remove"):
            rt.remove(instance.container_name)
        with step(op, "volume", f"remove {instance.volume_name}"):
            rt.remove_volume(instance.volume_name)
    _to(op, instance, S.PURGED, desired_state=Instance.DesiredState.DELETED, host_port=None)


def handle_purge(op: Operation) -> None:
    _run(op, _purge_body, on_error_status=None)


def _pause_body(op: Operation, instance: Instance) -> None:
    reason = op.params.get("reason") or "Paused."
    rt = _rt(instance)
    _backup(op, instance, rt, "pre_pause", required=False)
    with step(op, "stop", f"docker stop -t {STOP_TIMEOUT}"):
        rt.stop(instance.container_name, timeout=STOP_TIMEOUT)
    _to(op, instance, S.PAUSED, reason)


def handle_pause(op: Operation) -> None:
    _run(op, _pause_body)


def register_all() -> None:
    register_handler(Operation.Kind.DEPLOY, handle_deploy)
    register_handler(Operation.Kind.START, handle_start)
    register_handler(Operation.Kind.STOP, handle_stop)
    register_handler(Operation.Kind.RESTART, handle_restart)
    register_handler(Operation.Kind.UPGRADE, handle_upgrade)
    register_handler(Operation.Kind.DELETE, handle_delete)
    register_handler(Operation.Kind.PURGE, handle_purge)
    register_handler(Operation.Kind.PAUSE, handle_pause)
