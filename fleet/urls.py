from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from instances import views as instance_views
from instances import views_edge

from . import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    # Caddy's on-demand TLS asks here before it requests a certificate (docs/edge.md).
    path("edge/ask", views_edge.ask, name="edge-ask"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("api/v1/", include("fleet.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("instances/", include("instances.urls")),
    path("sessions/", include("sessions_mgmt.urls")),
    path("billing/", include("billing.urls")),
    path("channels/", include("channels.urls")),
    path("notifications/", include("notifications.urls")),
    # The customer's home after sign-in: the instances dashboard (here, not in accounts.urls,
    # because accounts sits below instances in the app chain).
    path("dashboard/", instance_views.dashboard, name="dashboard"),
    path("", include("accounts.urls")),
]
