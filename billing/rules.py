"""Billing's validation rules, each defined once: the services enforce them, the dashboard forms
and the API serializers read their bounds and messages from here."""

from __future__ import annotations

from decimal import Decimal

# Budgets: a monthly cap in USD (the column's digits come from Budget.monthly_cap_usd).
BUDGET_MIN_USD = Decimal("1")
BUDGET_MIN_MESSAGE = f"Enter a budget of at least {BUDGET_MIN_USD} USD."
BUDGET_ACTION_MESSAGE = "Choose notify or pause."
BUDGET_INSTANCE_MESSAGE = "Choose one of your instances."
# The share of the cap at which the first alert goes out.
BUDGET_ALERT_PERCENT = 80
BUDGET_ALERT_RATIO = Decimal(BUDGET_ALERT_PERCENT) / 100

# /api/v1/usage: the longest date range one request may ask for.
USAGE_MAX_RANGE_DAYS = 366
USAGE_RANGE_MESSAGE = f"Ask for at most {USAGE_MAX_RANGE_DAYS} days at a time."
USAGE_ORDER_MESSAGE = "Must be on or before `to`."


def first_month_offered(*, organization, user) -> bool:
    """The "$1 first month" is once per person and once per organization: not when this person
    (in any organization) or this organization has had it, nor to a checkout without a person."""
    from .models import FirstMonthClaim

    if user is None or not getattr(user, "pk", None):
        return False
    claims = FirstMonthClaim.objects.all()
    return not (
        claims.filter(user=user).exists() or claims.filter(organization=organization).exists()
    )
