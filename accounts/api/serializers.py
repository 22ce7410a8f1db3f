"""Serializers for the organization, members, API tokens and audit events."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import ApiToken, AuditEvent, Membership, Organization
from fleet.api import non_blank_text


class OrganizationSerializer(serializers.ModelSerializer):
    billing_email = serializers.CharField(read_only=True)

    class Meta:
        model = Organization
        fields = ["id", "name", "slug", "kind", "billing_email", "created_at"]
        read_only_fields = fields


class MemberSerializer(serializers.ModelSerializer):
    email = serializers.EmailField(source="user.email", read_only=True)
    name = serializers.SerializerMethodField()

    class Meta:
        model = Membership
        fields = ["id", "email", "name", "role", "created_at"]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField())
    def get_name(self, obj) -> str:
        return obj.user.get_full_name()


class ApiTokenSerializer(serializers.ModelSerializer):
    """A token as listed: never its secret (only a hash is stored)."""

    prefix = serializers.CharField(source="display", read_only=True)
    is_active = serializers.BooleanField(read_only=True)
    created_by = serializers.CharField(
        source="created_by.email", read_only=True, default=None, allow_null=True
    )

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "prefix",
            "scopes",
            "is_active",
            "created_by",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
        ]
        read_only_fields = fields

    def get_fields(self):
        fields = super().get_fields()
        fields["scopes"] = serializers.ListField(
            child=serializers.ChoiceField(choices=ApiToken.Scope.choices), read_only=True
        )
        return fields


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    """The answer to a create: the only time the secret is shown."""

    secret = serializers.CharField(
        read_only=True,
        allow_null=True,
        help_text="The token. Shown once, never stored in clear: keep it now. "
        "(null in an Idempotency-Key replay.)",
    )

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class ApiTokenCreateSerializer(serializers.Serializer):
    name = non_blank_text(max_length=100, help_text="What uses the token.")
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=ApiToken.Scope.choices),
        min_length=1,
        max_length=3,
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True)

    def validate_name(self, value: str) -> str:
        value = value.strip()
        if not value:
            raise serializers.ValidationError("Name the token after what uses it.")
        return value


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.SerializerMethodField()

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "action",
            "actor",
            "target_type",
            "target_id",
            "target_repr",
            "data",
            "ip",
            "created_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField())
    def get_actor(self, obj) -> str:
        if obj.actor_id:
            return obj.actor.email
        if obj.actor_token_id:
            return f"token {obj.actor_token.name}"
        return "system"
