"""Webhook endpoints, deliveries and their attempts; email opt-outs and the emails sent."""

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from fleet.fields import EncryptedTextField


class WebhookEndpoint(models.Model):
    """An organization's receiver: where events go, which ones, and the secret they are signed
    with (encrypted at rest, shown once at creation)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.URLField(max_length=500)
    description = models.CharField(max_length=200, blank=True)
    events = models.JSONField(default=list, help_text="Event types it receives")
    secret = EncryptedTextField()
    is_active = models.BooleanField(default=True)
    # The first failed attempt since the last success: after WEBHOOK_DISABLE_AFTER_DAYS of
    # failures the endpoint is disabled and the owners get an email.
    failing_since = models.DateTimeField(null=True, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["organization", "is_active"])]

    def __str__(self):
        return self.url

    def wants(self, event_type: str) -> bool:
        return event_type in (self.events or [])


class WebhookDelivery(models.Model):
    """One event for one endpoint. Its id is the `Clawfleet-Delivery` header, the same on every
    retry and on a redelivery by hand, so a receiver can deduplicate."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed (gave up)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+"
    )
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event_id = models.UUIDField(default=uuid.uuid4)
    event_type = models.CharField(max_length=64)
    body = models.TextField(help_text="The exact JSON sent (signed with the timestamp)")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempt_count = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # Retries go on until this long after window_started_at (creation, or a redelivery).
    window_started_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["endpoint", "-created_at"]),
            models.Index(fields=["state", "next_attempt_at"]),
        ]

    def __str__(self):
        return f"{self.event_type} to {self.endpoint_id}"


class WebhookAttempt(models.Model):
    """One HTTP request of a delivery: when, the status code (None when no answer), why not."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    duration_ms = models.PositiveIntegerField(default=0)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    response_excerpt = models.CharField(max_length=500, blank=True)
    manual = models.BooleanField(default=False, help_text="A redelivery by hand started it")

    class Meta:
        ordering = ["number"]

    def __str__(self):
        return f"attempt {self.number} of {self.delivery_id}"

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class EmailOptOut(models.Model):
    """A person who does not want one kind of notification email from one organization."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+"
    )
    kind = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "organization", "kind"], name="one_opt_out_per_kind"
            )
        ]

    def __str__(self):
        return f"{self.user_id} opts out of {self.kind}"


class EmailNotice(models.Model):
    """A notification email sent: at most one per instance (or organization) per kind per hour."""

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+"
    )
    subject_key = models.CharField(max_length=64, help_text="The instance id, or 'organization'")
    kind = models.CharField(max_length=64)
    subject = models.CharField(max_length=200)
    recipients = models.PositiveIntegerField(default=0)
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-sent_at"]
        indexes = [models.Index(fields=["subject_key", "kind", "-sent_at"])]

    def __str__(self):
        return f"{self.kind} for {self.subject_key} at {self.sent_at}"
