"""Plans, subscriptions mirrored from Stripe, webhook events, prices, the cost ledger, budgets."""

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Plan(models.Model):
    """What a customer buys: staff edit plans as data; prices never come from a form."""

    slug = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=60)
    description = models.CharField(max_length=200, blank=True)
    monthly_price_cents = models.PositiveIntegerField()
    first_month_price_cents = models.PositiveIntegerField(default=100)
    stripe_price_id = models.CharField(max_length=100, blank=True)
    stripe_first_month_coupon_id = models.CharField(max_length=100, blank=True)
    max_instances = models.PositiveIntegerField(default=1)
    max_memory_mb = models.PositiveIntegerField(default=2048)
    max_cpus = models.DecimalField(max_digits=4, decimal_places=2, default=Decimal("1"))
    backup_daily_retention = models.PositiveIntegerField(default=7)
    backup_weekly_retention = models.PositiveIntegerField(default=4)
    # Point-in-time backups (sessions_mgmt.services.backups.backup_policy): one every N minutes
    # of a running instance, every point kept this many hours (then the dailies and weeklies).
    backup_interval_minutes = models.PositiveIntegerField(default=15)
    backup_point_hours = models.PositiveIntegerField(default=48)
    # Per instance: what its backups and pre-restore copies may hold, and its state volume.
    backup_storage_mb = models.PositiveIntegerField(default=5120)
    disk_mb = models.PositiveIntegerField(default=2048)
    session_idle_days = models.PositiveIntegerField(default=30)
    session_max_count = models.PositiveIntegerField(default=5000)
    included_llm_credit_cents = models.PositiveIntegerField(default=0)
    compute_cents_per_hour = models.DecimalField(
        max_digits=8, decimal_places=4, default=Decimal("1.0")
    )
    is_active = models.BooleanField(default=True)
    sort_order = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "monthly_price_cents"]

    def __str__(self):
        return self.name


class Subscription(models.Model):
    """Our mirror of the organization's Stripe subscription (Stripe is the source of truth)."""

    class Status(models.TextChoices):
        NONE = "none", "No subscription"
        INCOMPLETE = "incomplete", "Incomplete"
        TRIALING = "trialing", "Trialing"
        ACTIVE = "active", "Active"
        PAST_DUE = "past_due", "Past due"
        UNPAID = "unpaid", "Unpaid"
        CANCELED = "canceled", "Canceled"
        COMPED = "comped", "Complimentary (staff)"

    ENTITLED = (Status.TRIALING, Status.ACTIVE, Status.PAST_DUE, Status.COMPED)

    organization = models.OneToOneField(
        "accounts.Organization", on_delete=models.CASCADE, related_name="subscription"
    )
    plan = models.ForeignKey(Plan, null=True, blank=True, on_delete=models.PROTECT)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NONE)
    stripe_customer_id = models.CharField(max_length=100, blank=True, db_index=True)
    stripe_subscription_id = models.CharField(max_length=100, blank=True, db_index=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    payment_failed_at = models.DateTimeField(null=True, blank=True)
    grace_until = models.DateTimeField(null=True, blank=True)
    # The `created` of the newest Stripe event applied: older events never overwrite newer state.
    stripe_event_created = models.BigIntegerField(default=0)
    # The same for invoice events (a late invoice.payment_failed never undoes a newer invoice.paid).
    payment_event_created = models.BigIntegerField(default=0)
    # When the subscription stopped paying for a plan (canceled, unpaid, a comp ended): its
    # instances are paused BILLING_END_NOTICE_DAYS later (billing/services/enforcement.py).
    ended_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.organization}: {self.plan or '-'} ({self.status})"

    @property
    def is_entitled(self) -> bool:
        return self.status in self.ENTITLED and self.plan_id is not None


class StripeEvent(models.Model):
    """Every webhook, stored by its id before processing, processed exactly once."""

    class State(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored"
        FAILED = "failed", "Failed"

    event_id = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=100, db_index=True)
    created = models.BigIntegerField(default=0)
    payload = models.JSONField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.RECEIVED)
    error = models.TextField(blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self):
        return f"{self.type} {self.event_id}"


class ModelPrice(models.Model):
    """Our price table for LLM tokens, USD per million tokens, versioned by effective date."""

    provider = models.CharField(max_length=32)
    model = models.CharField(max_length=128)
    input_per_mtok = models.DecimalField(max_digits=10, decimal_places=4)
    output_per_mtok = models.DecimalField(max_digits=10, decimal_places=4)
    cache_read_per_mtok = models.DecimalField(max_digits=10, decimal_places=4, default=0)
    cache_write_per_mtok = models.DecimalField(max_digits=10, decimal_places=4, default=0)
    effective_from = models.DateField(default=timezone.now)

    class Meta:
        ordering = ["provider", "model", "-effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "model", "effective_from"], name="one_price_per_model_per_day"
            )
        ]

    def __str__(self):
        return f"{self.provider}/{self.model} from {self.effective_from}"


