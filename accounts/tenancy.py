"""The tenancy guard a developer cannot forget.

Dashboard views and API viewsets inherit from the classes here. They own get_queryset: it always
starts from `model.objects.filter(organization=<caller's organization>)` and lets a subclass narrow
it further in `scope_queryset()`. Defining get_queryset in a subclass is refused at import time,
so a forgotten scope is a crash in development, not a data leak in production. Another tenant's
object is therefore never found: a 404, never a 403.
"""

from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.http import Http404
from rest_framework import permissions, viewsets

from . import roles
from .models import Organization


class _RefuseGetQueryset:
    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "get_queryset" in cls.__dict__ and not cls.__dict__.get("_tenancy_base", False):
            raise ImproperlyConfigured(
                f"{cls.__name__} must not define get_queryset; override scope_queryset() instead "
                "so the organization scope cannot be lost."
            )


def organization_for_request(request) -> Organization | None:
    """The caller's organization: the token's for the API, the switcher's for a person."""
    token = getattr(request, "auth", None)
    if token is not None and hasattr(token, "organization"):
        return token.organization
    membership = getattr(request, "membership", None)
    return membership.organization if membership else None


def role_for_request(request) -> str | None:
    token = getattr(request, "auth", None)
    if token is not None and hasattr(token, "organization"):
        return None  # tokens are governed by scopes, not by a role
    membership = getattr(request, "membership", None)
    return membership.role if membership else None


def request_allows(request, permission: str) -> bool:
    token = getattr(request, "auth", None)
    if token is not None and hasattr(token, "scopes"):
        return roles.scopes_allow(token.scopes, permission)
    return roles.role_allows(role_for_request(request), permission)


class OrganizationScopedMixin(_RefuseGetQueryset, LoginRequiredMixin):
    """For dashboard views. Set `model` (with an `organization` field) and `permission`."""

    _tenancy_base = True
    model = None
    permission = roles.VIEW
    organization_lookup = "organization"

    def dispatch(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        self.organization = organization_for_request(request)
        if self.organization is None:
            raise Http404("No organization")
        if not request_allows(request, self.permission):
            raise PermissionDenied("Your role in this organization does not allow that.")
        return super().dispatch(request, *args, **kwargs)

    def scope_queryset(self, queryset):
        return queryset

    def get_queryset(self):
        if self.model is None:
            raise ImproperlyConfigured(f"{type(self).__name__} needs a model")
        base = self.model._default_manager.filter(**{self.organization_lookup: self.organization})
        return self.scope_queryset(base)


class ScopedPermission(permissions.BasePermission):
    """Maps the request to one permission of the table in accounts.roles.

    Viewsets declare `action_permissions = {"restart": roles.OPERATE, ...}`; safe methods need
    VIEW and other methods OPERATE unless the map says otherwise.
    """

    message = "Your role or token scopes do not allow this."

    def has_permission(self, request, view):
        if organization_for_request(request) is None:
            return False
        wanted = getattr(view, "action_permissions", {}).get(getattr(view, "action", None))
        if wanted is None:
            wanted = roles.VIEW if request.method in permissions.SAFE_METHODS else roles.OPERATE
        return request_allows(request, wanted)


class OrganizationScopedViewSet(_RefuseGetQueryset, viewsets.GenericViewSet):
    """For the API. Set `queryset` (its model needs `organization`); narrow in scope_queryset."""

    _tenancy_base = True
    permission_classes = [permissions.IsAuthenticated, ScopedPermission]
    organization_lookup = "organization"
    action_permissions: dict = {}

    @property
    def organization(self) -> Organization:
        return organization_for_request(self.request)

    def scope_queryset(self, queryset):
        return queryset

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular introspection
            return self.queryset.model._default_manager.none()
        base = self.queryset.model._default_manager.filter(
            **{self.organization_lookup: self.organization}
        )
        return self.scope_queryset(base)
