from django import forms

from .models import ApiToken, Role


class OrganizationForm(forms.Form):
    name = forms.CharField(max_length=100, label="Organization name")
    slug = forms.SlugField(
        max_length=50,
        required=False,
        label="Address",
        help_text="Letters, numbers and hyphens. Leave empty to derive it from the name.",
    )


class RenameOrganizationForm(forms.Form):
    name = forms.CharField(max_length=100, label="Organization name")


class InviteForm(forms.Form):
    email = forms.EmailField(label="Email address")
    role = forms.ChoiceField(
        choices=[(r.value, r.label) for r in Role if r != Role.OWNER], initial=Role.MEMBER
    )


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class ApiTokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What will use it, e.g. “CRM sync”.")
    scopes = forms.MultipleChoiceField(
        choices=ApiToken.Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=["read"],
        help_text="read: see everything · operate: deploy and run instances · billing: plans.",
    )
    expires_at = forms.DateTimeField(
        required=False,
        label="Expires",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Optional. Leave empty for a token that lasts until revoked.",
    )


def apply_service_errors(form: forms.Form, exc) -> None:
    """Show a service's ValidationError inline on the form fields it names."""
    if hasattr(exc, "message_dict"):
        for field, messages in exc.message_dict.items():
            for message in messages:
                form.add_error(field if field in form.fields else None, message)
    else:
        for message in exc.messages:
            form.add_error(None, message)
