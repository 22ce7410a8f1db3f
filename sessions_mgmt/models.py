"""The session mirror and backups."""

import uuid

from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone


class Session(models.Model):
    """One OpenClaw conversation, mirrored from the instance's own session store."""

    class Status(models.TextChoices):
        LIVE = "live", "Live"
        ARCHIVED = "archived", "Archived"
        PRUNED = "pruned", "Pruned"

    instance = models.ForeignKey(
        "instances.Instance", on_delete=models.CASCADE, related_name="sessions"
    )
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="sessions"
    )
    session_key = models.CharField(max_length=255)
    session_id = models.CharField(max_length=100, blank=True)
    agent_id = models.CharField(max_length=64, default="main")
    channel = models.CharField(max_length=64, blank=True, db_index=True)
    model = models.CharField(max_length=128, blank=True)
    # The provider id OpenClaw reports for the model (our config's provider entry).
    provider = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.LIVE)
    started_at = models.DateTimeField(null=True, blank=True)
    last_activity_at = models.DateTimeField(null=True, blank=True, db_index=True)
    message_count = models.PositiveIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cache_read_tokens = models.BigIntegerField(default=0)
    cache_write_tokens = models.BigIntegerField(default=0)
    # OpenClaw's own estimate (from the prices we wrote into its config) and ours.
    openclaw_cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    first_seen_at = models.DateTimeField(default=timezone.now)
    synced_at = models.DateTimeField(default=timezone.now)
    pruned_at = models.DateTimeField(null=True, blank=True)
    # OpenClaw's own updatedAt (epoch ms) when we last copied the row: an unchanged session is
    # skipped by the sync without asking OpenClaw for its usage again.
    openclaw_updated_ms = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-last_activity_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["instance", "session_key"], name="session_key_unique_per_instance"
            )
        ]
        # Every filter and ordering GET /api/v1/sessions documents is served by one of these
        # (tests/api/test_query_plans.py); "recency" is the API's Coalesce of the two dates.
        indexes = [
            models.Index(fields=["organization", "-last_activity_at"]),
            models.Index(fields=["instance", "status"]),
            models.Index(
                F("organization"),
                Coalesce("last_activity_at", "first_seen_at").desc(),
                F("id").desc(),
                name="session_org_recency",
            ),
            models.Index(
                F("instance"),
                Coalesce("last_activity_at", "first_seen_at").desc(),
                F("id").desc(),
                name="session_inst_recency",
            ),
            models.Index(
                F("organization"),
                F("status"),
                Coalesce("last_activity_at", "first_seen_at").desc(),
                F("id").desc(),
                name="session_org_status_recency",
            ),
            models.Index(
                F("organization"),
                F("channel"),
                Coalesce("last_activity_at", "first_seen_at").desc(),
                F("id").desc(),
                name="session_org_channel_recency",
            ),
            models.Index(fields=["organization", "-cost_usd", "-id"], name="session_org_cost"),
            models.Index(fields=["organization", "id"], name="session_org_id"),
        ]

    def __str__(self):
        return self.session_key

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
        )


class Backup(models.Model):
    """An encrypted, checksummed archive of an instance's state, taken consistently."""

    class Kind(models.TextChoices):
        NIGHTLY = "nightly", "Nightly"
        # Every few minutes (the plan's interval): a deduplicated point (backup_store.write_point).
        INCREMENTAL = "incremental", "Point in time"
        MANUAL = "manual", "Manual"
        PRE_UPGRADE = "pre_upgrade", "Before upgrade"
        PRE_RESTORE = "pre_restore", "Before restore"
        PRE_PLAN_CHANGE = "pre_plan_change", "Before plan change"
        PRE_DELETE = "pre_delete", "Before delete"
        PRE_PAUSE = "pre_pause", "Before pause"

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired (deleted by retention)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    instance = models.ForeignKey(
        "instances.Instance", on_delete=models.CASCADE, related_name="backups"
    )
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="backups"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    # Nightly backups carry their date, so two nightly runs at once make only one (constraint).
    nightly_date = models.DateField(null=True, blank=True)
    storage_name = models.CharField(max_length=300, blank=True)
    size_bytes = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    manifest = models.JSONField(default=dict, blank=True)
    session_count = models.PositiveIntegerField(default=0)
    openclaw_version = models.CharField(max_length=32, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    progress = models.JSONField(default=list, blank=True)
    operation = models.ForeignKey(
        "instances.Operation", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["instance", "nightly_date"],
                condition=Q(nightly_date__isnull=False),
                name="one_nightly_backup_per_instance_per_day",
            )
        ]
        indexes = [models.Index(fields=["instance", "state", "-created_at"])]

    def __str__(self):
        return f"{self.get_kind_display()} backup of {self.instance} ({self.state})"

    @property
    def restorable(self) -> bool:
        """A restore can choose it (selectors.restorable_backups is the queryset form)."""
        return self.state == self.State.SUCCEEDED and bool(self.storage_name)


class BackupProof(models.Model):
    """One nightly proof: a backup restored into a scratch volume with no network and checked
    (sessions and keys against the manifest, a transcript read back, the config valid)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    instance = models.ForeignKey(
        "instances.Instance", on_delete=models.CASCADE, related_name="backup_proofs"
    )
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="backup_proofs"
    )
    backup = models.ForeignKey(
        Backup, null=True, blank=True, on_delete=models.SET_NULL, related_name="proofs"
    )
    ok = models.BooleanField(default=False)
    checks = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    seconds = models.FloatField(default=0)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["instance", "-created_at"])]

    def __str__(self):
        return f"proof of {self.backup_id} ({'ok' if self.ok else 'failed'})"
