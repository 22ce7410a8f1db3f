"""Reads of channels, always scoped by organization."""

from __future__ import annotations

from .models import Channel


def channels_for(*, organization, instance=None):
    qs = Channel.objects.filter(organization=organization).select_related("instance")
    if instance is not None:
        qs = qs.filter(instance=instance)
    return qs.order_by("kind", "account_id")


def channel_for(*, organization, instance, pk) -> Channel:
    """The channel, or Channel.DoesNotExist (a 404 for the caller) across tenants."""
    return Channel.objects.select_related("instance").get(
        organization=organization, instance=instance, pk=pk
    )
