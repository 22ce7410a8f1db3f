from django import forms

from instances.rules import RETENTION_BOUNDS

from .models import Session

SORT_CHOICES = [
    ("recent", "Most recent"),
    ("oldest", "Oldest"),
    ("cost", "Cost (highest)"),
    ("cost_asc", "Cost (lowest)"),
    ("tokens", "Tokens"),
]


class SessionFilterForm(forms.Form):
    q = forms.CharField(required=False, label="Search", max_length=200)
    instance = forms.ChoiceField(required=False, label="Instance")
    channel = forms.ChoiceField(required=False, label="Channel")
    status = forms.ChoiceField(
        required=False, choices=[("", "Any status"), *Session.Status.choices], label="Status"
    )
    start = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    end = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )
    sort = forms.ChoiceField(required=False, choices=SORT_CHOICES, label="Sort")

    def __init__(self, *args, instances=(), channels=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["instance"].choices = [("", "All instances")] + [
            (str(i.pk), i.name) for i in instances
        ]
        self.fields["channel"].choices = [("", "Any channel")] + [(c, c) for c in channels]

    def clean(self):
        data = super().clean()
        if data.get("start") and data.get("end") and data["start"] > data["end"]:
            self.add_error("end", "The end date is before the start date.")
        return data


class RetentionForm(forms.Form):
    session_idle_days = forms.IntegerField(
        label="Prune sessions idle for more than (days)",
        min_value=RETENTION_BOUNDS["session_idle_days"][0],
        max_value=RETENTION_BOUNDS["session_idle_days"][1],
    )
    session_max_count = forms.IntegerField(
        label="Keep at most this many sessions",
        min_value=RETENTION_BOUNDS["session_max_count"][0],
        max_value=RETENTION_BOUNDS["session_max_count"][1],
    )
    archive_before_prune = forms.BooleanField(
        required=False,
        label="Archive in OpenClaw before deleting",
        help_text="Runs each session through OpenClaw's archive step first.",
    )
    support_transcript_access = forms.BooleanField(
        required=False,
        label="Let Clawfleet support read transcripts",
        help_text="Support can otherwise read a transcript only with a recorded reason.",
    )


class RestoreForm(forms.Form):
    confirm = forms.CharField(
        label="Type the instance name to confirm",
        max_length=64,
        help_text="Conversations and changes made after this backup will be replaced.",
    )

    def __init__(self, *args, instance=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.instance = instance

    def clean_confirm(self):
        value = (self.cleaned_data.get("confirm") or "").strip()
        if self.instance is not None and value != self.instance.name:
            raise forms.ValidationError(f"Type “{self.instance.name}” to confirm.")
        return value
