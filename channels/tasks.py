"""Thin tasks: ids in, load, call the service."""

from __future__ import annotations

import logging

from celery import shared_task
from django.utils import timezone

from instances.openclaw.client import InstanceUnavailable, OpenClawError

from .models import Channel
from .services import gateway, health

log = logging.getLogger(__name__)
CS = Channel.Status


def apply_channel(channel_id: str) -> Channel | None:
    channel = (
        Channel.objects.select_related("instance", "organization").filter(pk=channel_id).first()
    )
    if channel is None or channel.status == CS.REMOVING:
        return channel
    instance = channel.instance
    if instance.status != "running":
        health.mark_stopped(instance)  # applied by instance.ready once it runs
        return channel
    try:
        gateway.apply(channel)
    except InstanceUnavailable:
        health.mark_stopped(instance)
        return channel
    except OpenClawError as exc:
        health.set_health(channel, healthy=False, reason=f"OpenClaw refused the config ({exc})")
        return channel
    Channel.objects.filter(pk=channel.pk).update(applied_at=timezone.now())
    health.check_instance(instance)
    channel.refresh_from_db()
    return channel


def remove_channel(channel_id: str) -> bool:
    channel = Channel.objects.select_related("instance").filter(pk=channel_id).first()
    if channel is None:
        return True
    if channel.instance.status == "running":
        gateway.remove(channel)
    else:
        gateway.remove_from_volume(channel)
    channel.delete()
    return True


def check_channels_of(instance_id) -> None:
    from instances.models import Instance

    instance = Instance.objects.filter(pk=instance_id).first()
    if instance is None:
        return
    # Converge first: channels never applied (carried over, or the instance was stopped) are
    # applied, those marked for removal removed; then one health read for the rest.
    pending = Channel.objects.filter(instance=instance)
    for channel_id, status, applied in pending.values_list("pk", "status", "applied_at"):
        if status == CS.REMOVING:
            remove_channel(str(channel_id))
        elif applied is None and instance.status == "running":
            apply_channel(str(channel_id))
    health.check_instance(instance)


@shared_task(acks_late=True, time_limit=300, soft_time_limit=280)
def apply_channel_task(channel_id: str):
    apply_channel(channel_id)


@shared_task(
    acks_late=True,
    time_limit=300,
    soft_time_limit=280,
    autoretry_for=(OpenClawError,),
    retry_backoff=10,
    max_retries=5,
)
def remove_channel_task(channel_id: str):
    remove_channel(channel_id)


@shared_task(acks_late=True, time_limit=200, soft_time_limit=180)
def check_instance_channels_task(instance_id: str):
    try:
        check_channels_of(instance_id)
    except OpenClawError as exc:
        log.warning("channel health of %s not read: %s", instance_id, exc)


@shared_task(time_limit=60)
def check_all_channels():
    """Fan out one health check per instance with channels (each one channels.status call)."""
    ids = (
        Channel.objects.exclude(status=CS.REMOVING).values_list("instance_id", flat=True).distinct()
    )
    for instance_id in ids:
        check_instance_channels_task.delay(str(instance_id))
