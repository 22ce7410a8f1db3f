"""Serializers for /api/v1/usage: costs per day and per instance over a date range."""

from __future__ import annotations

from rest_framework import serializers

MAX_RANGE_DAYS = 366


def _usd(**kwargs):
    return serializers.DecimalField(max_digits=16, decimal_places=6, **kwargs)


class UsageQuerySerializer(serializers.Serializer):
    # `from` is a Python keyword: declared through the fields dict below.
    to = serializers.DateField(required=False, help_text="Last day, inclusive (default: today).")
    instance = serializers.UUIDField(required=False, help_text="Only this instance.")

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = serializers.DateField(
            required=False, help_text="First day, inclusive (default: the first of this month)."
        )
        return fields


class UsageTotalsSerializer(serializers.Serializer):
    compute_usd = _usd()
    llm_usd = _usd()
    total_usd = _usd()
    running_hours = serializers.DecimalField(max_digits=16, decimal_places=2)
    tokens = serializers.IntegerField()


class UsageDaySerializer(serializers.Serializer):
    day = serializers.DateField()
    compute_usd = _usd()
    llm_usd = _usd()
    total_usd = _usd()


class UsageInstanceSerializer(UsageTotalsSerializer):
    instance = serializers.UUIDField()
    instance_name = serializers.CharField()
    client_name = serializers.CharField(allow_blank=True)


class UsageSerializer(serializers.Serializer):
    to = serializers.DateField()
    instance = serializers.UUIDField(allow_null=True)
    currency = serializers.CharField()
    totals = UsageTotalsSerializer()
    days = UsageDaySerializer(many=True, help_text="Every day of the range, zeros included.")
    instances = UsageInstanceSerializer(many=True, help_text="Most expensive first.")

    def get_fields(self):
        fields = super().get_fields()
        return {"from": serializers.DateField(), **fields}
