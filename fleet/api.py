"""API plumbing shared by every app: one JSON error shape, rate limits per organization."""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import exception_handler as drf_exception_handler


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The resource is busy."
    default_code = "conflict"


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


def _django_validation_to_drf(exc: DjangoValidationError) -> exceptions.ValidationError:
    if hasattr(exc, "message_dict"):
        return exceptions.ValidationError(exc.message_dict)
    return exceptions.ValidationError({"detail": exc.messages})


def exception_handler(exc, context):
    """Every error is {"error": {"code", "message", "fields"?}}: a code for machines, words for
    people, and per-field messages for a form."""
    if isinstance(exc, DjangoValidationError):
        exc = _django_validation_to_drf(exc)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    code = _CODES.get(response.status_code, "error")
    detail = response.data
    fields = None
    if isinstance(exc, exceptions.ValidationError):
        if isinstance(detail, dict):
            fields = {k: v if isinstance(v, list) else [v] for k, v in detail.items()}
            first_key = next(iter(fields), None)
            first = fields[first_key][0] if first_key else "Invalid input."
            message = (
                str(first)
                if first_key in ("detail", "non_field_errors")
                else (f"{first_key}: {first}")
            )
        else:
            message = str(detail[0]) if isinstance(detail, list) and detail else str(detail)
    else:
        message = str(detail.get("detail", detail)) if isinstance(detail, dict) else str(detail)
        api_code = getattr(getattr(exc, "detail", None), "code", None)
        if isinstance(exc, Conflict) or (api_code and api_code not in ("error", "invalid")):
            code = api_code if isinstance(exc, Conflict) else code
    body = {"error": {"code": code, "message": message}}
    if fields:
        body["error"]["fields"] = fields
    response.data = body
    return response


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
            request._throttle_state = (
                self.num_requests,
                max(0, self.num_requests - len(self.history)),
                int(self.duration),
            )
        return allowed


def rate_limit_headers(get_response):
    """Middleware-style helper: adds X-RateLimit-* headers when a throttle ran."""

    def middleware(request):
        response = get_response(request)
        state = getattr(getattr(request, "_request", request), "_throttle_state", None)
        if state:
            limit, remaining, window = state
            response["X-RateLimit-Limit"] = str(limit)
            response["X-RateLimit-Remaining"] = str(remaining)
            response["X-RateLimit-Window"] = str(window)
        return response

    return middleware


def conflict_response(message: str) -> Response:
    return Response({"error": {"code": "conflict", "message": message}}, status=409)
