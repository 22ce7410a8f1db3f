"""/api/v1/instances and /api/v1/operations.

Writes call instances.services (the one implementation the dashboard and admin use too); long
work answers 202 with the Operation, whose progress is at /api/v1/operations/{id}.
"""

from __future__ import annotations

from django.db.models import BooleanField, ExpressionWrapper, F, Q
from django_filters import rest_framework as filters
from drf_spectacular.utils import (
    OpenApiExample,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts import roles
from accounts.api.base import OrganizationApiViewSet, error_example
from accounts.tenancy import request_allows
from fleet.api import Conflict
from instances import prices as instance_prices
from instances import public_access, services
from instances.models import Instance, Operation

from .serializers import (
    GatewayTokenSerializer,
    InstanceCreateSerializer,
    InstanceSerializer,
    InstanceUpdateSerializer,
    InstanceUpgradeSerializer,
    OperationDetailSerializer,
    OperationSerializer,
    SignInLinkSerializer,
)

_OPERATION_EXAMPLE = {
    "id": "0b7f7d9e-3c1a-4f7e-9d51-5a0f6a1f2c33",
    "instance": "5d0c2f0e-8a4b-4c3e-9b8e-2f1d7c6a9e10",
    "instance_name": "acme-support",
    "kind": "deploy",
    "state": "queued",
    "params": {},
    "error": "",
    "requested_via": "api",
    "created_at": "2026-11-25T10:00:00Z",
    "started_at": None,
    "finished_at": None,
    "duration_seconds": None,
    "steps": [],
}
_IN_PROGRESS = error_example(
    "operation_in_progress",
    "Another operation is running",
    "An operation is in progress on this instance (deploy). Wait for it to finish.",
)
_INVALID_STATE = error_example(
    "invalid_state", "Not allowed in this state", "Cannot start acme-support while it is running."
)


def _accepted(kind: str) -> OpenApiExample:
    return OpenApiExample(
        f"{kind.capitalize()} queued",
        value={**_OPERATION_EXAMPLE, "kind": kind},
        response_only=True,
        status_codes=["202"],
    )


def _action_schema(kind: str, summary: str, request=None, extra_examples=()):
    return extend_schema(
        summary=summary,
        request=request,
        responses={202: OperationDetailSerializer},
        examples=[_accepted(kind), _IN_PROGRESS, _INVALID_STATE, *extra_examples],
    )


class InstanceFilter(filters.FilterSet):
    status = filters.MultipleChoiceFilter(choices=Instance.Status.choices)
    external_id = filters.CharFilter()
    client_name = filters.CharFilter(lookup_expr="icontains")
    name = filters.CharFilter(lookup_expr="icontains")
    openclaw_version = filters.CharFilter()

    class Meta:
        model = Instance
        fields = ["status", "external_id", "client_name", "name", "openclaw_version"]


class InstanceUpdatedSerializer(InstanceSerializer):
    queued_operation = OperationSerializer(
        read_only=True,
        allow_null=True,
        help_text="The restart queued to apply a memory or CPU change to a running instance.",
    )

    class Meta(InstanceSerializer.Meta):
        fields = [*InstanceSerializer.Meta.fields, "queued_operation"]
        read_only_fields = fields


@extend_schema_view(
    list=extend_schema(summary="List the organization's instances"),
    retrieve=extend_schema(summary="One instance"),
    create=extend_schema(
        summary="Deploy a new instance",
        description="Validates, records the instance and a deploy operation, and answers 202 "
        "with the operation. Follow it at /api/v1/operations/{id}.",
        request=InstanceCreateSerializer,
        responses={202: OperationDetailSerializer},
        examples=[
            OpenApiExample(
                "Deploy for a client",
                value={
                    "name": "acme-support",
                    "provider": "openai",
                    "model_name": "gpt-4o-mini",
                    "api_key": "sk-...",
                    "memory_mb": 2048,
                    "cpus": 1,
                    "external_id": "client-4711",
                    "client_name": "Acme Ltd",
                },
                request_only=True,
            ),
            _accepted("deploy"),
            error_example(
                "invalid",
                "Duplicate external_id",
                "external_id: external_id already used",
                fields={"external_id": ["external_id already used"]},
            ),
        ],
    ),
    partial_update=extend_schema(
        summary="Change an instance",
        request=InstanceUpdateSerializer,
        responses={200: InstanceUpdatedSerializer},
        examples=[
            OpenApiExample(
                "Rename and change retention",
                value={"client_name": "Acme Ltd", "session_idle_days": 14},
                request_only=True,
            )
        ],
    ),
    destroy=_action_schema(
        "delete",
        "Delete an instance (the volume is kept for the grace period)",
    ),
    start=_action_schema("start", "Start a stopped instance"),
    stop=_action_schema("stop", "Stop an instance"),
    restart=_action_schema("restart", "Restart an instance"),
    upgrade=_action_schema(
        "upgrade",
        "Upgrade an instance to another OpenClaw version",
        request=InstanceUpgradeSerializer,
        extra_examples=[
            OpenApiExample("Upgrade", value={"version": "2026.9.6"}, request_only=True)
        ],
    ),
)
class InstanceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrganizationApiViewSet):
    queryset = Instance.objects.all()
    serializer_class = InstanceSerializer
    filterset_class = InstanceFilter
    ordering_fields = ["name", "created_at", "status"]
    ordering = ["name"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    # A sign-in link opens the Control UI with operator power (it shows the transcripts):
    # the caller needs both (checked again in the action).
    action_permissions = {"sign_in_link": roles.VIEW_TRANSCRIPTS, "gateway_token": roles.OPERATE}
    idempotency_redact = ("token", "url")

    def scope_queryset(self, queryset):
        queryset = queryset.exclude(status=Instance.Status.PURGED)
        if self.action == "list":
            # Secrets are never shown: skip loading (and decrypting) them for a page of rows.
            queryset = queryset.defer("provider_api_key", "channel_token", "gateway_token")
            queryset = queryset.annotate(
                has_api_key=ExpressionWrapper(
                    ~Q(provider_api_key="") & Q(provider_api_key__isnull=False),
                    output_field=BooleanField(),
                )
            )
        return queryset

    def _operation_response(self, op: Operation) -> Response:
        return Response(OperationDetailSerializer(op).data, status=status.HTTP_202_ACCEPTED)

    def create(self, request, *args, **kwargs):
        data = InstanceCreateSerializer(
            data=request.data, context={"organization": self.organization}
        )
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        op = services.instance_deploy(
            actor=self.actor,
            organization=self.organization,
            name=values["name"],
            openclaw_version=values.get("openclaw_version"),
            memory_mb=values.get("memory_mb"),
            cpus=values.get("cpus"),
            provider=values["provider"],
            model_name=values["model_name"],
            api_key=values.get("api_key", ""),
            model_base_url=values.get("model_base_url", ""),
            channel_token=values.get("channel_token", ""),
            external_id=values.get("external_id"),
            client_name=values.get("client_name", ""),
            prices={k: values[k] for k in instance_prices.FIELDS if k in values},
        )
        return self._operation_response(op)

    def partial_update(self, request, *args, **kwargs):
        instance = self.get_object()
        data = InstanceUpdateSerializer(
            data=request.data,
            partial=True,
            context={"organization": self.organization, "instance": instance},
        )
        data.is_valid(raise_exception=True)
        if not data.validated_data:
            raise serializers.ValidationError({"detail": ["Send at least one field to change."]})
        instance = services.instance_update(
            actor=self.actor, instance=instance, **data.validated_data
        )
        instance.refresh_from_db()
        instance.queued_operation = getattr(instance, "queued_operation", None)
        return Response(InstanceUpdatedSerializer(instance).data)

    def destroy(self, request, *args, **kwargs):
        return self._operation_response(
            services.instance_delete(actor=self.actor, instance=self.get_object())
        )

    @action(detail=True, methods=["post"])
    def start(self, request, *args, **kwargs):
        return self._operation_response(
            services.instance_start(actor=self.actor, instance=self.get_object())
        )

    @action(detail=True, methods=["post"])
    def stop(self, request, *args, **kwargs):
        return self._operation_response(
            services.instance_stop(actor=self.actor, instance=self.get_object())
        )

    @action(detail=True, methods=["post"])
    def restart(self, request, *args, **kwargs):
        return self._operation_response(
            services.instance_restart(actor=self.actor, instance=self.get_object())
        )

    @action(detail=True, methods=["post"])
    def upgrade(self, request, *args, **kwargs):
        instance = self.get_object()
        data = InstanceUpgradeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return self._operation_response(
            services.instance_upgrade(
                actor=self.actor, instance=instance, version=data.validated_data["version"]
            )
        )

    @extend_schema(
        summary="Rotate the gateway token (no restart; the old token is refused at once)",
        request=None,
        responses={200: GatewayTokenSerializer},
        examples=[
            OpenApiExample(
                "Rotated",
                value={"token": "q3V...", "applied": "hot"},
                response_only=True,
            ),
            _IN_PROGRESS,
        ],
    )
    @action(detail=True, methods=["post"], url_path="gateway-token")
    def gateway_token(self, request, *args, **kwargs):
        instance = self.get_object()
        running = instance.status == Instance.Status.RUNNING
        try:
            token = public_access.gateway_token_rotate(actor=self.actor, instance=instance)
        except public_access.GatewayUnavailable as exc:
            raise Conflict(str(exc), code="gateway_unavailable") from exc
        body = {"token": token, "applied": "hot" if running else "at next start"}
        response = Response(GatewayTokenSerializer(body).data)
        response["Cache-Control"] = "no-store"
        return response

    @extend_schema(
        summary="A one-time Control UI sign-in link at the public address",
        request=None,
        responses={200: SignInLinkSerializer},
        examples=[
            OpenApiExample(
                "Link",
                value={
                    "url": "https://acme-support-acme.example.com/#bootstrapToken=...",
                    "expires_at": "2026-11-25T10:10:00Z",
                },
                response_only=True,
            ),
            _INVALID_STATE,
        ],
    )
    @action(detail=True, methods=["post"], url_path="sign-in-link")
    def sign_in_link(self, request, *args, **kwargs):
        if not request_allows(request, roles.OPERATE):
            raise exceptions.PermissionDenied(
                "A sign-in link needs the read and operate scopes (role: member or above)."
            )
        instance = self.get_object()
        try:
            link = public_access.sign_in_link_create(actor=self.actor, instance=instance, via="api")
        except public_access.GatewayUnavailable as exc:
            raise Conflict(str(exc), code="gateway_unavailable") from exc
        response = Response(SignInLinkSerializer(link).data)
        response["Cache-Control"] = "no-store"
        return response


class OperationFilter(filters.FilterSet):
    instance = filters.UUIDFilter(field_name="instance_id")
    kind = filters.MultipleChoiceFilter(choices=Operation.Kind.choices)
    state = filters.MultipleChoiceFilter(choices=Operation.State.choices)

    class Meta:
        model = Operation
        fields = ["instance", "kind", "state"]


@extend_schema_view(
    list=extend_schema(summary="List operations (newest first)"),
    retrieve=extend_schema(
        summary="One operation with its progress steps",
        examples=[
            OpenApiExample(
                "A finished deploy",
                value={
                    **_OPERATION_EXAMPLE,
                    "state": "succeeded",
                    "started_at": "2026-11-25T10:00:01Z",
                    "finished_at": "2026-11-25T10:00:41Z",
                    "duration_seconds": 40.0,
                    "steps": [
                        {
                            "name": "container",
                            "state": "done",
                            "started_at": "2026-11-25T10:00:02+00:00",
                            "finished_at": "2026-11-25T10:00:05+00:00",
                            "detail": "",
                        }
                    ],
                },
                response_only=True,
            )
        ],
    ),
)
class OperationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrganizationApiViewSet):
    queryset = Operation.objects.all()
    serializer_class = OperationSerializer
    filterset_class = OperationFilter
    ordering_fields = ["created_at", "finished_at"]
    ordering = ["-created_at"]

    def get_serializer_class(self):
        return OperationDetailSerializer if self.action == "retrieve" else OperationSerializer

    def scope_queryset(self, queryset):
        queryset = queryset.annotate(instance_name=F("instance__name"))
        if self.action == "list":
            queryset = queryset.defer("steps", "error_detail")
        return queryset
