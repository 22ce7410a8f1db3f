"""Serializers for /api/v1/usage: costs per day and per instance over a date range."""

from __future__ import annotations

from django.utils import timezone
from rest_framework import serializers

from billing import rules
from billing.services import exports


def _usd(**kwargs):
    return serializers.DecimalField(max_digits=16, decimal_places=6, **kwargs)


class _Present:
    """A query parameter that may be left out, but not sent empty (`?from=` is an error with a
    message, not "the default"): DRF reads an empty optional value as absent otherwise."""

    blank_message = "Leave the parameter out instead of sending it empty."

    def get_value(self, dictionary):
        if self.field_name in dictionary and dictionary.get(self.field_name) == "":
            return ""
        return super().get_value(dictionary)

    def to_internal_value(self, data):
        if data == "":
            raise serializers.ValidationError(self.blank_message, code="blank")
        return super().to_internal_value(data)


class QueryDateField(_Present, serializers.DateField):
    blank_message = "Enter a date as YYYY-MM-DD, or leave the parameter out."


class QueryUUIDField(_Present, serializers.UUIDField):
    blank_message = "Enter an instance id, or leave the parameter out."


class UsageQuerySerializer(serializers.Serializer):
    """?from=&to=&instance=: the range defaults to this month up to today; at most
    rules.USAGE_MAX_RANGE_DAYS days."""

    # `from` is a Python keyword: declared through the fields dict below.
    to = QueryDateField(required=False, help_text="Last day, inclusive (default: today).")
    instance = QueryUUIDField(required=False, help_text="Only this instance.")

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = QueryDateField(
            required=False, help_text="First day, inclusive (default: the first of this month)."
        )
        return fields

    def validate(self, attrs):
        end = attrs.get("to") or timezone.localdate()
        start = attrs.get("from") or end.replace(day=1)
        if start > end:
            raise serializers.ValidationError({"from": [rules.USAGE_ORDER_MESSAGE]})
        if (end - start).days + 1 > rules.USAGE_MAX_RANGE_DAYS:
            raise serializers.ValidationError({"from": [rules.USAGE_RANGE_MESSAGE]})
        return {**attrs, "from": start, "to": end}


class QueryChoiceField(_Present, serializers.ChoiceField):
    blank_message = "Choose one of the listed values, or leave the parameter out."


class UsageExportQuerySerializer(UsageQuerySerializer):
    """?from=&to=&group_by=&format=: the usage endpoint's range rules, one grouping, one format
    (billing.services.exports; the columns are in docs/billing.md)."""

    instance = None
    group_by = QueryChoiceField(
        choices=["client", "instance", "session", "model", "channel"],
        required=False,
        help_text="Group rows by this (default client).",
    )
    format = QueryChoiceField(
        choices=["csv", "json"], required=False, help_text="csv (default) or json."
    )

    def validate(self, attrs):
        attrs = super().validate(attrs)
        return {"group_by": "client", "format": "csv", **attrs}


class UsageExportTotalsSerializer(serializers.Serializer):
    """The measures of a row, summed over the whole export."""

    running_seconds = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cache_read_tokens = serializers.IntegerField()
    cache_write_tokens = serializers.IntegerField()
    compute_usd = _usd()
    llm_usd = _usd()
    total_usd = _usd()


class UsageExportRowSerializer(UsageExportTotalsSerializer):
    """One row: the grouping's key columns beside the measures (every column is in `columns`)."""

    kind = serializers.ChoiceField(choices=list(exports.ROW_KINDS), required=False)
    client = serializers.CharField(required=False, allow_blank=True)
    instance_id = serializers.CharField(required=False)
    instance_name = serializers.CharField(required=False)
    session_key = serializers.CharField(required=False, allow_blank=True)
    provider = serializers.CharField(required=False, allow_blank=True)
    model = serializers.CharField(required=False, allow_blank=True)
    channel = serializers.CharField(required=False, allow_blank=True)


class UsageExportSerializer(serializers.Serializer):
    to = serializers.DateField()
    group_by = serializers.CharField()
    currency = serializers.CharField()
    columns = serializers.ListField(child=serializers.CharField())
    rows = UsageExportRowSerializer(many=True)
    totals = UsageExportTotalsSerializer()

    def get_fields(self):
        fields = super().get_fields()
        return {"from": serializers.DateField(), **fields}


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
