"""Channel serializers: secrets are write-only inputs, never part of an output."""

from __future__ import annotations

from rest_framework import serializers

from fleet.api import PublicTextField, non_blank_text

from ..models import Channel


def sender_field() -> serializers.RegexField:
    return serializers.RegexField(r"^[^\s\u0000]{1,64}$", max_length=64)


class ChannelSerializer(serializers.ModelSerializer):
    instance = serializers.UUIDField(source="instance_id", read_only=True)
    healthy = serializers.BooleanField(read_only=True)
    last_error = PublicTextField(read_only=True, help_text="OpenClaw's reason, when broken.")

    class Meta:
        model = Channel
        fields = [
            "id",
            "instance",
            "kind",
            "account_id",
            "bot_name",
            "dm_policy",
            "allow_from",
            "status",
            "healthy",
            "last_error",
            "last_checked_at",
            "applied_at",
            "created_at",
        ]
        read_only_fields = fields


class ChannelCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=Channel.Kind.choices)
    token = non_blank_text(
        max_length=300,
        write_only=True,
        help_text="The bot token (Telegram: BotFather's; Discord: the bot's; Slack: xoxb-). "
        "Checked with the provider before anything is stored. Never returned.",
    )
    app_token = serializers.RegexField(
        r"^[^\u0000]*$",
        max_length=300,
        required=False,
        allow_blank=True,
        write_only=True,
        help_text="Slack only: the app-level token (xapp-) for socket mode. Never returned.",
    )
    dm_policy = serializers.ChoiceField(
        choices=Channel.DmPolicy.choices, required=False, default=Channel.DmPolicy.PAIRING
    )
    allow_from = serializers.ListField(
        child=sender_field(),
        required=False,
        default=list,
        max_length=200,
        help_text="Sender ids allowed to talk to the bot (needed for the allowlist policy).",
    )


class ChannelUpdateSerializer(serializers.Serializer):
    dm_policy = serializers.ChoiceField(choices=Channel.DmPolicy.choices)
    allow_from = serializers.ListField(
        child=sender_field(), required=False, default=list, max_length=200
    )


class PairingRequestSerializer(serializers.Serializer):
    request_id = serializers.CharField()
    sender_id = serializers.CharField()
    name = serializers.CharField()
    created_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)


class PairingDecisionSerializer(serializers.Serializer):
    request_id = non_blank_text(max_length=128, help_text="From the pairing list.")
