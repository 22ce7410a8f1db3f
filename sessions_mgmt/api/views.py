"""/api/v1/sessions (the session mirror, one transcript page on retrieve) and /api/v1/backups."""

from __future__ import annotations

import datetime as dt
import logging

from django import forms
from django.db.models import F
from django.db.models.functions import Coalesce
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.filters import OrderingFilter
from rest_framework.response import Response

from accounts import roles
from accounts.api.base import FleetCursorPagination, OrganizationApiViewSet, error_example
from accounts.tenancy import request_allows
from instances.api.serializers import OperationDetailSerializer
from instances.models import Instance
from sessions_mgmt import services
from sessions_mgmt.models import Backup, Session

from .serializers import (
    BackupCreateSerializer,
    BackupSerializer,
    SessionDetailSerializer,
    SessionSerializer,
)

log = logging.getLogger(__name__)

TRANSCRIPT_PAGE_SIZE = 50


class UtcDateTimeField(forms.DateTimeField):
    """A date or date-time in any offset, as UTC (PostgreSQL refuses offsets beyond ±15:59)."""

    def to_python(self, value):
        result = super().to_python(value)
        if result is None:
            return None
        try:
            return result.astimezone(dt.UTC)
        except (OverflowError, ValueError):
            raise forms.ValidationError("This date-time is out of range.", code="overflow")


class UtcDateTimeFilter(filters.DateTimeFilter):
    field_class = UtcDateTimeField


class SessionFilter(filters.FilterSet):
    instance = filters.UUIDFilter(field_name="instance_id")
    channel = filters.CharFilter()
    status = filters.MultipleChoiceFilter(choices=Session.Status.choices)
    agent_id = filters.CharFilter()
    to = UtcDateTimeFilter(
        field_name="last_activity_at",
        lookup_expr="lte",
        label="Last activity at or before (ISO 8601 date or date-time)",
    )

    class Meta:
        model = Session
        fields = ["instance", "channel", "status", "agent_id", "to"]


# `from` is a Python keyword, so it cannot be a class attribute; declared filters are a dict.
SessionFilter.base_filters["from"] = UtcDateTimeFilter(
    field_name="last_activity_at",
    lookup_expr="gte",
    label="Last activity at or after (ISO 8601 date or date-time)",
)


class SessionCursorPagination(FleetCursorPagination):
    ordering = ("-recency", "-id")


@extend_schema_view(
    list=extend_schema(
        summary="List sessions (cursor pages; ordering=-recency by default, or cost/-cost)",
    ),
    retrieve=extend_schema(
        summary="One session with a page of its transcript",
        description="The transcript is read from the instance (a few seconds); it is null when "
        "the instance is not running or your role or token scopes do not allow reading "
        "transcripts (transcript_error says which). Older pages: ?before=<transcript.before>.",
        parameters=[
            OpenApiParameter(
                "before",
                OpenApiTypes.INT,
                OpenApiParameter.QUERY,
                description="The `before` of the previous page, for older messages.",
            )
        ],
    ),
)
class SessionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrganizationApiViewSet):
    queryset = Session.objects.all()
    serializer_class = SessionSerializer
    filterset_class = SessionFilter
    filter_backends = [filters.DjangoFilterBackend, OrderingFilter]
    ordering_fields = ["recency", "cost", "id"]
    ordering = ["-recency", "-id"]
    pagination_class = SessionCursorPagination

    def scope_queryset(self, queryset):
        return queryset.annotate(
            instance_name=F("instance__name"),
            recency=Coalesce("last_activity_at", "first_seen_at"),
            cost=F("cost_usd"),
        )

    def get_serializer_class(self):
        return SessionDetailSerializer if self.action == "retrieve" else SessionSerializer

    def retrieve(self, request, *args, **kwargs):
        session = self.get_object()
        before = request.query_params.get("before")
        if before not in (None, ""):
            try:
                before = int(before)
                if before < 0:
                    raise ValueError
            except ValueError:
                raise serializers.ValidationError({"before": ["Enter a whole number ≥ 0."]})
        else:
            before = None
        page, error = self._transcript(session, before)
        context = {**self.get_serializer_context(), "transcript": page, "transcript_error": error}
        return Response(SessionDetailSerializer(session, context=context).data)

    def _transcript(self, session, before):
        if not request_allows(self.request, roles.VIEW_TRANSCRIPTS):
            return None, "Your role or token scopes do not allow reading transcripts."
        instance = Instance.objects.get(pk=session.instance_id)
        try:
            result = services.transcript_page(
                instance=instance,
                session_key=session.session_key,
                before=before,
                limit=TRANSCRIPT_PAGE_SIZE,
            )
        except services.TranscriptUnavailable as exc:
            return None, str(exc)
        except Exception:  # noqa: BLE001 - the session itself is still worth answering
            log.info("transcript of session %s unavailable", session.pk, exc_info=True)
            return None, "The transcript is not available right now (is the instance running?)."
        return _transcript_page(result), None


