"""/api/v1: the current organization, its members, its API tokens and its audit log."""

from __future__ import annotations

from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts import roles, services
from accounts.api.base import FleetCursorPagination, FleetFilterBackend, StrictBooleanFilter
from accounts.models import ApiToken, AuditEvent, Membership, Organization, Role

from .base import OrganizationApiViewSet
from .serializers import (
    ApiTokenCreatedSerializer,
    ApiTokenCreateSerializer,
    ApiTokenSerializer,
    AuditEventSerializer,
    MemberSerializer,
    OrganizationSerializer,
)


class OrganizationViewSet(OrganizationApiViewSet):
    """The organization the caller acts in (the token's, or the signed-in member's current one)."""

    queryset = Organization.objects.all()
    # Organization has no `organization` field; reaching itself through its memberships keeps the
    # tenancy guard meaningful if get_queryset is ever used here (retrieve does not need it).
    organization_lookup = "memberships__organization"
    serializer_class = OrganizationSerializer
    pagination_class = None
    filter_backends: list = []

    def scope_queryset(self, queryset):
        return queryset.distinct()

    @extend_schema(summary="The current organization", operation_id="organization_retrieve")
    def retrieve(self, request, *args, **kwargs):
        return Response(self.get_serializer(self.organization).data)


class MemberFilter(filters.FilterSet):
    role = filters.ChoiceFilter(choices=Role.choices)

    class Meta:
        model = Membership
        fields = ["role"]


@extend_schema_view(
    list=extend_schema(summary="List the members of the organization"),
    retrieve=extend_schema(summary="One member"),
)
class MemberViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrganizationApiViewSet):
    queryset = Membership.objects.all()
    serializer_class = MemberSerializer
    filterset_class = MemberFilter
    ordering_fields = ["created_at", "user__email"]
    ordering = ["user__email"]

    def scope_queryset(self, queryset):
        return queryset.select_related("user")


class ApiTokenFilter(filters.FilterSet):
    active = StrictBooleanFilter(field_name="revoked_at", lookup_expr="isnull", label="Active")

    class Meta:
        model = ApiToken
        fields = ["active"]


_TOKEN_EXAMPLE = {
    "id": "6f1c0a52-9d43-4a8e-8a57-2b8f0d0e9c11",
    "name": "CI deploys",
    "prefix": "cf_live_Ab3dE5gH…",
    "scopes": ["read", "operate"],
    "is_active": True,
    "created_by": "alice@example.com",
    "created_at": "2026-11-25T10:00:00Z",
    "expires_at": None,
    "revoked_at": None,
    "last_used_at": None,
}


@extend_schema_view(
    list=extend_schema(summary="List the organization's API tokens (never their secrets)"),
    retrieve=extend_schema(summary="One API token"),
    create=extend_schema(
        summary="Create an API token: the secret is in this response only",
        request=ApiTokenCreateSerializer,
        responses={201: ApiTokenCreatedSerializer},
        examples=[
            OpenApiExample(
                "Create a token",
                value={"name": "CI deploys", "scopes": ["read", "operate"]},
                request_only=True,
            ),
            OpenApiExample(
                "Created",
                value={**_TOKEN_EXAMPLE, "secret": "cf_live_Ab3dE5gH…(43 characters)"},
                response_only=True,
                status_codes=["201"],
            ),
        ],
    ),
    destroy=extend_schema(summary="Revoke an API token", responses={204: None}),
    revoke=extend_schema(
        summary="Revoke an API token", request=None, responses={200: ApiTokenSerializer}
    ),
)
class ApiTokenViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrganizationApiViewSet):
    """Managing tokens needs every scope (a token may not mint a stronger one) or, for a signed-in
    member, the owner or admin role."""

    queryset = ApiToken.objects.all()
    serializer_class = ApiTokenSerializer
    filterset_class = ApiTokenFilter
    ordering_fields = ["created_at", "name", "last_used_at"]
    ordering = ["-created_at"]
    idempotency_redact = ("secret",)
    action_permissions = dict.fromkeys(
        ("list", "retrieve", "create", "destroy", "revoke"), roles.MANAGE_TOKENS
    )

    def scope_queryset(self, queryset):
        return queryset.select_related("created_by")

    def create(self, request, *args, **kwargs):
        data = ApiTokenCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        token, secret = services.api_token_create(
            actor=self.actor, organization=self.organization, **data.validated_data
        )
        body = ApiTokenCreatedSerializer(token).data
        body["secret"] = secret
        return Response(body, status=status.HTTP_201_CREATED)

    def destroy(self, request, *args, **kwargs):
        services.api_token_revoke(actor=self.actor, token=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @action(detail=True, methods=["post"])
    def revoke(self, request, *args, **kwargs):
        token = services.api_token_revoke(actor=self.actor, token=self.get_object())
        return Response(ApiTokenSerializer(token).data)


class AuditEventFilter(filters.FilterSet):
    action = filters.CharFilter(help_text="Exact action, e.g. instance.deployed")
    target_type = filters.CharFilter()
    target_id = filters.CharFilter()

    class Meta:
        model = AuditEvent
        fields = ["action", "target_type", "target_id"]


class AuditCursorPagination(FleetCursorPagination):
    ordering = ("-created_at", "-id")


@extend_schema_view(
    list=extend_schema(summary="The organization's audit log, newest first (cursor pages)"),
    retrieve=extend_schema(summary="One audit event"),
)
class AuditEventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrganizationApiViewSet):
    """Who did what. Same audience as the dashboard's audit log (owners and admins); a token needs
    every scope."""

    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilter
    filter_backends = [FleetFilterBackend]
    pagination_class = AuditCursorPagination
    action_permissions = {"list": roles.MANAGE_TOKENS, "retrieve": roles.MANAGE_TOKENS}

    def scope_queryset(self, queryset):
        return queryset.select_related("actor", "actor_token")
