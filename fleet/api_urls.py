"""/api/v1: each app contributes its own routes from <app>/api/urls.py."""

from django.urls import include, path, re_path

from .api import api_not_found

urlpatterns = [
    path("", include("accounts.api.urls")),
    path("", include("instances.api.urls")),
    path("", include("sessions_mgmt.api.urls")),
    path("", include("billing.api.urls")),
    path("", include("channels.api.urls")),
    path("", include("notifications.api.urls")),
    re_path(r"^.*$", api_not_found),  # unknown API paths get the JSON error shape too
]
