"""/api/v1/sessions (the session mirror, one transcript page on retrieve) and /api/v1/backups."""

from __future__ import annotations

import datetime as dt
import logging
import re

from django import forms
from django.db.models import F
from django.db.models.functions import Coalesce
from django_filters import rest_framework as filters
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from accounts import roles
from accounts.api.base import (
    MAX_OFFSET,
    FleetCursorPagination,
    FleetFilterBackend,
    FleetOrderingFilter,
    OrganizationApiViewSet,
    error_example,
    query_int,
)
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


_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATE_TIME_RE = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)
_EARLIEST = dt.datetime.min.replace(tzinfo=dt.UTC)
_LATEST = dt.datetime.max.replace(tzinfo=dt.UTC)


def parse_date_or_date_time(value: str) -> dt.datetime:
    """An ISO 8601 / RFC 3339 full date (midnight UTC) or date-time with an offset, exactly what
    the schema says (format date or date-time), as UTC. Raises ValueError for anything else."""
    if _DATE_RE.match(value):
        return dt.datetime.combine(dt.date.fromisoformat(value), dt.time(), tzinfo=dt.UTC)
    match = _DATE_TIME_RE.match(value)
    if not match:
        raise ValueError(value)
    day, hour, minute, second, fraction, offset = match.groups()
    offset = "+00:00" if offset in ("Z", "z") else offset
    second = min(int(second), 59) if second == "60" else int(second)  # a leap second
    micro = (fraction or ".0")[1:7].ljust(6, "0")
    local = dt.datetime.fromisoformat(f"{day}T{hour}:{minute}:{second:02d}.{micro}{offset}")
    try:
        return local.astimezone(dt.UTC)
    except OverflowError:  # beyond year 1 or 9999 in UTC: nothing lies past that
        return _EARLIEST if local.year == 1 else _LATEST


class UtcDateTimeField(forms.Field):
    """A date or date-time in any offset, as UTC (PostgreSQL refuses offsets beyond ±15:59)."""

    def to_python(self, value):
        if value in (None, ""):
            return None
        try:
            return parse_date_or_date_time(str(value))
        except ValueError:
            raise forms.ValidationError(
                "Enter an ISO 8601 date (2026-11-01) or date-time with an offset "
                "(2026-11-01T10:00:00Z).",
                code="invalid",
            )


@extend_schema_field(
    {"anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}]}
)
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
                {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
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
    filter_backends = [FleetFilterBackend, FleetOrderingFilter]
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
        before = query_int(request, "before", minimum=0, maximum=MAX_OFFSET)
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
        if instance is None:  # unknown or another organization's: a 404 like everywhere else
            raise NotFound("No such instance.")
        op = services.backup_request(actor=self.actor, instance=instance, kind=Backup.Kind.MANUAL)
        return Response(OperationDetailSerializer(op).data, status=status.HTTP_202_ACCEPTED)

    @action(detail=True, methods=["post"])
    def restore(self, request, *args, **kwargs):
        backup = self.get_object()
        instance = Instance.objects.get(pk=backup.instance_id)
        op = services.restore_request(actor=self.actor, instance=instance, backup=backup)
        return Response(OperationDetailSerializer(op).data, status=status.HTTP_202_ACCEPTED)
