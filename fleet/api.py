"""API plumbing shared by every app: one JSON error shape, rate limits per organization, rate-limit
headers, Idempotency-Key replays, pagination and the OpenAPI additions every operation shares.

Nothing here imports a model at module level: DRF imports this module while it reads its settings
(the throttle and the exception handler), which can happen before the app registry is ready.
"""

from __future__ import annotations

import hashlib
import json
import re

from django.core.cache import cache
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import CursorPagination, LimitOffsetPagination
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import exception_handler as drf_exception_handler

# --- errors ---------------------------------------------------------------------------------


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The resource is busy."
    default_code = "conflict"


class OperationInProgressError(Conflict):
    default_detail = "An operation is in progress on this instance. Wait for it to finish."
    default_code = "operation_in_progress"


_CODES = {
    400: "invalid",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    415: "unsupported_media_type",
    429: "rate_limited",
}
# Codes an exception may carry that are worth passing on instead of the status' generic one.
_PASS_THROUGH_CODES = {"operation_in_progress", "invalid_state", "idempotency_key_reused"}


def _django_validation_to_drf(exc: DjangoValidationError) -> exceptions.APIException:
    if hasattr(exc, "error_dict"):
        return exceptions.ValidationError(exc.message_dict)
    codes = {getattr(e, "code", None) for e in exc.error_list}
    if "invalid_state" in codes:
        # The request was well formed but the instance is in a state that does not allow it.
        return Conflict(" ".join(exc.messages), code="invalid_state")
    return exceptions.ValidationError({"detail": exc.messages})


def _translate(exc):
    """Django and service exceptions as DRF exceptions (None: leave it alone)."""
    if isinstance(exc, DjangoValidationError):
        return _django_validation_to_drf(exc)
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied(str(exc) or None)
    if isinstance(exc, Http404):
        return exceptions.NotFound()
    # Lazy: instances imports models, this module must not (see the module docstring).
    from instances.operations import OperationInProgress

    if isinstance(exc, OperationInProgress):
        return OperationInProgressError(str(exc))
    return exc


def _message_for_fields(fields: dict) -> str:
    first_key = next(iter(fields), None)
    if first_key is None:
        return "Invalid input."
    first = fields[first_key][0] if fields[first_key] else "Invalid input."
    while isinstance(first, dict | list):  # nested serializer errors
        first = next(iter(first.values()), "Invalid input.") if isinstance(first, dict) else first
        if isinstance(first, list):
            first = first[0] if first else "Invalid input."
    if first_key in ("detail", "non_field_errors"):
        return str(first)
    return f"{first_key}: {first}"


def exception_handler(exc, context):
    """Every error is {"error": {"code", "message", "fields"?}}: a code for machines, words for
    people, and per-field messages for a form (400 only)."""
    exc = _translate(exc)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    code = _CODES.get(response.status_code, "error")
    detail = response.data
    fields = None
    if isinstance(exc, exceptions.ValidationError):
        if isinstance(detail, dict):
            fields = {k: v if isinstance(v, list) else [v] for k, v in detail.items()}
            if set(fields) == {"detail"}:
                message, fields = " ".join(str(m) for m in fields["detail"]), None
            else:
                message = _message_for_fields(fields)
        else:
            message = str(detail[0]) if isinstance(detail, list) and detail else str(detail)
    else:
        message = str(detail.get("detail", detail)) if isinstance(detail, dict) else str(detail)
        api_code = getattr(getattr(exc, "detail", None), "code", None)
        if api_code in _PASS_THROUGH_CODES:
            code = api_code
    body = {"error": {"code": code, "message": message}}
    if fields:
        body["error"]["fields"] = fields
    response.data = body
    return response


