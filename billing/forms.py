from django import forms

from . import capabilities, rules
from .models import Budget


class BudgetForm(forms.Form):
    """A monthly budget for the organization, or for one of its instances. Bounds and messages
    come from billing.rules and the model, the same ones services.budgets enforces."""

    instance = forms.ModelChoiceField(
        queryset=None,
        required=False,
        empty_label="Whole organization",
        label="Applies to",
    )
    monthly_cap_usd = Budget._meta.get_field("monthly_cap_usd").formfield(
        label="Monthly budget (USD)",
        min_value=rules.BUDGET_MIN_USD,
        error_messages={"min_value": rules.BUDGET_MIN_MESSAGE},
        help_text="Compute plus LLM tokens, per calendar month (UTC).",
    )
    action = forms.ChoiceField(
        choices=Budget.Action.choices,
        initial=Budget.Action.NOTIFY,
        label="At 100 %",
        help_text=f"We always email at {rules.BUDGET_ALERT_PERCENT} % and at 100 %.",
    )

    def __init__(self, *args, organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["instance"].queryset = capabilities.instances(organization.pk)
