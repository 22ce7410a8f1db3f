"""What an organization's plan allows. Other apps call exactly these functions:

- `plan_for(organization)`: the plan of an entitled subscription, else None.
- `check_instance_allowed(*, organization, memory_mb, cpus, exclude_instance_id=None)`: the plan,
  or a ValidationError keyed by "plan", "instances", "memory_mb", "cpus".
- `retention_for(organization)`: session and backup retention for new instances.

Entitled means: status trialing, active, past_due (still within the payment grace period) or
comped (staff, demo), with a plan. Once the grace period after a failed payment is over, the
organization is no longer entitled (nothing new deploys until the invoice is paid).

The instance count comes from the instances app through billing.capabilities (the
"billing.instance_count" hook): billing never imports instances.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from . import capabilities
from .models import Plan, Subscription

# Used when an organization has no plan (e.g. its subscription ended): conservative, never zero.
DEFAULT_RETENTION = {
    "session_idle_days": 30,
    "session_max_count": 1000,
    "backup_daily": 7,
    "backup_weekly": 4,
}


def entitled_subscription(organization, *, lock: bool = False) -> Subscription | None:
    """The organization's (an Organization or its id) entitled subscription, else None."""
    qs = Subscription.objects.select_related("plan").filter(organization=organization)
    if lock and transaction.get_connection().in_atomic_block:
        # Serializes concurrent deploys of one organization, so two cannot both pass the count.
        qs = qs.select_for_update(of=("self",))
    sub = qs.first()
    if sub is None or not sub.is_entitled:
        return None
    if (
        sub.status != Subscription.Status.COMPED
        and sub.grace_until is not None
        and sub.grace_until <= timezone.now()
    ):
        return None
    return sub


def plan_for(organization) -> Plan | None:
    sub = entitled_subscription(organization)
    return sub.plan if sub else None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def check_instance_allowed(*, organization, memory_mb: int, cpus, exclude_instance_id=None) -> Plan:
    """Raise ValidationError unless the plan allows one more instance (or, with
    exclude_instance_id, resizing that instance) of this size. Returns the plan."""
    sub = entitled_subscription(organization, lock=True)
    if sub is None:
        raise ValidationError({"plan": "Choose a plan before deploying."})
    plan = sub.plan
    errors: dict[str, str] = {}

    # Counted after the lock above, by the instances app (which instances count is its rule).
    others = capabilities.instance_count(organization.pk, exclude_instance_id=exclude_instance_id)
    if others + 1 > plan.max_instances:
        errors["instances"] = (
            f"Your {plan.name} plan includes {_plural(plan.max_instances, 'instance')}. "
            "Delete one or upgrade your plan."
        )
    try:
        memory = int(memory_mb)
    except (TypeError, ValueError):
        errors["memory_mb"] = "Enter the memory in MB."
    else:
        if memory > plan.max_memory_mb:
            errors["memory_mb"] = (
                f"Your {plan.name} plan allows up to {plan.max_memory_mb} MB of memory "
                "per instance."
            )
    try:
        cpu_count = Decimal(str(cpus))
    except (InvalidOperation, ValueError):
        errors["cpus"] = "Enter the number of CPUs."
    else:
        if cpu_count > plan.max_cpus:
            errors["cpus"] = (
                f"Your {plan.name} plan allows up to {plan.max_cpus.normalize():f} CPUs "
                "per instance."
            )
    if errors:
        raise ValidationError(errors)
    return plan


def retention_for(organization) -> dict:
    plan = plan_for(organization)
    if plan is None:
        return dict(DEFAULT_RETENTION)
    return {
        "session_idle_days": plan.session_idle_days,
        "session_max_count": plan.session_max_count,
        "backup_daily": plan.backup_daily_retention,
        "backup_weekly": plan.backup_weekly_retention,
    }
