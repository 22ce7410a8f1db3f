from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter(trailing_slash=False)
router.register("members", views.MemberViewSet, basename="member")
router.register("tokens", views.ApiTokenViewSet, basename="api-token")
router.register("audit-events", views.AuditEventViewSet, basename="audit-event")

urlpatterns = [
    path(
        "organization",
        views.OrganizationViewSet.as_view({"get": "retrieve"}),
        name="organization-detail",
    ),
    *router.urls,
]
