"""Hosts (Docker engines), instances (one OpenClaw gateway each), operations and events."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from fleet.fields import EncryptedTextField


class EngineNames:
    """The engine's names for the gateway of an id: an Instance and the PoolSlot that becomes it
    share them (a claim keeps the slot's container and volume), so they are derived in one place."""

    id: uuid.UUID

    @property
    def container_name(self) -> str:
        return f"clawfleet-{self.id.hex}"

    @property
    def volume_name(self) -> str:
        return f"clawfleet-{self.id.hex}-state"

    @property
    def hostname(self) -> str:
        # Stable across container replacements: OpenClaw's owner lease is keyed by it.
        return f"oc-{self.id.hex[:12]}"


class Host(models.Model):
    """A Docker engine, or a Docker Swarm (through a manager's engine), we place instances on,
    with its capacity. The kind picks the runtime backend (instances.runtime.runtime_for)."""

    class Kind(models.TextChoices):
        DOCKER = "docker", "Docker engine"
        SWARM = "swarm", "Docker Swarm"

    name = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.DOCKER)
    base_url = models.CharField(
        max_length=255,
        help_text="unix:///var/run/docker.sock, tcp://… (a swarm: one of its managers' engines)",
    )
    is_active = models.BooleanField(default=True)
    memory_mb = models.PositiveIntegerField(default=16384, help_text="Memory we may allocate")
    max_instances = models.PositiveIntegerField(default=10)
    port_range_start = models.PositiveIntegerField(default=19100)
    port_range_end = models.PositiveIntegerField(default=19999)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class HostNode(models.Model):
    """One node of a swarm Host, as Swarm last reported it (instances.services.host_nodes_sync):
    placement is Swarm's, this is what staff see and what drain/evacuate will act on."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="nodes")
    swarm_node_id = models.CharField(max_length=64)
    hostname = models.CharField(max_length=255, blank=True)
    address = models.CharField(max_length=64, blank=True)
    engine_url = models.CharField(
        max_length=255, blank=True, help_text="the node label clawfleet.engine"
    )
    role = models.CharField(max_length=16, blank=True)
    memory_mb = models.PositiveIntegerField(default=0, help_text="as the node reports it")
    availability = models.CharField(max_length=16, blank=True, help_text="active, pause, drain")
    state = models.CharField(max_length=16, blank=True, help_text="ready, down, unknown…")
    last_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["host", "hostname"]
        constraints = [
            models.UniqueConstraint(
                fields=["host", "swarm_node_id"], name="hostnode_unique_per_host"
            )
        ]

    def __str__(self):
        return f"{self.host.name}/{self.hostname or self.swarm_node_id[:12]}"


class Instance(EngineNames, models.Model):
    """One customer's OpenClaw gateway: a container plus its state volume."""

    class DesiredState(models.TextChoices):
        RUNNING = "running", "Running"
        STOPPED = "stopped", "Stopped"
        DELETED = "deleted", "Deleted"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DEPLOYING = "deploying", "Deploying"
        STARTING = "starting", "Starting"
        RUNNING = "running", "Running"
        RESTARTING = "restarting", "Restarting"
        UPGRADING = "upgrading", "Upgrading"
        RESTORING = "restoring", "Restoring"
        STOPPING = "stopping", "Stopping"
        STOPPED = "stopped", "Stopped"
        PAUSED = "paused", "Paused (billing)"
        CRASH_LOOPING = "crash_looping", "Crash-looping"
        FAILED = "failed", "Failed"
        DELETING = "deleting", "Deleting"
        DELETED = "deleted", "Deleted (volume kept)"
        PURGED = "purged", "Purged"

    class Health(models.TextChoices):
        UNKNOWN = "unknown", "Unknown"
        HEALTHY = "healthy", "Healthy"
        UNHEALTHY = "unhealthy", "Unhealthy"

    class Provider(models.TextChoices):
        OPENAI = "openai", "OpenAI"
        ANTHROPIC = "anthropic", "Anthropic"
        OPENROUTER = "openrouter", "OpenRouter"
        CUSTOM = "custom", "Custom OpenAI-compatible endpoint"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="instances"
    )
    name = models.SlugField(max_length=40)
    external_id = models.CharField(max_length=100, null=True, blank=True)
    # The DNS label of the public address (instances/edge.py), assigned once, never reused.
    edge_label = models.CharField(max_length=63, null=True, blank=True, unique=True, editable=False)
    client_name = models.CharField(max_length=100, blank=True, help_text="Agency's client")
    openclaw_version = models.CharField(max_length=32)
    previous_version = models.CharField(max_length=32, blank=True)
    desired_state = models.CharField(
        max_length=16, choices=DesiredState.choices, default=DesiredState.RUNNING
    )
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    health = models.CharField(max_length=16, choices=Health.choices, default=Health.UNKNOWN)
    status_message = models.CharField(max_length=300, blank=True)

    host = models.ForeignKey(
        Host, null=True, blank=True, on_delete=models.PROTECT, related_name="instances"
    )
    host_port = models.PositiveIntegerField(null=True, blank=True)
    memory_mb = models.PositiveIntegerField(default=2048)
    cpus = models.DecimalField(max_digits=4, decimal_places=2, default=1)

    provider = models.CharField(max_length=16, choices=Provider.choices, default=Provider.OPENAI)
    model_name = models.CharField(max_length=100, default="gpt-4o-mini")
    model_base_url = models.URLField(max_length=300, blank=True)
    # The customer's own prices, USD per million tokens, for a model our price table lacks (a
    # custom endpoint, a self-hosted model). Set: they win over the table; unset: the table's.
    price_input_per_mtok = models.DecimalField(
        max_digits=10, decimal_places=4, null=True, blank=True
    )
    price_output_per_mtok = models.DecimalField(
        max_digits=10, decimal_places=4, null=True, blank=True
    )
    price_cache_read_per_mtok = models.DecimalField(
        max_digits=10, decimal_places=4, null=True, blank=True
    )
    price_cache_write_per_mtok = models.DecimalField(
        max_digits=10, decimal_places=4, null=True, blank=True
    )
    provider_api_key = EncryptedTextField(blank=True)
    channel_token = EncryptedTextField(blank=True)
    gateway_token = EncryptedTextField()

    # Session retention (defaults come from the plan at deploy time).
    session_idle_days = models.PositiveIntegerField(default=30)
    session_max_count = models.PositiveIntegerField(default=5000)
    archive_before_prune = models.BooleanField(default=True)
    # Support may read transcripts only when the customer allows it (or with a stated reason).
    support_transcript_access = models.BooleanField(default=False)

    # Health and crash tracking, written by the reconcile loop.
    crash_count = models.PositiveIntegerField(default=0)
    crash_window_started_at = models.DateTimeField(null=True, blank=True)
    last_ready_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    running_since = models.DateTimeField(null=True, blank=True)
    # Session mirror cursor: the newest updatedAt we have seen (epoch ms).
    sessions_cursor = models.BigIntegerField(default=0)
    sessions_synced_at = models.DateTimeField(null=True, blank=True)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    purge_after = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["organization_id", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "name"],
                condition=~Q(status="purged"),
                name="instance_name_unique_per_org",
            ),
            models.UniqueConstraint(
                fields=["organization", "external_id"],
                condition=Q(external_id__isnull=False),
                name="instance_external_id_unique_per_org",
            ),
            models.UniqueConstraint(
                fields=["host", "host_port"],
                condition=Q(host_port__isnull=False),
                name="instance_port_unique_per_host",
            ),
        ]
        indexes = [models.Index(fields=["organization", "status"])]

    def __str__(self):
        return self.name

    @property
    def short_id(self) -> str:
        return self.id.hex[:12]

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.host_port}" if self.host_port else ""

    @property
    def endpoint_url(self) -> str | None:
        """The public HTTPS address through the edge proxy (instances/edge.py), once known."""
        if not settings.FLEET_EDGE_ADMIN_URL:  # the edge is off
            return None
        if not self.edge_label or not self.is_live or self.status == self.Status.DELETING:
            return None
        if self.desired_state == self.DesiredState.DELETED:
            return None
        from .edge import origin_for_label

        return origin_for_label(self.edge_label)

    @property
    def is_live(self) -> bool:
        return self.status not in (self.Status.DELETED, self.Status.PURGED)


