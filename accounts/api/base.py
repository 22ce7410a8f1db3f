"""The base of every /api/v1 viewset: the tenancy guard plus the shared API behaviour."""

from __future__ import annotations

from accounts.models import ApiToken
from accounts.services import Actor
from accounts.tenancy import OrganizationScopedViewSet
from fleet.api import FleetApiMixin, FleetAutoSchema, FleetLimitOffsetPagination


def actor_for(request) -> Actor:
    """The acting principal of an API request: the token (no user), or the signed-in person."""
    token = request.auth if isinstance(request.auth, ApiToken) else None
    user = None
    if token is None and getattr(request.user, "is_authenticated", False):
        user = request.user
    return Actor(user=user, token=token, ip=request.META.get("REMOTE_ADDR"), via="api")


class OrganizationApiViewSet(FleetApiMixin, OrganizationScopedViewSet):
    """Scoped to the caller's organization (OrganizationScopedViewSet owns get_queryset), JSON
    only, X-RateLimit-* headers, Idempotency-Key on POST, the shared error responses in the
    schema."""

    schema = FleetAutoSchema()
    pagination_class = FleetLimitOffsetPagination

    @property
    def actor(self) -> Actor:
        return actor_for(self.request)
