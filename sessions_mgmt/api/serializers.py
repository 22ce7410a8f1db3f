"""Serializers for sessions (with one transcript page) and backups."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from fleet.api import FlatRowsMixin, PublicTextField, public_text
from sessions_mgmt.models import Backup, Session


class SessionSerializer(FlatRowsMixin, serializers.ModelSerializer):
    instance = serializers.UUIDField(source="instance_id", read_only=True)
    instance_name = serializers.CharField(read_only=True)
    total_tokens = serializers.IntegerField(read_only=True)
    cost_usd = serializers.DecimalField(
        max_digits=14, decimal_places=6, read_only=True, coerce_to_string=True
    )

    class Meta:
        model = Session
        fields = [
            "id",
            "instance",
            "instance_name",
            "session_key",
            "agent_id",
            "channel",
            "model",
            "status",
            "started_at",
            "last_activity_at",
            "message_count",
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "total_tokens",
            "cost_usd",
            "pruned_at",
        ]
        read_only_fields = fields


class TranscriptMessageSerializer(serializers.Serializer):
    id = serializers.CharField()
    role = serializers.CharField()
    text = serializers.CharField(allow_blank=True)
    at = serializers.DateTimeField(allow_null=True)
    model = serializers.CharField(allow_blank=True)
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()


class TranscriptPageSerializer(serializers.Serializer):
    messages = TranscriptMessageSerializer(many=True, help_text="Oldest first.")
    before = serializers.IntegerField(
        allow_null=True,
        help_text="Pass as ?before= to get the previous (older) page; null on the first page.",
    )


class SessionDetailSerializer(SessionSerializer):
    transcript = serializers.SerializerMethodField()
    transcript_error = serializers.SerializerMethodField()

    class Meta(SessionSerializer.Meta):
        fields = [*SessionSerializer.Meta.fields, "transcript", "transcript_error"]
        read_only_fields = fields

    @extend_schema_field(TranscriptPageSerializer(allow_null=True))
    def get_transcript(self, obj):
        page = self.context.get("transcript")
        return TranscriptPageSerializer(page).data if page is not None else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_transcript_error(self, obj):
        return public_text(self.context.get("transcript_error"))


class BackupSerializer(FlatRowsMixin, serializers.ModelSerializer):
    instance = serializers.UUIDField(source="instance_id", read_only=True)
    instance_name = serializers.CharField(read_only=True)
    operation = serializers.UUIDField(source="operation_id", read_only=True, allow_null=True)
    error = PublicTextField(help_text="Why it failed, for people (empty unless it failed).")
    restorable = serializers.BooleanField(
        read_only=True,
        help_text="A restore can choose this point (nightly, point in time, manual or safety).",
    )

    class Meta:
        model = Backup
        fields = [
            "id",
            "instance",
            "instance_name",
            "kind",
            "state",
            "restorable",
            "size_bytes",
            "sha256",
            "session_count",
            "openclaw_version",
            "verified_at",
            "error",
            "operation",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields


class BackupCreateSerializer(serializers.Serializer):
    instance = serializers.UUIDField(help_text="The instance to back up.")
