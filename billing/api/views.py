"""/api/v1/usage: what the organization's instances cost, per day and per instance."""

from __future__ import annotations

from decimal import Decimal

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import permissions
from rest_framework.exceptions import NotFound
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from accounts import roles
from accounts.api.base import OrganizationApiViewSet
from accounts.tenancy import ScopedPermission
from billing import capabilities, selectors
from billing.models import UsageDay
from billing.services import exports

from .serializers import (
    UsageExportQuerySerializer,
    UsageExportSerializer,
    UsageQuerySerializer,
    UsageSerializer,
)

_ZERO = Decimal("0")


class BillingScopePermission(permissions.BasePermission):
    """A token needs the billing scope. A signed-in member goes by role: every role may see
    costs (roles.VIEW_USAGE covers them), which ScopedPermission already checks."""

    message = "This token needs the billing scope."

    def has_permission(self, request, view):
        token = getattr(request, "auth", None)
        if token is not None and hasattr(token, "scopes"):
            return roles.scopes_allow(token.scopes, roles.VIEW_USAGE)
        return True


@extend_schema(
    summary="Costs per day and per instance over a date range",
    parameters=[UsageQuerySerializer],
    responses={200: UsageSerializer},
    examples=[
        OpenApiExample(
            "Two days of one instance",
            value={
                "from": "2026-11-01",
                "to": "2026-11-02",
                "instance": None,
                "currency": "USD",
                "totals": {
                    "compute_usd": "0.480000",
                    "llm_usd": "1.250000",
                    "total_usd": "1.730000",
                    "running_hours": "48.00",
                    "tokens": 812345,
                },
                "days": [
                    {
                        "day": "2026-11-01",
                        "compute_usd": "0.240000",
                        "llm_usd": "0.500000",
                        "total_usd": "0.740000",
                    },
                    {
                        "day": "2026-11-02",
                        "compute_usd": "0.240000",
                        "llm_usd": "0.750000",
                        "total_usd": "0.990000",
                    },
                ],
                "instances": [
                    {
                        "instance": "5d0c2f0e-8a4b-4c3e-9b8e-2f1d7c6a9e10",
                        "instance_name": "acme-support",
                        "client_name": "Acme Ltd",
                        "compute_usd": "0.480000",
                        "llm_usd": "1.250000",
                        "total_usd": "1.730000",
                        "running_hours": "48.00",
                        "tokens": 812345,
                    }
                ],
            },
            response_only=True,
        )
    ],
)
class UsageViewSet(OrganizationApiViewSet):
    queryset = UsageDay.objects.all()
    permission_classes = [permissions.IsAuthenticated, ScopedPermission, BillingScopePermission]
    action_permissions = {"retrieve": roles.VIEW_USAGE}
    serializer_class = UsageSerializer
    pagination_class = None
    filter_backends: list = []

    def retrieve(self, request, *args, **kwargs):
        query = UsageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        start, end = query.validated_data["from"], query.validated_data["to"]
        instance = None
        instance_id = query.validated_data.get("instance")
        if instance_id is not None:
            # Another organization's instance, or none at all: a 404, like every detail path.
            instance = (
                capabilities.instances(self.organization.pk, include_deleted=True)
                .filter(pk=instance_id)
                .first()
            )
            if instance is None:
                raise NotFound("No such instance.")

        per_instance = selectors.usage_by_instance(
            organization=self.organization, start=start, end=end, instance=instance
        )
        instances = [
            {
                "instance": r["instance_id"],
                "instance_name": r["instance__name"],
                "client_name": r["instance__client_name"],
                "compute_usd": r["compute_usd"] or _ZERO,
                "llm_usd": r["llm_usd"] or _ZERO,
                "total_usd": r["total_usd"] or _ZERO,
                "running_hours": Decimal(r["running_seconds"] or 0) / 3600,
                "tokens": r["tokens"] or 0,
            }
            for r in per_instance
        ]
        days = selectors.daily_costs(
            organization=self.organization, start=start, end=end, instance=instance
        )
        totals = {
            key: sum((r[key] for r in instances), _ZERO)
            for key in ("compute_usd", "llm_usd", "total_usd", "running_hours")
        }
        totals["tokens"] = sum(r["tokens"] for r in instances)
        body = {
            "from": start,
            "to": end,
            "instance": instance.pk if instance else None,
            "currency": "USD",
            "totals": totals,
            "days": days,
            "instances": instances,
        }
        return Response(UsageSerializer(body).data)


_EXPORT_CSV = (
    "client,running_seconds,input_tokens,output_tokens,cache_read_tokens,cache_write_tokens,"
    "compute_usd,llm_usd,total_usd\r\n"
    "Acme Ltd,172800,120000,30000,0,0,0.480000,1.250000,1.730000\r\n"
)


@extend_schema(
    summary="Chargeback export: costs of a period grouped by client, instance, session, model "
    "or channel, as CSV or JSON (streamed)",
    parameters=[UsageExportQuerySerializer],
    responses={
        (200, "text/csv"): OpenApiTypes.STR,
        (200, "application/json"): UsageExportSerializer,
    },
    examples=[
        OpenApiExample(
            "By client, CSV", value=_EXPORT_CSV, response_only=True, media_type="text/csv"
        ),
    ],
)
class UsageExportViewSet(OrganizationApiViewSet):
    """GET /api/v1/usage/export: the usage endpoint's ledger, row by row (the totals agree with
    it to the cent). `format` is our own parameter, not DRF's renderer override: errors are
    always the JSON error shape."""

    queryset = UsageDay.objects.all()
    permission_classes = [permissions.IsAuthenticated, ScopedPermission, BillingScopePermission]
    action_permissions = {"retrieve": roles.VIEW_USAGE}
    pagination_class = None
    filter_backends: list = []

    def perform_content_negotiation(self, request, force=False):
        return (JSONRenderer(), JSONRenderer.media_type)

    def retrieve(self, request, *args, **kwargs):
        query = UsageExportQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        start, end = query.validated_data["from"], query.validated_data["to"]
        return export_response(
            organization=self.organization,
            start=start,
            end=end,
            group_by=query.validated_data["group_by"],
            fmt=query.validated_data["format"],
        )


def export_response(*, organization, start, end, group_by: str, fmt: str):
    """The streamed download, for the API and the dashboard alike."""
    writer = exports.stream_json if fmt == "json" else exports.stream_csv
    response = StreamingHttpResponse(
        (
            chunk.encode()
            for chunk in writer(organization=organization, start=start, end=end, group_by=group_by)
        ),
        content_type="application/json" if fmt == "json" else "text/csv; charset=utf-8",
    )
    name = exports.filename(start=start, end=end, group_by=group_by, fmt=fmt)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "no-store"
    return response
