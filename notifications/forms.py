from django import forms

from . import events


class WebhookEndpointForm(forms.Form):
    url = forms.URLField(
        max_length=500,
        label="URL",
        help_text="Your own server on the internet; events are POSTed as signed JSON.",
        assume_scheme="https",
    )
    events = forms.MultipleChoiceField(
        choices=sorted(events.WEBHOOK_EVENTS.items()),
        widget=forms.CheckboxSelectMultiple,
        label="Events",
    )
    description = forms.CharField(max_length=200, required=False)


class PreferencesForm(forms.Form):
    """One checkbox per email kind: checked means "send me these"."""

    def __init__(self, *args, opted_out=(), **kwargs):
        super().__init__(*args, **kwargs)
        for kind, label in events.EMAIL_KINDS.items():
            self.fields[kind] = forms.BooleanField(
                label=label, required=False, initial=kind not in opted_out
            )
