"""The base of every /api/v1 viewset: the tenancy guard plus the shared API behaviour (JSON in,
X-RateLimit-* headers out, Idempotency-Key replays, pagination, and the OpenAPI additions every
operation shares: the error responses, the rate-limit headers, the Idempotency-Key header).

These live here rather than in fleet/api.py because DRF imports fleet.api while it defines
APIView (to read DEFAULT_THROTTLE_CLASSES), so fleet.api cannot import views, schema or models.
"""

from __future__ import annotations

import hashlib
import json
import re

from django import forms
from django.core.cache import cache
from django_filters import rest_framework as filters
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter
from rest_framework import exceptions
from rest_framework.filters import OrderingFilter
from rest_framework.pagination import CursorPagination, LimitOffsetPagination
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from accounts.services import Actor
from accounts.tenancy import OrganizationScopedViewSet, organization_for_request
from fleet.api import (
    _KEY_RE,
    IDEMPOTENCY_HEADER,
    IDEMPOTENCY_LOCK_TTL,
    IDEMPOTENCY_TTL,
    Conflict,
    ErrorSerializer,
    _idempotency_cache_key,
    _Replay,
    _set_rate_limit_headers,
)

# --- pagination -----------------------------------------------------------------------------

MAX_OFFSET = 2**31 - 1
_WHOLE_NUMBER = re.compile(r"^-?\d{1,20}$")


def query_int(request, name: str, *, minimum: int, maximum: int) -> int | None:
    """A whole-number query parameter, strictly: absent is None; anything else that is not a
    whole number within [minimum, maximum] (null, 2.5, an empty value) is a 400 that says so, as
    the schema promises (DRF's paginators silently fall back to their default instead)."""
    if name not in request.query_params:
        return None
    raw = request.query_params[name]
    value = int(raw) if _WHOLE_NUMBER.match(raw) else None
    if value is None or not minimum <= value <= maximum:
        raise exceptions.ValidationError(
            {name: [f"Enter a whole number from {minimum} to {maximum}."]}
        )
    return value


def _int_parameter(name: str, description: str, *, minimum: int, maximum: int) -> dict:
    return {
        "name": name,
        "required": False,
        "in": "query",
        "description": description,
        "schema": {"type": "integer", "minimum": minimum, "maximum": maximum},
    }


class FleetLimitOffsetPagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 200

    def get_limit(self, request):
        limit = query_int(request, self.limit_query_param, minimum=1, maximum=self.max_limit)
        return self.default_limit if limit is None else limit

    def get_offset(self, request):
        offset = query_int(request, self.offset_query_param, minimum=0, maximum=MAX_OFFSET)
        return offset or 0

    def get_schema_operation_parameters(self, view):
        return [
            _int_parameter(
                self.limit_query_param,
                f"Results per page (default {self.default_limit}).",
                minimum=1,
                maximum=self.max_limit,
            ),
            _int_parameter(
                self.offset_query_param,
                "How many results to skip.",
                minimum=0,
                maximum=MAX_OFFSET,
            ),
        ]


class FleetCursorPagination(CursorPagination):
    """For the long, growing lists (sessions, audit events): stable under inserts, O(1) pages."""

    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200
    ordering = "-created_at"

    def get_page_size(self, request):
        size = query_int(request, self.page_size_query_param, minimum=1, maximum=self.max_page_size)
        return self.page_size if size is None else size

    def get_schema_operation_parameters(self, view):
        cursor, *_ = super().get_schema_operation_parameters(view)
        return [
            cursor,
            _int_parameter(
                self.page_size_query_param,
                f"Results per page (default {self.page_size}).",
                minimum=1,
                maximum=self.max_page_size,
            ),
        ]


class _StrictBooleanField(forms.Field):
    def to_python(self, value):
        if value in (None, ""):
            return None
        if value in ("true", "false"):
            return value == "true"
        raise forms.ValidationError("Use true or false.", code="invalid")


class StrictBooleanFilter(filters.BooleanFilter):
    """A boolean query parameter is `true` or `false`, as the schema says (django-filter's own
    also takes null, 1, unknown... and treats them as no filter)."""

    field_class = _StrictBooleanField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", forms.TextInput)  # the raw text, not BooleanWidget's guess
        super().__init__(*args, **kwargs)


class FleetFilterBackend(filters.DjangoFilterBackend):
    """django-filter, but an empty value for a typed filter (a date, an id, a choice, a boolean)
    is a 400 rather than "no filter": the schema gives those parameters a type or a format that
    an empty string does not have. A text filter's empty value is a value like any other."""

    def filter_queryset(self, request, queryset, view):
        filterset_class = self.get_filterset_class(view, queryset)
        if filterset_class is not None:
            empty = {
                name: ["Give a value, or leave the parameter out."]
                for name, flt in filterset_class.base_filters.items()
                if not isinstance(flt, filters.CharFilter)
                and "" in request.query_params.getlist(name)
            }
            if empty:
                raise exceptions.ValidationError(empty)
        return super().filter_queryset(request, queryset, view)


