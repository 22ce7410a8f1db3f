"""Budgets: a monthly cap for an organization or one of its instances. Alerts at
rules.BUDGET_ALERT_PERCENT of the cap and at 100 %; a PAUSE budget pauses (backup first) once a
month. Conditional updates on alerted_*_month make each alert happen once even if runs overlap."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Sum

from accounts.models import Organization
from accounts.services import SYSTEM, Actor, audit
from fleet import hooks

from .. import capabilities, rules
from ..models import BillingPause, Budget, UsageDay
from .common import email_on_commit, month
from .pauses import pause_instance, pause_record


def _spent(budget: Budget, first: dt.date, last: dt.date) -> Decimal:
    qs = UsageDay.objects.filter(organization_id=budget.organization_id, day__range=(first, last))
    if budget.instance_id:
        qs = qs.filter(instance_id=budget.instance_id)
    row = qs.aggregate(c=Sum("compute_cost_usd"), llm=Sum("llm_cost_usd"))
    return (row["c"] or Decimal(0)) + (row["llm"] or Decimal(0))


def check_budgets(*, day: dt.date) -> dict:
    """Alerts at rules.BUDGET_ALERT_PERCENT (one email a month), and at 100 %: NOTIFY emails
    once, PAUSE pauses the instance (or, for an organization budget, its running instances)
    once a month, backup first."""
    this_month = month(day)
    first = day.replace(day=1)
    done = {"alerted_80": 0, "alerted_100": 0, "paused": 0}
    for budget in Budget.objects.select_related("organization", "instance"):
        cap = budget.monthly_cap_usd
        if cap <= 0:
            continue
        spent = _spent(budget, first, day)
        what = f"instance {budget.instance.name}" if budget.instance_id else "your organization"
        org = budget.organization
        if spent >= cap:
            claimed = (
                Budget.objects.filter(pk=budget.pk)
                .exclude(alerted_100_month=this_month)
                .update(alerted_100_month=this_month, alerted_80_month=this_month)
            )
            if not claimed:
                continue
            done["alerted_100"] += 1
            hooks.run(
                "budget.threshold",
                organization=org,
                budget=budget,
                instance=budget.instance,
                percent=100,
                spent=spent,
                cap=cap,
            )
            pausing = budget.action == Budget.Action.PAUSE
            email_on_commit(
                org,
                f"Budget reached for {what}",
                f"{what.capitalize()} has spent {spent:.2f} USD this month, reaching its "
                f"budget of {cap:.2f} USD.\n\n"
                + (
                    "As the budget asks, we back up and pause the affected instances. Resume "
                    "them from the dashboard after raising the budget.\n"
                    if pausing
                    else "Nothing was stopped (the budget only notifies).\n"
                ),
            )
            if not pausing:
                continue
            targets = capabilities.pausable(org.pk)
            if budget.instance_id:
                targets = [i for i in targets if i.pk == budget.instance_id]
            for instance in targets:
                pause = pause_record(instance, reason=BillingPause.Reason.BUDGET, month=this_month)
                if pause is None:
                    continue
                if pause_instance(instance, pause, f"Monthly budget of {cap:.2f} USD reached."):
                    done["paused"] += 1
                    audit(
                        actor=SYSTEM,
                        action="instance.budget_paused",
                        organization=org,
                        target=instance,
                        data={"budget": budget.pk, "spent": str(spent), "month": this_month},
                    )
        elif spent >= cap * rules.BUDGET_ALERT_RATIO:
            claimed = (
                Budget.objects.filter(pk=budget.pk)
                .exclude(alerted_80_month=this_month)
                .update(alerted_80_month=this_month)
            )
            if claimed:
                done["alerted_80"] += 1
                hooks.run(
                    "budget.threshold",
                    organization=org,
                    budget=budget,
                    instance=budget.instance,
                    percent=rules.BUDGET_ALERT_PERCENT,
                    spent=spent,
                    cap=cap,
                )
                email_on_commit(
                    org,
                    f"{rules.BUDGET_ALERT_PERCENT} % of the budget used for {what}",
                    f"{what.capitalize()} has spent {spent:.2f} USD of its {cap:.2f} USD "
                    "monthly budget.\n",
                )
    return done


def budget_validate(*, organization: Organization, monthly_cap_usd, action: str, instance=None):
    """The budget rules (billing.rules), as field errors; the form reads the same bounds."""
    errors = {}
    if instance is not None and instance.organization_id != organization.pk:
        errors["instance"] = rules.BUDGET_INSTANCE_MESSAGE
    if monthly_cap_usd is None or monthly_cap_usd < rules.BUDGET_MIN_USD:
        errors["monthly_cap_usd"] = rules.BUDGET_MIN_MESSAGE
    if action not in Budget.Action.values:
        errors["action"] = rules.BUDGET_ACTION_MESSAGE
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def budget_set(
    *,
    actor: Actor,
    organization: Organization,
    monthly_cap_usd: Decimal,
    action: str,
    instance=None,
) -> Budget:
    """Create or change the organization's budget, or one instance's."""
    budget_validate(
        organization=organization,
        monthly_cap_usd=monthly_cap_usd,
        action=action,
        instance=instance,
    )
    budget, created = Budget.objects.select_for_update().get_or_create(
        organization=organization,
        instance=instance,
        defaults={"monthly_cap_usd": monthly_cap_usd, "action": action},
    )
    if not created:
        raised = monthly_cap_usd > budget.monthly_cap_usd
        budget.monthly_cap_usd = monthly_cap_usd
        budget.action = action
        if raised:  # a raised cap may alert again this month
            budget.alerted_80_month = ""
            budget.alerted_100_month = ""
        budget.save()
    audit(
        actor=actor,
        action="budget.set",
        organization=organization,
        target=budget,
        data={"monthly_cap_usd": str(monthly_cap_usd), "action": action},
    )
    return budget


@transaction.atomic
def budget_delete(*, actor: Actor, budget: Budget) -> None:
    audit(
        actor=actor,
        action="budget.deleted",
        organization=budget.organization,
        target=budget,
        data={"monthly_cap_usd": str(budget.monthly_cap_usd)},
    )
    budget.delete()
