"""/api/v1: each app contributes its own routes from <app>/api/urls.py."""

from django.urls import include, path

urlpatterns = [
    path("", include("accounts.api.urls")),
    path("", include("instances.api.urls")),
    path("", include("sessions_mgmt.api.urls")),
    path("", include("billing.api.urls")),
]
