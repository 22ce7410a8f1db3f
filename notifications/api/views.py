"""/api/v1/webhooks (endpoints) and /api/v1/webhook-deliveries (what was sent, redeliver).

Managing webhooks is roles.MANAGE_TOKENS: owners and admins, or a token holding every scope (a
webhook secret is a credential, like a token)."""

from __future__ import annotations

from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts import roles
from accounts.api.base import OrganizationApiViewSet
from fleet.api import Conflict

from .. import services
from ..models import WebhookDelivery, WebhookEndpoint
from .serializers import (
    EVENT_CHOICES,
    WebhookDeliverySerializer,
    WebhookEndpointCreatedSerializer,
    WebhookEndpointSerializer,
    WebhookEndpointUpdateSerializer,
    WebhookEndpointWriteSerializer,
)

_ALL = ("list", "retrieve", "create", "partial_update", "destroy", "deliveries", "redeliver")


@extend_schema_view(
    list=extend_schema(summary="List the organization's webhook endpoints (never their secrets)"),
    retrieve=extend_schema(summary="One webhook endpoint"),
    create=extend_schema(
        summary="Register a webhook endpoint: the signing secret is in this response only",
        request=WebhookEndpointWriteSerializer,
        responses={201: WebhookEndpointCreatedSerializer},
        examples=[
            OpenApiExample(
                "Register an endpoint",
                value={
                    "url": "https://hooks.example.com/clawfleet",
                    "events": ["instance.status_changed", "backup.failed"],
                    "description": "Our on-call bot",
                },
                request_only=True,
            )
        ],
    ),
    partial_update=extend_schema(
        summary="Change an endpoint (URL, events, description; enable or disable it)",
        request=WebhookEndpointUpdateSerializer,
        responses={200: WebhookEndpointSerializer},
    ),
    destroy=extend_schema(summary="Delete a webhook endpoint", responses={204: None}),
)
class WebhookEndpointViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, OrganizationApiViewSet
):
    queryset = WebhookEndpoint.objects.all()
    serializer_class = WebhookEndpointSerializer
    ordering_fields = ["created_at", "url"]
    ordering = ["created_at"]
    idempotency_redact = ("secret",)
    action_permissions = dict.fromkeys(_ALL, roles.MANAGE_TOKENS)
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def create(self, request, *args, **kwargs):
        data = WebhookEndpointWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint, secret = services.endpoint_create(
            actor=self.actor, organization=self.organization, **data.validated_data
        )
        body = WebhookEndpointCreatedSerializer(endpoint).data
        body["secret"] = secret
        return Response(body, status=status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs):
        endpoint = self.get_object()
        data = WebhookEndpointUpdateSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        endpoint = services.endpoint_update(
            actor=self.actor, endpoint=endpoint, **data.validated_data
        )
        return Response(WebhookEndpointSerializer(endpoint).data)

    def destroy(self, request, *args, **kwargs):
        services.endpoint_delete(actor=self.actor, endpoint=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class DeliveryFilter(filters.FilterSet):
    endpoint = filters.UUIDFilter(field_name="endpoint_id")
    state = filters.ChoiceFilter(choices=WebhookDelivery.State.choices)
    event_type = filters.ChoiceFilter(choices=[(e, e) for e in EVENT_CHOICES])

    class Meta:
        model = WebhookDelivery
        fields = ["endpoint", "state", "event_type"]


@extend_schema_view(
    list=extend_schema(summary="List webhook deliveries, newest first, with their attempts"),
    retrieve=extend_schema(summary="One delivery and every attempt (status code, error)"),
    redeliver=extend_schema(
        summary="Send a delivery again now, with the same delivery id",
        request=None,
        responses={202: WebhookDeliverySerializer},
    ),
)
class WebhookDeliveryViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, OrganizationApiViewSet
):
    queryset = WebhookDelivery.objects.all()
    serializer_class = WebhookDeliverySerializer
    filterset_class = DeliveryFilter
    ordering_fields = ["created_at"]
    ordering = ["-created_at"]
    action_permissions = dict.fromkeys(_ALL, roles.MANAGE_TOKENS)

    def scope_queryset(self, queryset):
        return queryset.prefetch_related("attempts")

    @action(detail=True, methods=["post"])
    def redeliver(self, request, *args, **kwargs):
        try:
            delivery = services.delivery_redeliver(actor=self.actor, delivery=self.get_object())
        except services.Conflict as exc:
            raise Conflict(str(exc), code="invalid_state") from exc
        delivery.refresh_from_db()
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