def api_not_found(request, *args, **kwargs):
    """A plain Django view for unknown /api/v1 paths, so they answer JSON too (see docs/api.md)."""
    body = {"error": {"code": "not_found", "message": "No such API endpoint."}}
    return JsonResponse(body, status=404)


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Machine-readable, e.g. not_found, invalid.")
    message = serializers.CharField(help_text="For people.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.JSONField()),
        required=False,
        help_text="Only on 400: messages per input field.",
    )


class ErrorSerializer(serializers.Serializer):
    """The one error shape of the API."""

    error = ErrorDetailSerializer()


# --- rate limits ----------------------------------------------------------------------------


class OrganizationRateThrottle(SimpleRateThrottle):
    """One bucket per organization token (or per signed-in user), shared by all processes."""

    scope = "organization"

    def get_cache_key(self, request, view):
        token = getattr(request, "auth", None)
        if token is not None and hasattr(token, "organization_id"):
            ident = f"org{token.organization_id}"
        elif request.user and request.user.is_authenticated:
            ident = f"user{request.user.pk}"
        else:
            ident = self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def allow_request(self, request, view):
        allowed = super().allow_request(request, view)
        if hasattr(self, "history"):
            state = (
                self.num_requests,
                max(0, self.num_requests - len(self.history)),
                int(self.duration),
            )
            request._throttle_state = state
            # The Django request too, for the middleware below.
            django_request = getattr(request, "_request", None)
            if django_request is not None:
                django_request._throttle_state = state
        return allowed


def _set_rate_limit_headers(response, state) -> None:
    if state and "X-RateLimit-Limit" not in response:
        limit, remaining, window = state
        response["X-RateLimit-Limit"] = str(limit)
        response["X-RateLimit-Remaining"] = str(remaining)
        response["X-RateLimit-Window"] = str(window)


def rate_limit_headers(get_response):
    """Middleware: adds X-RateLimit-* headers when a throttle ran. API viewsets on FleetApiMixin
    already set them; this one is for other DRF views (optional)."""

    def middleware(request):
        response = get_response(request)
        _set_rate_limit_headers(response, getattr(request, "_throttle_state", None))
        return response

    return middleware


# --- pagination -----------------------------------------------------------------------------


class FleetLimitOffsetPagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 200


class FleetCursorPagination(CursorPagination):
    """For the long, growing lists (sessions, audit events): stable under inserts, O(1) pages."""

    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200
    ordering = "-created_at"


# --- Idempotency-Key ------------------------------------------------------------------------

IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_TTL = 24 * 3600
IDEMPOTENCY_LOCK_TTL = 60
_KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, no spaces


class _Replay(Exception):  # noqa: N818 - control flow, never escapes the view
    def __init__(self, stored: dict):
        self.stored = stored


def _idempotency_cache_key(organization_id, method: str, path: str, key: str) -> str:
    digest = hashlib.sha256(f"{method} {path} {key}".encode()).hexdigest()
    return f"idempotency:org{organization_id}:{digest}"


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
        from accounts.tenancy import organization_for_request

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
    "400": {"error": {"code": "invalid", "message": "name: This field is required.",
                      "fields": {"name": ["This field is required."]}}},  # fmt: skip
    "401": {"error": {"code": "unauthenticated",
                      "message": "This token is invalid, expired or revoked."}},  # fmt: skip
    "403": {"error": {"code": "forbidden",
                      "message": "Your role or token scopes do not allow this."}},  # fmt: skip
    "404": {"error": {"code": "not_found", "message": "Not found."}},
    "409": {"error": {"code": "operation_in_progress", "message":
                      "An operation is in progress on this instance (deploy). "
                      "Wait for it to finish."}},  # fmt: skip
    "415": {"error": {"code": "unsupported_media_type",
                      "message": 'Unsupported media type "text/plain" in request.'}},  # fmt: skip
    "429": {"error": {"code": "rate_limited",
                      "message": "Request was throttled. Expected available in 12 seconds."}},  # fmt: skip
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


def conflict_response(message: str) -> Response:
    return Response({"error": {"code": "conflict", "message": message}}, status=409)
