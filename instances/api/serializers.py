"""Serializers for instances and operations. Inputs and outputs are separate classes; secrets
(API keys, channel tokens, the gateway token) are write-only inputs and never part of an output.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from fleet.api import FlatRowsMixin, PublicTextField, non_blank_text, public_text
from instances import rules
from instances.models import Instance, Operation

# Operation params are free-form; anything that looks like a secret is never echoed.
_SECRET_HINTS = ("key", "token", "secret", "password")


class CpusField(serializers.DecimalField):
    """A number of CPUs from MIN_CPUS to MAX_CPUS (instances.rules), kept to two decimals: any
    number in that range is accepted, as the schema says, and 0.333 becomes 0.33."""

    def __init__(self, **kwargs):
        super().__init__(
            max_digits=4,
            decimal_places=2,
            min_value=rules.MIN_CPUS,
            max_value=rules.MAX_CPUS,
            coerce_to_string=False,
            rounding=ROUND_HALF_UP,
            **kwargs,
        )

    def validate_precision(self, value):
        # Round instead of refusing extra digits; the range is checked before rounding so that a
        # huge number never reaches the two-decimal quantize (it is refused here).
        if not rules.MIN_CPUS <= value <= rules.MAX_CPUS:
            raise serializers.ValidationError(
                f"Choose from {rules.MIN_CPUS} to {rules.MAX_CPUS} CPUs.", code="max_value"
            )
        return value


def memory_field(**kwargs) -> serializers.IntegerField:
    return serializers.IntegerField(
        min_value=rules.MIN_MEMORY_MB, max_value=rules.MAX_MEMORY_MB, **kwargs
    )


def name_field(**kwargs) -> serializers.RegexField:
    return serializers.RegexField(rules.NAME_PATTERN, max_length=rules.NAME_MAX_LENGTH, **kwargs)


class PriceField(serializers.DecimalField):
    """An own token price (instances/prices.py): USD per million tokens from 0 to 100000, null for
    "not set"; any number in that range is accepted, as the schema says, rounded to 4 decimals."""

    def __init__(self, **kwargs):
        super().__init__(
            max_digits=10,
            decimal_places=4,
            min_value=0,
            max_value=100000,
            coerce_to_string=False,
            rounding=ROUND_HALF_UP,
            required=False,
            allow_null=True,
            help_text="Your own price, USD per million tokens, for a model missing from our "
            "price table (null: not set).",
            **kwargs,
        )

    def validate_precision(self, value):
        if not 0 <= value <= 100000:
            raise serializers.ValidationError(
                "Enter a price from 0 to 100000 USD per million tokens.", code="max_value"
            )
        return value


def price_field() -> PriceField:
    return PriceField()


class InstanceSerializer(FlatRowsMixin, serializers.ModelSerializer):
    model_base_url = serializers.CharField(read_only=True)
    status_message = PublicTextField(help_text="What we last observed, in words.")
    has_api_key = serializers.SerializerMethodField(
        help_text="Whether a provider API key is stored (the key itself is never returned)."
    )
    price_source = serializers.SerializerMethodField(
        help_text='Where token prices come from: "own" (the price_* fields), "table" (our price '
        'table) or "none" (no price: costs show "no price", not $0).'
    )
    endpoint_url = serializers.CharField(
        read_only=True,
        allow_null=True,
        help_text="The instance's public HTTPS address through the edge proxy (Control UI, "
        "/v1/chat/completions with the gateway token); null once it is deleted.",
    )

    class Meta:
        model = Instance
        fields = [
            "id",
            "name",
            "endpoint_url",
            "external_id",
            "client_name",
            "openclaw_version",
            "previous_version",
            "desired_state",
            "status",
            "health",
            "status_message",
            "memory_mb",
            "cpus",
            "provider",
            "model_name",
            "model_base_url",
            "has_api_key",
            "price_input_per_mtok",
            "price_output_per_mtok",
            "price_cache_read_per_mtok",
            "price_cache_write_per_mtok",
            "price_source",
            "session_idle_days",
            "session_max_count",
            "archive_before_prune",
            "support_transcript_access",
            "last_ready_at",
            "running_since",
            "created_at",
            "updated_at",
            "deleted_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=["own", "table", "none"]))
    def get_price_source(self, obj) -> str:
        from billing.pricing import in_table, own_price, priced_models

        if own_price(obj) is not None:
            return "own"
        root = self.root  # one price table query per response, however many instances
        if not hasattr(root, "_priced_models"):
            root._priced_models = priced_models()
        return "table" if in_table(obj.provider, obj.model_name, root._priced_models) else "none"

    @extend_schema_field(serializers.BooleanField())
    def get_has_api_key(self, obj) -> bool:
        annotated = getattr(obj, "has_api_key", None)
        if annotated is not None:
            return bool(annotated)
        return bool(obj.provider_api_key)


class InstanceCreateSerializer(serializers.Serializer):
    """Deploy a new instance. The answer is 202 with the deploy operation."""

    name = name_field(
        help_text="1 to 40 lowercase letters, digits and hyphens; unique in the organization.",
    )
    openclaw_version = serializers.ChoiceField(
        choices=[], required=False, help_text="Defaults to the newest supported version."
    )
    memory_mb = memory_field(
        required=False, help_text=f"Defaults to {rules.DEFAULT_MEMORY_MB} (within your plan)."
    )
    cpus = CpusField(required=False, help_text="Defaults to 1 (within your plan).")
    provider = serializers.ChoiceField(choices=Instance.Provider.choices)
    model_name = non_blank_text(max_length=100)
    api_key = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=500,
        trim_whitespace=True,
        style={"input_type": "password"},
        help_text="The provider API key (required except for provider custom). Never returned.",
    )
    model_base_url = serializers.URLField(
        required=False, allow_blank=True, max_length=300, help_text="Required for custom."
    )
    channel_token = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=500,
        style={"input_type": "password"},
        help_text="A Telegram bot token: checked with Telegram (getMe) first, a refused one is "
        "a 400 and nothing is deployed; it becomes the instance's Telegram channel "
        "(/instances/{id}/channels). Never returned.",
    )
    external_id = serializers.CharField(
        required=False,
        allow_null=True,
        max_length=rules.EXTERNAL_ID_MAX_LENGTH,
        help_text="Your own id for this instance (e.g. your client's id); unique in the "
        "organization.",
    )
    client_name = serializers.CharField(
        required=False, allow_blank=True, max_length=rules.CLIENT_NAME_MAX_LENGTH
    )
    price_input_per_mtok = price_field()
    price_output_per_mtok = price_field()
    price_cache_read_per_mtok = price_field()
    price_cache_write_per_mtok = price_field()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["openclaw_version"].choices = settings.FLEET_OPENCLAW_VERSIONS

    def validate_external_id(self, value):
        value = (value or "").strip() or None
        organization = self.context.get("organization")
        if (
            value
            and organization is not None
            and Instance.objects.filter(organization=organization, external_id=value).exists()
        ):
            raise serializers.ValidationError("external_id already used", code="taken")
        return value


class InstanceUpdateSerializer(serializers.Serializer):
    """Partial update. Memory or CPU changes on a running instance queue a restart."""

    name = name_field()
    client_name = serializers.CharField(allow_blank=True, max_length=rules.CLIENT_NAME_MAX_LENGTH)
    external_id = serializers.CharField(
        allow_null=True, allow_blank=True, max_length=rules.EXTERNAL_ID_MAX_LENGTH
    )
    session_idle_days = serializers.IntegerField(
        min_value=rules.RETENTION_BOUNDS["session_idle_days"][0],
        max_value=rules.RETENTION_BOUNDS["session_idle_days"][1],
    )
    session_max_count = serializers.IntegerField(
        min_value=rules.RETENTION_BOUNDS["session_max_count"][0],
        max_value=rules.RETENTION_BOUNDS["session_max_count"][1],
    )
    archive_before_prune = serializers.BooleanField()
    support_transcript_access = serializers.BooleanField()
    memory_mb = memory_field()
    cpus = CpusField()
    price_input_per_mtok = price_field()
    price_output_per_mtok = price_field()
    price_cache_read_per_mtok = price_field()
    price_cache_write_per_mtok = price_field()

    def validate_external_id(self, value):
        value = (value or "").strip() or None
        organization = self.context.get("organization")
        instance = self.context.get("instance")
        if value and organization is not None:
            taken = Instance.objects.filter(organization=organization, external_id=value)
            if instance is not None:
                taken = taken.exclude(pk=instance.pk)
            if taken.exists():
                raise serializers.ValidationError("external_id already used", code="taken")
        return value


class InstanceUpgradeSerializer(serializers.Serializer):
    version = serializers.ChoiceField(choices=[], help_text="A supported OpenClaw version.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["version"].choices = settings.FLEET_OPENCLAW_VERSIONS


class OperationStepSerializer(serializers.Serializer):
    name = serializers.CharField()
    state = serializers.CharField()
    started_at = serializers.CharField(allow_null=True)
    finished_at = serializers.CharField(allow_null=True)
    detail = serializers.CharField(allow_blank=True)


class OperationSerializer(FlatRowsMixin, serializers.ModelSerializer):
    """An operation as listed (no steps)."""

    instance = serializers.UUIDField(source="instance_id", read_only=True)
    instance_name = serializers.SerializerMethodField()
    params = serializers.SerializerMethodField()
    error = PublicTextField(help_text="Why it failed, for people (empty unless it failed).")
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = Operation
        fields = [
            "id",
            "instance",
            "instance_name",
            "kind",
            "state",
            "params",
            "error",
            "requested_via",
            "created_at",
            "started_at",
            "finished_at",
            "duration_seconds",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField())
    def get_instance_name(self, obj) -> str:
        annotated = getattr(obj, "instance_name", None)
        return annotated if annotated is not None else obj.instance.name

    @extend_schema_field(serializers.DictField())
    def get_params(self, obj) -> dict:
        return {
            k: v
            for k, v in (obj.params or {}).items()
            if not any(hint in k.lower() for hint in _SECRET_HINTS)
        }


class OperationDetailSerializer(OperationSerializer):
    """An operation with its progress steps."""

    steps = serializers.SerializerMethodField()

    class Meta(OperationSerializer.Meta):
        fields = [*OperationSerializer.Meta.fields, "steps"]
        read_only_fields = fields

    @extend_schema_field(OperationStepSerializer(many=True))
    def get_steps(self, obj) -> list:
        keys = ("name", "state", "started_at", "finished_at", "detail")
        rows = [{k: step.get(k, "" if k == "detail" else None) for k in keys} for step in obj.steps]
        for row in rows:
            row["detail"] = public_text(row["detail"]) or ""
        return rows


class GatewayTokenSerializer(serializers.Serializer):
    token = serializers.CharField(
        read_only=True, help_text="The new gateway token: shown once, store it now."
    )
    applied = serializers.ChoiceField(
        choices=["hot", "at next start"],
        read_only=True,
        help_text="hot: the running gateway already refuses the old token (no restart).",
    )


class SignInLinkSerializer(serializers.Serializer):
    url = serializers.CharField(
        read_only=True,
        help_text="Opens the Control UI at the public address, signed in. One use only.",
    )
    expires_at = serializers.DateTimeField(read_only=True)