def _transcript_page(result) -> dict:
    """Normalise what transcript_page returns: (messages, before), or an object/dict with them."""
    if isinstance(result, tuple):
        messages, before = result
    elif isinstance(result, dict):
        messages = result.get("messages", [])
        before = result.get("before", result.get("next_before"))
    else:
        messages = getattr(result, "messages", [])
        before = getattr(result, "before", getattr(result, "next_before", None))
    rows = []
    for m in messages:
        get = m.get if isinstance(m, dict) else (lambda k, d=None, m=m: getattr(m, k, d))
        rows.append(
            {
                "id": str(get("id", "") or ""),
                "role": str(get("role", "") or ""),
                "text": str(get("text", "") or ""),
                "at": get("at", None),
                "model": str(get("model", "") or ""),
                "input_tokens": int(get("input_tokens", 0) or 0),
                "output_tokens": int(get("output_tokens", 0) or 0),
            }
        )
    return {"messages": rows, "before": before}


class BackupFilter(filters.FilterSet):
    instance = filters.UUIDFilter(field_name="instance_id")
    kind = filters.MultipleChoiceFilter(choices=Backup.Kind.choices)
    state = filters.MultipleChoiceFilter(choices=Backup.State.choices)

    class Meta:
        model = Backup
        fields = ["instance", "kind", "state"]


_BACKUP_OP = {
    "id": "0b7f7d9e-3c1a-4f7e-9d51-5a0f6a1f2c33",
    "instance": "5d0c2f0e-8a4b-4c3e-9b8e-2f1d7c6a9e10",
    "instance_name": "acme-support",
    "kind": "backup",
    "state": "queued",
    "params": {"kind": "manual"},
    "error": "",
    "requested_via": "api",
    "created_at": "2026-11-25T10:00:00Z",
    "started_at": None,
    "finished_at": None,
    "duration_seconds": None,
    "steps": [],
}


@extend_schema_view(
    list=extend_schema(summary="List backups (newest first)"),
    retrieve=extend_schema(summary="One backup"),
    create=extend_schema(
        summary="Back up an instance now",
        request=BackupCreateSerializer,
        responses={202: OperationDetailSerializer},
        examples=[
            OpenApiExample(
                "Back up",
                value={"instance": "5d0c2f0e-8a4b-4c3e-9b8e-2f1d7c6a9e10"},
                request_only=True,
            ),
            OpenApiExample(
                "Backup queued", value=_BACKUP_OP, response_only=True, status_codes=["202"]
            ),
            error_example(
                "operation_in_progress",
                "Another operation is running",
                "An operation is in progress on this instance (restart). Wait for it to finish.",
            ),
        ],
    ),
    restore=extend_schema(
        summary="Restore the instance from this backup (a pre-restore backup is kept)",
        request=None,
        responses={202: OperationDetailSerializer},
        examples=[
            OpenApiExample(
                "Restore queued",
                value={**_BACKUP_OP, "kind": "restore", "params": {}},
                response_only=True,
                status_codes=["202"],
            )
        ],
    ),
)
class BackupViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrganizationApiViewSet):
    queryset = Backup.objects.all()
    serializer_class = BackupSerializer
    filterset_class = BackupFilter
    ordering_fields = ["created_at", "size_bytes"]
    ordering = ["-created_at"]

    def scope_queryset(self, queryset):
        return queryset.annotate(instance_name=F("instance__name"))

    def create(self, request, *args, **kwargs):
        data = BackupCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        instance = (
            Instance.objects.filter(organization=self.organization)
            .exclude(status=Instance.Status.PURGED)
            .filter(pk=data.validated_data["instance"])
            .first()
        )
        if instance is None:
            raise serializers.ValidationError({"instance": ["No such instance."]})
        op = services.backup_request(actor=self.actor, instance=instance, kind=Backup.Kind.MANUAL)
        return Response(OperationDetailSerializer(op).data, status=status.HTTP_202_ACCEPTED)

    @action(detail=True, methods=["post"])
    def restore(self, request, *args, **kwargs):
        backup = self.get_object()
        instance = Instance.objects.get(pk=backup.instance_id)
        op = services.restore_request(actor=self.actor, instance=instance, backup=backup)
        return Response(OperationDetailSerializer(op).data, status=status.HTTP_202_ACCEPTED)