class Operation(models.Model):
    """A unit of long work on an instance, saved before it runs, read by dashboard/API/admin."""

    class Kind(models.TextChoices):
        DEPLOY = "deploy", "Deploy"
        START = "start", "Start"
        STOP = "stop", "Stop"
        RESTART = "restart", "Restart"
        UPGRADE = "upgrade", "Upgrade"
        DELETE = "delete", "Delete"
        PURGE = "purge", "Purge"
        RESTORE = "restore", "Restore"
        BACKUP = "backup", "Back up"
        PRUNE = "prune", "Prune sessions"
        PAUSE = "pause", "Pause"

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    ACTIVE_STATES = (State.QUEUED, State.RUNNING)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="operations")
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="operations"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    state = models.CharField(
        max_length=16, choices=State.choices, default=State.QUEUED, db_index=True
    )
    params = models.JSONField(default=dict, blank=True)
    steps = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True, help_text="What went wrong, in words a customer reads")
    error_detail = models.TextField(blank=True, help_text="Internal detail for staff")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_via = models.CharField(max_length=16, default="system")
    task_id = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Written by the running worker; stale = worker gone"
    )
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # The database itself enforces one active operation per instance.
            models.UniqueConstraint(
                fields=["instance"],
                condition=Q(state__in=["queued", "running"]),
                name="one_active_operation_per_instance",
            )
        ]

    def __str__(self):
        return f"{self.get_kind_display()} {self.instance} ({self.state})"

    @property
    def is_active(self) -> bool:
        return self.state in self.ACTIVE_STATES

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class InstanceEvent(models.Model):
    """Something the control plane noticed or corrected (reconcile, health, crash loops)."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=32, db_index=True)
    message = models.CharField(max_length=300)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.kind}: {self.message}"


class PoolSlot(EngineNames, models.Model):
    """One warm-pool gateway (instances/pool.py, docs/warm-pool.md): a pre-booted container and
    volume named for a future instance whose id is this row's id, on a pool token, with no
    provider and no tenant data. A deploy that claims it creates the Instance with this id.

    booting → ready → claiming → claimed; any of them → retired (container and volume removed).
    Every change is a conditional UPDATE on the old state (pool.move), so one slot is never
    claimed twice nor retired under a claim that already landed."""

    class State(models.TextChoices):
        BOOTING = "booting", "Booting"
        READY = "ready", "Ready"
        CLAIMING = "claiming", "Claiming"
        CLAIMED = "claimed", "Claimed"
        RETIRED = "retired", "Retired"

    # The states whose engine objects belong to the pool (counted in the host's capacity).
    POOLED = (State.BOOTING, State.READY)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    host = models.ForeignKey(Host, on_delete=models.PROTECT, related_name="pool_slots")
    host_port = models.PositiveIntegerField()
    openclaw_version = models.CharField(max_length=32)
    memory_mb = models.PositiveIntegerField()
    cpus = models.DecimalField(max_digits=4, decimal_places=2)
    pool_token = EncryptedTextField()
    state = models.CharField(
        max_length=16, choices=State.choices, default=State.BOOTING, db_index=True
    )
    # Why it was retired (dead, boot timeout, claim failed: ...), for staff; never secrets.
    reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    ready_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["host", "host_port"],
                condition=Q(state__in=["booting", "ready", "claiming"]),
                name="poolslot_port_unique_per_host",
            )
        ]

    def __str__(self):
        return f"pool {self.id.hex[:12]} ({self.state})"

    @property
    def gateway_token(self) -> str:
        return self.pool_token

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.host_port}"
