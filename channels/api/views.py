"""/api/v1/instances/{instance_id}/channels: connect, list, change, remove; pairing requests.

Writes call channels.services (the same functions the dashboard and admin call). Connecting
answers 201 with the channel in status `applying`; its config is applied by a task and its
health read from OpenClaw (`status`, `last_error`). Another organization's instance or channel
is a 404.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from accounts import roles
from accounts.api.base import OrganizationApiViewSet
from instances.models import Instance

from .. import services
from ..models import Channel
from .serializers import (
    ChannelCreateSerializer,
    ChannelSerializer,
    ChannelUpdateSerializer,
    PairingDecisionSerializer,
    PairingRequestSerializer,
)


@extend_schema_view(
    list=extend_schema(summary="List an instance's channels"),
    retrieve=extend_schema(summary="One channel with its health"),
    create=extend_schema(
        summary="Connect a channel (the token is checked with the provider first)",
        request=ChannelCreateSerializer,
        responses={201: ChannelSerializer},
    ),
    partial_update=extend_schema(
        summary="Change who may talk to the bot",
        request=ChannelUpdateSerializer,
        responses={200: ChannelSerializer},
    ),
    destroy=extend_schema(
        summary="Remove a channel (its config and secrets leave the instance)",
        responses={202: ChannelSerializer},
    ),
)
class ChannelViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrganizationApiViewSet):
    queryset = Channel.objects.all()
    serializer_class = ChannelSerializer
    ordering_fields = ["created_at", "kind"]
    ordering = ["kind"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    action_permissions = {
        "pairing": roles.OPERATE,
        "pairing_approve": roles.OPERATE,
        "pairing_reject": roles.OPERATE,
    }

    def _instance(self) -> Instance:
        instance = (
            Instance.objects.filter(organization=self.organization)
            .exclude(status=Instance.Status.PURGED)
            .filter(pk=_uuid_or_404(self.kwargs.get("instance_pk")))
            .first()
        )
        if instance is None:
            raise NotFound("No such instance.")
        return instance

    def scope_queryset(self, queryset):
        if getattr(self, "swagger_fake_view", False):
            return queryset
        return queryset.filter(instance=self._instance()).select_related("instance")

    def get_object(self):
        try:
            return self.get_queryset().get(pk=_uuid_or_404(self.kwargs.get("pk")))
        except Channel.DoesNotExist:
            raise NotFound("No such channel.") from None

    def create(self, request, *args, **kwargs):
        instance = self._instance()
        data = ChannelCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        channel = services.channel_connect(
            actor=self.actor,
            instance=instance,
            kind=values["kind"],
            token=values["token"],
            extra_token=values.get("app_token", ""),
            dm_policy=values.get("dm_policy", Channel.DmPolicy.PAIRING),
            allow_from=values.get("allow_from", []),
        )
        return Response(ChannelSerializer(channel).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs):
        channel = self.get_object()
        data = ChannelUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        channel = services.channel_update(
            actor=self.actor,
            channel=channel,
            dm_policy=data.validated_data["dm_policy"],
            allow_from=data.validated_data.get("allow_from", []),
        )
        return Response(ChannelSerializer(channel).data)

    def destroy(self, request, *args, **kwargs):
        channel = services.channel_remove(actor=self.actor, channel=self.get_object())
        return Response(ChannelSerializer(channel).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Pending DM pairing requests (new people who messaged the bot)",
        responses={200: PairingRequestSerializer(many=True)},
    )
    @action(detail=True, methods=["get"])
    def pairing(self, request, *args, **kwargs):
        rows = services.pairing_list(self.get_object())
        return Response(PairingRequestSerializer(rows, many=True).data)

    @extend_schema(
        summary="Approve a pairing request: that person may talk to the bot",
        request=PairingDecisionSerializer,
        responses={200: PairingRequestSerializer(many=True)},
    )
    @action(detail=True, methods=["post"], url_path="pairing/approve")
    def pairing_approve(self, request, *args, **kwargs):
        return self._decide(request, services.pairing_approve)

    @extend_schema(
        summary="Reject a pairing request: their messages stay unanswered",
        request=PairingDecisionSerializer,
        responses={200: PairingRequestSerializer(many=True)},
    )
    @action(detail=True, methods=["post"], url_path="pairing/reject")
    def pairing_reject(self, request, *args, **kwargs):
        return self._decide(request, services.pairing_reject)

    def _decide(self, request, decide):
        channel = self.get_object()
        data = PairingDecisionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        decide(actor=self.actor, channel=channel, request_id=data.validated_data["request_id"])
        rows = services.pairing_list(channel)
        return Response(PairingRequestSerializer(rows, many=True).data)


def _uuid_or_404(value):
    import uuid

    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound("Not found.") from None
