"""Channels: the chat apps an instance's assistant lives in (Telegram, Discord, Slack).

A Channel is one bot account of one provider on one instance. Its secrets are encrypted at rest
(fleet.fields) and leave the database only for the provider's own API (the token check) and the
secret paths of the instance's openclaw.json (channels.services.apply). The status is what
OpenClaw itself reports (`channels.status`), read by the health check.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from fleet.fields import EncryptedTextField


class Channel(models.Model):
    class Kind(models.TextChoices):
        TELEGRAM = "telegram", "Telegram"
        DISCORD = "discord", "Discord"
        SLACK = "slack", "Slack"

    class DmPolicy(models.TextChoices):
        PAIRING = "pairing", "New people ask; the owner approves"
        ALLOWLIST = "allowlist", "Only the listed people"
        OPEN = "open", "Anyone"
        DISABLED = "disabled", "No direct messages"

    class Status(models.TextChoices):
        APPLYING = "applying", "Applying"
        HEALTHY = "healthy", "Healthy"
        BROKEN = "broken", "Broken"
        STOPPED = "stopped", "Instance not running"
        REMOVING = "removing", "Removing"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="channels"
    )
    instance = models.ForeignKey(
        "instances.Instance", on_delete=models.CASCADE, related_name="channels"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    account_id = models.CharField(max_length=40, default="default")
    # What the provider says the bot is called (Telegram's username, Discord's, Slack's team).
    bot_name = models.CharField(max_length=100, blank=True)
    bot_id = models.CharField(max_length=64, blank=True)
    secret = EncryptedTextField()
    # Slack's app-level token (socket mode) beside the bot token; empty for the others.
    secret_extra = EncryptedTextField(blank=True)
    dm_policy = models.CharField(max_length=16, choices=DmPolicy.choices, default=DmPolicy.PAIRING)
    allow_from = models.JSONField(default=list, blank=True)

    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.APPLYING, db_index=True
    )
    last_error = models.CharField(max_length=300, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    # Set when the owner was emailed about a break; cleared when the channel recovers.
    broken_notified_at = models.DateTimeField(null=True, blank=True)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["instance_id", "kind", "account_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["instance", "kind", "account_id"], name="channel_unique_per_instance"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.bot_name or self.account_id}"

    @property
    def healthy(self) -> bool:
        return self.status == self.Status.HEALTHY
