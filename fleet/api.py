"""API plumbing shared by every app: one JSON error shape, rate limits per organization with
their headers, and the Idempotency-Key store.

DRF imports this module while it defines APIView (to read DEFAULT_THROTTLE_CLASSES), so nothing
here may import rest_framework.views' dependents (generics, drf-spectacular's AutoSchema) or a
model at module level. The viewset base that uses all this is accounts/api/base.py.
"""

from __future__ import annotations

import hashlib
import re

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle

from fleet.text import public_text  # also imported from here by the apps

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
    if isinstance(exc, DjangoValidationError) and getattr(exc, "retry_after", None) is not None:
        # A service's rate limit (accounts.services.RateLimited): 429 with Retry-After.
        return exceptions.Throttled(wait=exc.retry_after, detail=" ".join(exc.messages))
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
    # Lazy: rest_framework.views imports this module while it defines APIView.
    from rest_framework.views import exception_handler as drf_exception_handler

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


# --- schema ---------------------------------------------------------------------------------

# PostgreSQL cannot store a NUL character and Django's form and serializer fields refuse one
# (400), so every string the API accepts says so in the schema.
NO_NUL_PATTERN = "^[^\\u0000]*$"


# What str.strip() removes (str.isspace()), spelled out: Python's, ECMA's and Rust's \s differ.
_SPACES = (
    "\\t\\n\\u000b\\u000c\\r \\u001c-\\u001f\\u0085\\u00a0\\u1680\\u2000-\\u200a"
    "\\u2028\\u2029\\u202f\\u205f\\u3000"
)
# A required text that serializers trim (DRF's CharField) must hold something besides spaces.
NON_BLANK_PATTERN = f"^[^\\u0000]*[^\\u0000{_SPACES}][^\\u0000]*$"


def non_blank_text(**kwargs) -> serializers.RegexField:
    """A required, trimmed text field whose schema pattern says what it refuses: only spaces,
    or a NUL character."""
    kwargs.setdefault("error_messages", {"invalid": "Enter some text (not only spaces)."})
    return serializers.RegexField(NON_BLANK_PATTERN, **kwargs)


def _strings_without_nul(schema) -> None:
    if not isinstance(schema, dict) or "$ref" in schema:
        return
    if (
        schema.get("type") == "string"
        and not schema.get("readOnly")
        and not {"enum", "format", "pattern"} & schema.keys()
    ):
        schema["pattern"] = NO_NUL_PATTERN
    for sub in schema.get("properties", {}).values():
        _strings_without_nul(sub)
    for key in ("items", "additionalProperties"):
        _strings_without_nul(schema.get(key))
    for key in ("allOf", "oneOf", "anyOf"):
        for sub in schema.get(key, []):
            _strings_without_nul(sub)


def schema_strings_without_nul(result, generator, request, public):
    """drf-spectacular post-processing hook (SPECTACULAR_SETTINGS): every accepted string (query,
    path and header parameters, request bodies) carries NO_NUL_PATTERN unless it already has a
    pattern, a format or an enum."""
    for methods in result.get("paths", {}).values():
        for operation in methods.values():
            for parameter in operation.get("parameters", []):
                _strings_without_nul(parameter.get("schema"))
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request"):
            _strings_without_nul(component)
    return result


# --- words a customer reads (fleet.text) ------------------------------------------------


class PublicTextField(serializers.CharField):
    """A read-only message field that passes through public_text()."""

    def __init__(self, **kwargs):
        kwargs.setdefault("read_only", True)
        super().__init__(**kwargs)

    def to_representation(self, value):
        return public_text(super().to_representation(value))


class FlatRowsMixin:
    """For list serializers of plain rows: the same output as DRF's to_representation, without
    its per-field, per-row machinery (the readable-fields generator, get_attribute's lookups and
    checks). The plan (field name, attribute, converter) is made once per response: a page of 50
    sessions went from ~18,000 DRF field calls to one loop of plain attribute reads."""

    def _flat_plan(self):
        plan = self.__dict__.get("_flat_rows_plan")
        if plan is None:
            plan = []
            for field in self._readable_fields:
                attrs = field.source_attrs
                attr = attrs[0] if len(attrs) == 1 else None
                plan.append((field.field_name, field.source == "*", attr, field))
            self._flat_rows_plan = plan
        return plan

    def to_representation(self, instance):
        row = {}
        for name, whole, attr, field in self._flat_plan():
            if whole:
                row[name] = field.to_representation(instance)
                continue
            value = getattr(instance, attr) if attr is not None else field.get_attribute(instance)
            row[name] = None if value is None else field.to_representation(value)
        return row


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
    """One bucket per organization token (or per signed-in user), shared by all processes.

    A fixed window counter: one Redis round trip a request (SET NX with the window's expiry, then
    INCR, pipelined), where DRF's SimpleRateThrottle reads, trims and rewrites a list of every
    request's timestamp (1,200 of them at the default rate) on each call. The price: a client may
    spend one window's budget at its end and the next one's at the start of the next."""

    scope = "organization"

    def get_ident(self, request):
        """The client address by the trusted-proxy rule (DRF's own trusts X-Forwarded-For)."""
        from accounts.client_ip import client_ip  # lazy: see the module docstring

        return client_ip(request) or ""

    def get_cache_key(self, request, view):
        token = getattr(request, "auth", None)
        if token is not None and hasattr(token, "organization_id"):
            ident = f"org{token.organization_id}"
        elif request.user and request.user.is_authenticated:
            ident = f"user{request.user.pk}"
        else:
            ident = self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def _count(self, key: str, window: int) -> int:
        """This window's count after adding one request."""
        from django.core.cache.backends.redis import RedisCache

        if isinstance(self.cache, RedisCache):
            raw_key = self.cache.make_and_validate_key(key)
            client = self.cache._cache.get_client(raw_key, write=True)
            pipe = client.pipeline(transaction=False)
            pipe.set(raw_key, 0, ex=window, nx=True)
            pipe.incr(raw_key)
            return pipe.execute()[1]
        self.cache.add(key, 0, window)  # another backend (a test's locmem): two calls
        return self.cache.incr(key)

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        self.now = self.timer()
        window = int(self.duration)
        started = int(self.now) // window * window
        count = self._count(f"{key}:{started}", window)
        self.wait_seconds = started + window - self.now
        state = (self.num_requests, max(0, self.num_requests - count), window)
        request._throttle_state = state
        # The Django request too, for the middleware below.
        django_request = getattr(request, "_request", None)
        if django_request is not None:
            django_request._throttle_state = state
        return count <= self.num_requests

    def wait(self):
        return max(1.0, getattr(self, "wait_seconds", self.duration))


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


def conflict_response(message: str) -> Response:
    return Response({"error": {"code": "conflict", "message": message}}, status=409)
