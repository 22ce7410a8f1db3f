from decimal import Decimal

from django import forms

from .models import Budget


class BudgetForm(forms.Form):
    """A monthly budget for the organization, or for one of its instances."""

    instance = forms.ModelChoiceField(
        queryset=None,
        required=False,
        empty_label="Whole organization",
        label="Applies to",
    )
    monthly_cap_usd = forms.DecimalField(
        label="Monthly budget (USD)",
        min_value=Decimal("1"),
        max_digits=10,
        decimal_places=2,
        help_text="Compute plus LLM tokens, per calendar month (UTC).",
    )
    action = forms.ChoiceField(
        choices=Budget.Action.choices,
        initial=Budget.Action.NOTIFY,
        label="At 100 %",
        help_text="We always email at 80 % and at 100 %.",
    )

    def __init__(self, *args, organization, **kwargs):
        super().__init__(*args, **kwargs)
        from instances.models import Instance

        self.fields["instance"].queryset = (
            Instance.objects.filter(organization=organization)
            .exclude(status__in=["deleted", "purged"])
            .order_by("name")
        )