class UsageDay(models.Model):
    """The cost ledger: one row per instance per day, rebuilt idempotently by the rollup."""

    instance = models.ForeignKey(
        "instances.Instance", on_delete=models.CASCADE, related_name="usage_days"
    )
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="usage_days"
    )
    day = models.DateField()
    running_seconds = models.PositiveIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cache_read_tokens = models.BigIntegerField(default=0)
    cache_write_tokens = models.BigIntegerField(default=0)
    compute_cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    llm_cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-day"]
        constraints = [
            models.UniqueConstraint(fields=["instance", "day"], name="one_usage_row_per_day")
        ]
        indexes = [models.Index(fields=["organization", "day"])]

    def __str__(self):
        return f"{self.instance_id} {self.day}"

    @property
    def total_cost_usd(self) -> Decimal:
        return self.compute_cost_usd + self.llm_cost_usd


class Budget(models.Model):
    """A monthly cap for an organization, or one of its instances, and what to do at 100 %."""

    class Action(models.TextChoices):
        NOTIFY = "notify", "Notify only"
        PAUSE = "pause", "Pause the instance (after a backup)"

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="budgets"
    )
    instance = models.ForeignKey(
        "instances.Instance", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    monthly_cap_usd = models.DecimalField(max_digits=10, decimal_places=2)
    action = models.CharField(max_length=16, choices=Action.choices, default=Action.NOTIFY)
    alerted_80_month = models.CharField(max_length=7, blank=True)  # "2026-11"
    alerted_100_month = models.CharField(max_length=7, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "instance"],
                condition=Q(instance__isnull=False),
                name="one_budget_per_instance",
            ),
            models.UniqueConstraint(
                fields=["organization"],
                condition=Q(instance__isnull=True),
                name="one_org_budget",
            ),
        ]

    def __str__(self):
        return f"Budget {self.monthly_cap_usd} USD for {self.instance or self.organization}"


class MeterReport(models.Model):
    """LLM usage beyond the plan's credit reported to Stripe; the identifier makes it idempotent."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE)
    identifier = models.CharField(max_length=120, unique=True)
    day = models.DateField()
    value_cents = models.PositiveIntegerField()
    reported_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    def __str__(self):
        return self.identifier


class SessionUsageDay(models.Model):
    """Per session per day: the session's cumulative counters as last seen that day, and the
    usage attributed to that day (the difference from the session's previous snapshot).

    The rollup writes these; UsageDay token columns are their per-instance sums. See
    docs/billing.md ("Attributing tokens to days").
    """

    session = models.ForeignKey(
        "sessions_mgmt.Session", on_delete=models.CASCADE, related_name="usage_days"
    )
    instance = models.ForeignKey("instances.Instance", on_delete=models.CASCADE, related_name="+")
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+"
    )
    day = models.DateField()
    # Cumulative counters of the session at the last rollup of `day`.
    seen_input_tokens = models.BigIntegerField(default=0)
    seen_output_tokens = models.BigIntegerField(default=0)
    seen_cache_read_tokens = models.BigIntegerField(default=0)
    seen_cache_write_tokens = models.BigIntegerField(default=0)
    # What `day` added (never negative).
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cache_read_tokens = models.BigIntegerField(default=0)
    cache_write_tokens = models.BigIntegerField(default=0)
    llm_cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-day"]
        constraints = [
            models.UniqueConstraint(fields=["session", "day"], name="one_session_usage_per_day")
        ]
        indexes = [
            models.Index(fields=["instance", "day"]),
            models.Index(fields=["organization", "day"]),
        ]

    def __str__(self):
        return f"{self.session_id} on {self.day}"


class BillingPause(models.Model):
    """An instance billing paused (grace period over, or a budget with action PAUSE).

    Lets a paid invoice resume exactly the instances billing paused, and makes the budget pause
    happen once per month.
    """

    class Reason(models.TextChoices):
        GRACE = "grace", "Payment grace period ended"
        BUDGET = "budget", "Monthly budget reached"
        ENDED = "ended", "Subscription ended"
        OVER_PLAN = "over_plan", "More instances than the plan allows"

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+"
    )
    instance = models.ForeignKey("instances.Instance", on_delete=models.CASCADE, related_name="+")
    reason = models.CharField(max_length=16, choices=Reason.choices)
    month = models.CharField(max_length=7, blank=True)  # "2026-11" for budget pauses
    created_at = models.DateTimeField(default=timezone.now)
    # A pause announced ahead (ended, over_plan): the instance runs until then; None: at once.
    due_at = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    resumed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One open pause per instance and reason for the announced ones.
            models.UniqueConstraint(
                fields=["instance", "reason"],
                condition=Q(reason__in=["ended", "over_plan"], resumed_at__isnull=True),
                name="one_open_announced_pause_per_instance",
            ),
            # One open grace pause per instance at a time.
            models.UniqueConstraint(
                fields=["instance"],
                condition=Q(reason="grace", resumed_at__isnull=True),
                name="one_open_grace_pause_per_instance",
            ),
            # A budget pauses an instance at most once per month.
            models.UniqueConstraint(
                fields=["instance", "month"],
                condition=Q(reason="budget"),
                name="one_budget_pause_per_instance_per_month",
            ),
        ]

    def __str__(self):
        return f"{self.instance_id} paused ({self.reason})"


class FirstMonthClaim(models.Model):
    """A person's one "$1 first month": recorded when a checkout with the offer completes, so
    that neither that person nor that organization is offered it again (billing/rules.py)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="first_month_claim"
    )
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="first_month_claims"
    )
    plan = models.ForeignKey(Plan, null=True, blank=True, on_delete=models.SET_NULL)
    stripe_checkout_session = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return f"{self.user_id} claimed the first month in {self.organization_id}"
