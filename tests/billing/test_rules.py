"""One source of each billing rule: the service, the dashboard form and the API read the same
bound and message from billing.rules; and billing's hooks into the apps above it are provided."""

from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError

from accounts.services import SYSTEM
from billing import capabilities, rules
from billing.forms import BudgetForm
from billing.services import budgets
from fleet import hooks

from .factories import InstanceFactory

pytestmark = pytest.mark.django_db

BELOW = rules.BUDGET_MIN_USD - Decimal("0.01")


def test_the_service_refuses_a_budget_below_the_minimum_the_form_refuses(alice_org):
    with pytest.raises(ValidationError) as exc:
        budgets.budget_set(
            actor=SYSTEM, organization=alice_org, monthly_cap_usd=BELOW, action="notify"
        )
    assert exc.value.message_dict == {"monthly_cap_usd": [rules.BUDGET_MIN_MESSAGE]}
    form = BudgetForm({"monthly_cap_usd": str(BELOW), "action": "notify"}, organization=alice_org)
    assert form.errors == {"monthly_cap_usd": [rules.BUDGET_MIN_MESSAGE]}
    # The minimum itself is allowed by both.
    ok = BudgetForm(
        {"monthly_cap_usd": str(rules.BUDGET_MIN_USD), "action": "notify"}, organization=alice_org
    )
    assert ok.is_valid()
    budgets.budget_set(
        actor=SYSTEM,
        organization=alice_org,
        monthly_cap_usd=rules.BUDGET_MIN_USD,
        action="notify",
    )


def test_the_budget_form_offers_only_the_organizations_live_instances(alice_org, charlie_org):
    mine = InstanceFactory(organization=alice_org, name="b-mine")
    InstanceFactory(organization=alice_org, name="a-gone", status="deleted")
    InstanceFactory(organization=charlie_org, name="c-theirs")
    form = BudgetForm(organization=alice_org)
    assert list(form.fields["instance"].queryset) == [mine]


def test_another_organizations_instance_is_a_field_error_in_the_service(alice_org, charlie_org):
    theirs = InstanceFactory(organization=charlie_org)
    with pytest.raises(ValidationError) as exc:
        budgets.budget_set(
            actor=SYSTEM,
            organization=alice_org,
            monthly_cap_usd=Decimal("10"),
            action="pause",
            instance=theirs,
        )
    assert exc.value.message_dict == {"instance": [rules.BUDGET_INSTANCE_MESSAGE]}


@pytest.mark.parametrize(
    "name",
    [n for n in hooks.HOOKS if n.startswith("billing.")],
)
def test_every_hook_billing_runs_is_provided_by_an_app_above_it(name):
    assert hooks.registered(name), name


def test_a_missing_provider_is_an_error_not_an_empty_answer(alice_org):
    providers = hooks.registered("billing.instance_count")
    for func in providers:
        hooks.unregister("billing.instance_count", func)
    try:
        with pytest.raises(ImproperlyConfigured, match="billing.instance_count"):
            capabilities.instance_count(alice_org.pk)
    finally:
        for func in providers:
            hooks.register("billing.instance_count", func)
