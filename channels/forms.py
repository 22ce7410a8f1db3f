from django import forms

from .models import Channel


class ConnectForm(forms.Form):
    kind = forms.ChoiceField(choices=Channel.Kind.choices, initial=Channel.Kind.TELEGRAM)
    token = forms.CharField(
        label="Bot token",
        max_length=300,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Telegram: the token BotFather gave you. Discord: the bot's token. Slack: the "
        "bot token (xoxb-). We check it with the provider before saving it.",
    )
    app_token = forms.CharField(
        label="Slack app-level token",
        max_length=300,
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Slack only (socket mode, xapp-).",
    )
    dm_policy = forms.ChoiceField(
        label="Who may talk to the bot",
        choices=Channel.DmPolicy.choices,
        initial=Channel.DmPolicy.PAIRING,
    )
    allow_from = forms.CharField(
        label="Allowed sender ids",
        required=False,
        max_length=4000,
        help_text="For the allowlist policy: user ids separated by spaces or commas.",
    )


class PolicyForm(forms.Form):
    dm_policy = forms.ChoiceField(label="Who may talk to the bot", choices=Channel.DmPolicy.choices)
    allow_from = forms.CharField(label="Allowed sender ids", required=False, max_length=4000)