class FleetOrderingFilter(OrderingFilter):
    """`ordering` is one of the view's ordering_fields, or its reverse with "-": the schema lists
    them as an enum, and anything else (an unknown field, a list, an empty value) is a 400 rather
    than silently the default order."""

    def ordering_choices(self, view) -> list[str]:
        fields = [f if isinstance(f, str) else f[0] for f in getattr(view, "ordering_fields", [])]
        return [choice for field in fields for choice in (field, f"-{field}")]

    def get_ordering(self, request, queryset, view):
        if self.ordering_param not in request.query_params:
            return self.get_default_ordering(view)
        wanted = request.query_params[self.ordering_param]
        choices = self.ordering_choices(view)
        if wanted not in choices:
            raise exceptions.ValidationError(
                {self.ordering_param: [f"Choose one of: {', '.join(choices)}."]}
            )
        return [wanted]

    def get_schema_operation_parameters(self, view):
        choices = self.ordering_choices(view)
        if not choices:
            return []
        return [
            {
                "name": self.ordering_param,
                "required": False,
                "in": "query",
                "description": "Sort by this field; a leading '-' reverses it.",
                "schema": {"type": "string", "enum": choices},
            }
        ]


class FleetApiMixin:
    """What every API viewset shares: JSON in, rate-limit headers out, Idempotency-Key replays.

    Idempotency (POST only): the first request with a key runs and, if it succeeds (2xx), its
    status and body are kept in the cache for 24 h under (organization, method, path, key). A
    retry with the same key and the same body gets that status and body again, with the header
    `Idempotent-Replayed: true`, and changes nothing. The same key with a different body is a 409
    (idempotency_key_reused); a retry while the first is still running is a 409 (conflict).
    Fields listed in `idempotency_redact` (e.g. a token's secret) are stored as null.
    """

    parser_classes = [JSONParser]
    idempotency_redact: tuple[str, ...] = ()

    def initial(self, request, *args, **kwargs):
        self._idempotency = None
        super().initial(request, *args, **kwargs)
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if request.method != "POST" or key is None:
            return
        if not _KEY_RE.match(key):
            raise exceptions.ValidationError(
                {IDEMPOTENCY_HEADER: ["Use 1 to 255 printable ASCII characters without spaces."]}
            )
        organization = organization_for_request(request)
        cache_key = _idempotency_cache_key(organization.pk, request.method, request.path, key)
        fingerprint = hashlib.sha256(request._request.body or b"").hexdigest()
        stored = cache.get(cache_key)
        if stored is not None:
            if stored["fingerprint"] != fingerprint:
                raise Conflict(
                    "This Idempotency-Key was used with a different request body.",
                    code="idempotency_key_reused",
                )
            raise _Replay(stored)
        if not cache.add(f"{cache_key}:lock", 1, IDEMPOTENCY_LOCK_TTL):
            raise Conflict("A request with this Idempotency-Key is still running. Retry later.")
        self._idempotency = (cache_key, fingerprint)

    def handle_exception(self, exc):
        if isinstance(exc, _Replay):
            response = Response(exc.stored["body"], status=exc.stored["status"])
            response["Idempotent-Replayed"] = "true"
            return response
        return super().handle_exception(exc)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        pending = getattr(self, "_idempotency", None)
        if pending is not None:
            cache_key, fingerprint = pending
            if 200 <= response.status_code < 300 and isinstance(response, Response):
                body = json.loads(JSONRenderer().render(response.data) or b"null")
                if isinstance(body, dict):
                    for name in self.idempotency_redact:
                        if name in body:
                            body[name] = None
                stored = {"status": response.status_code, "body": body, "fingerprint": fingerprint}
                cache.set(cache_key, stored, IDEMPOTENCY_TTL)
            cache.delete(f"{cache_key}:lock")
            self._idempotency = None
        _set_rate_limit_headers(response, getattr(request, "_throttle_state", None))
        return response


# --- OpenAPI --------------------------------------------------------------------------------

