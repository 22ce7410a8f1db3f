"""Dashboard forms for instances.

The forms only shape the input; the services validate it (names, versions, keys, the plan) and
their ValidationError is shown inline with accounts.forms.apply_service_errors. So the dashboard,
the API and admin reject the same input with the same words.
"""

from django import forms
from django.conf import settings

from . import rules
from .models import Instance

PROVIDER_HINTS = {
    Instance.Provider.OPENAI: "gpt-4o-mini",
    Instance.Provider.ANTHROPIC: "claude-sonnet-4-5",
    Instance.Provider.OPENROUTER: "openai/gpt-4o-mini",
    Instance.Provider.CUSTOM: "llama-3.1-8b-instruct",
}


def version_choices():
    versions = list(settings.FLEET_OPENCLAW_VERSIONS)
    return [
        (v, f"{v} (recommended)" if v == settings.FLEET_DEFAULT_VERSION else v) for v in versions
    ]


class DeployForm(forms.Form):
    name = forms.CharField(
        label="Name",
        max_length=rules.NAME_MAX_LENGTH,
        help_text="Lowercase letters, digits and hyphens, e.g. <code>support-bot</code>. "
        "Shown in the dashboard and the API.",
        widget=forms.TextInput(
            attrs={"autocomplete": "off", "spellcheck": "false", "placeholder": "my-assistant"}
        ),
    )
    client_name = forms.CharField(
        label="Client (optional)",
        max_length=rules.CLIENT_NAME_MAX_LENGTH,
        required=False,
        help_text="Agencies: the customer this assistant is for. Instances are grouped by it.",
    )
    provider = forms.ChoiceField(
        label="Model provider",
        choices=Instance.Provider.choices,
        initial=Instance.Provider.OPENAI,
        widget=forms.RadioSelect,
    )
    model_name = forms.CharField(
        label="Model",
        max_length=100,
        initial=PROVIDER_HINTS[Instance.Provider.OPENAI],
        help_text="The model id exactly as your provider names it.",
        widget=forms.TextInput(attrs={"spellcheck": "false"}),
    )
    model_base_url = forms.CharField(
        label="Base URL",
        required=False,
        max_length=300,
        help_text="Custom endpoint only: the OpenAI-compatible API root, "
        "e.g. <code>https://llm.example.com/v1</code>.",
        widget=forms.URLInput(attrs={"placeholder": "https://llm.example.com/v1"}),
    )
    api_key = forms.CharField(
        label="API key",
        required=False,
        help_text="Stored encrypted and written only into your instance's own config. "
        "Optional for a custom endpoint without authentication.",
        widget=forms.PasswordInput(attrs={"autocomplete": "off"}, render_value=False),
    )
    channel_token = forms.CharField(
        label="Telegram bot token (optional)",
        required=False,
        help_text="The token BotFather gave you, if you want the assistant on Telegram now; "
        "we check it with Telegram first. Discord, Slack and more Telegram settings: on the "
        "instance's Channels page after the deploy.",
        widget=forms.PasswordInput(attrs={"autocomplete": "off"}, render_value=False),
    )
    # A CharField with a select, so an unknown version reaches the service and gets its message.
    openclaw_version = forms.CharField(label="OpenClaw version", required=False)
    memory_mb = forms.IntegerField(
        label="Memory (MB)", required=False, help_text="Leave empty for your plan's default."
    )
    cpus = forms.DecimalField(
        label="CPUs", required=False, max_digits=4, decimal_places=2, help_text="e.g. 1 or 0.5"
    )

    price_input_per_mtok = forms.CharField(
        label="Input price (USD per million tokens, optional)",
        required=False,
        help_text="For a custom or self-hosted model our price table lacks: your own prices "
        "price its conversations (and OpenClaw's own estimate). Empty: our table's price, or "
        '"no price".',
    )
    price_output_per_mtok = forms.CharField(
        label="Output price (USD per million tokens, optional)", required=False
    )
    price_cache_read_per_mtok = forms.CharField(
        label="Cache read price (USD per million tokens, optional)", required=False
    )
    price_cache_write_per_mtok = forms.CharField(
        label="Cache write price (USD per million tokens, optional)", required=False
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["openclaw_version"].widget = forms.Select(choices=version_choices())
        self.fields["openclaw_version"].initial = settings.FLEET_DEFAULT_VERSION

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        return {
            "name": data["name"],
            "client_name": data.get("client_name") or "",
            "provider": data["provider"],
            "model_name": data["model_name"],
            "model_base_url": data.get("model_base_url") or "",
            "api_key": data.get("api_key") or "",
            "channel_token": data.get("channel_token") or "",
            "openclaw_version": data.get("openclaw_version") or None,
            "memory_mb": data.get("memory_mb"),
            "cpus": data.get("cpus"),
            "prices": {k: data.get(k) or None for k in PRICE_FIELDS},
        }


PRICE_FIELDS = (
    "price_input_per_mtok",
    "price_output_per_mtok",
    "price_cache_read_per_mtok",
    "price_cache_write_per_mtok",
)


class PricesForm(forms.Form):
    """The instance page's own token prices (instances/prices.py validates them)."""

    price_input_per_mtok = forms.CharField(label="Input, USD per million tokens", required=False)
    price_output_per_mtok = forms.CharField(label="Output, USD per million tokens", required=False)
    price_cache_read_per_mtok = forms.CharField(label="Cache read", required=False)
    price_cache_write_per_mtok = forms.CharField(label="Cache write", required=False)


class UpgradeForm(forms.Form):
    version = forms.CharField(label="Version")

    def __init__(self, *args, current: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        choices = [(v, label) for v, label in version_choices() if v != current]
        self.fields["version"].widget = forms.Select(choices=choices)


class DeleteForm(forms.Form):
    confirm = forms.CharField(
        label="Type the instance name to confirm",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )

    def __init__(self, *args, instance: Instance, **kwargs):
        self.instance = instance
        super().__init__(*args, **kwargs)

    def clean_confirm(self):
        value = self.cleaned_data["confirm"].strip()
        if value != self.instance.name:
            raise forms.ValidationError(
                f"Type {self.instance.name} exactly to delete this instance."
            )
        return value


class RevealTokenForm(forms.Form):
    understood = forms.BooleanField(
        label="I understand that anyone with this token can use my assistant and its key.",
        required=True,
    )