_ERROR_DESCRIPTIONS = {
    "400": "Invalid input (code invalid; per-field messages in error.fields).",
    "401": "No credentials, or an invalid, expired or revoked token (code unauthenticated).",
    "403": "The token's scopes or the member's role do not allow this (code forbidden).",
    "404": "Not found, or it belongs to another organization (code not_found).",
    "409": "A conflict: an operation in progress (operation_in_progress), a state that does not "
    "allow the action (invalid_state) or a reused Idempotency-Key (idempotency_key_reused).",
    "415": "Send JSON (code unsupported_media_type).",
    "429": "Rate limited (code rate_limited); retry after Retry-After seconds.",
}
_ERROR_EXAMPLES = {
    "400": {
        "error": {
            "code": "invalid",
            "message": "name: This field is required.",
            "fields": {"name": ["This field is required."]},
        }
    },  # fmt: skip
    "401": {
        "error": {
            "code": "unauthenticated",
            "message": "This token is invalid, expired or revoked.",
        }
    },  # fmt: skip
    "403": {
        "error": {"code": "forbidden", "message": "Your role or token scopes do not allow this."}
    },  # fmt: skip
    "404": {"error": {"code": "not_found", "message": "Not found."}},
    "409": {
        "error": {
            "code": "operation_in_progress",
            "message": "An operation is in progress on this instance (deploy). "
            "Wait for it to finish.",
        }
    },  # fmt: skip
    "415": {
        "error": {
            "code": "unsupported_media_type",
            "message": 'Unsupported media type "text/plain" in request.',
        }
    },  # fmt: skip
    "429": {
        "error": {
            "code": "rate_limited",
            "message": "Request was throttled. Expected available in 12 seconds.",
        }
    },  # fmt: skip
}
_RATE_LIMIT_HEADERS = {
    "X-RateLimit-Limit": "Requests allowed per window for your organization.",
    "X-RateLimit-Remaining": "Requests left in the current window.",
    "X-RateLimit-Window": "The window in seconds.",
}


class FleetAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema plus what every operation shares: the error responses in the
    one error shape, the rate-limit headers, and the Idempotency-Key header on POST."""

    def get_override_parameters(self):
        params = list(super().get_override_parameters())
        if self.method == "POST":
            params.append(
                OpenApiParameter(
                    IDEMPOTENCY_HEADER,
                    OpenApiTypes.STR,
                    OpenApiParameter.HEADER,
                    required=False,
                    pattern=r"^[\x21-\x7e]{1,255}$",
                    description="Any unique string (e.g. a UUID). A retry with the same key "
                    "within 24 h returns the first response instead of acting twice.",
                )
            )
        for name, description in _RATE_LIMIT_HEADERS.items():
            params.append(
                OpenApiParameter(
                    name,
                    OpenApiTypes.INT,
                    OpenApiParameter.HEADER,
                    description=description,
                    response=["200", "201", "202"],
                )
            )
        return params

    def _error_codes(self) -> list[str]:
        codes = ["400", "401", "403", "404", "429"]
        if self.method in ("POST", "PUT", "PATCH", "DELETE"):
            codes.append("409")
        if self.method in ("POST", "PUT", "PATCH"):
            codes.append("415")
        return sorted(codes)

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None or not path.startswith("/api/v1/"):
            return operation
        error_ref = self.resolve_serializer(ErrorSerializer, "response").ref
        responses = operation.setdefault("responses", {})
        for code in self._error_codes():
            if code in responses:
                continue
            responses[code] = {
                "description": _ERROR_DESCRIPTIONS[code],
                "content": {
                    "application/json": {
                        "schema": error_ref,
                        "examples": {
                            "Error": {"value": _ERROR_EXAMPLES[code], "summary": f"A {code}"}
                        },
                    }
                },
            }
            if code == "429":
                responses[code]["headers"] = {
                    "Retry-After": {
                        "schema": {"type": "integer"},
                        "description": "Seconds to wait before retrying.",
                    }
                }
        return operation


def error_example(code: str, summary: str, message: str, **extra) -> OpenApiExample:
    """An OpenApiExample of the error shape, for @extend_schema(examples=[...])."""
    body = {"error": {"code": code, "message": message, **extra}}
    status_code = {"invalid": 400, "operation_in_progress": 409, "invalid_state": 409}.get(
        code, 400
    )
    return OpenApiExample(summary, value=body, response_only=True, status_codes=[str(status_code)])


def actor_for(request) -> Actor:
    """The acting principal of an API request: the token (no user), or the signed-in person."""
    return Actor.from_request(request, via="api")


class OrganizationApiViewSet(FleetApiMixin, OrganizationScopedViewSet):
    """Scoped to the caller's organization (OrganizationScopedViewSet owns get_queryset), JSON
    only, X-RateLimit-* headers, Idempotency-Key on POST, the shared error responses in the
    schema."""

    schema = FleetAutoSchema()
    pagination_class = FleetLimitOffsetPagination
    filter_backends = [FleetFilterBackend, FleetOrderingFilter]
    # Route any path segment to the viewset, so a malformed id is a JSON 404 from DRF rather than
    # Django's HTML 404 for an unmatched URL.
    lookup_value_regex = "[^/]+"

    @property
    def actor(self) -> Actor:
        return actor_for(self.request)
