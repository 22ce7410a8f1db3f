from django.urls import path

from . import views

urlpatterns = [
    path(
        "usage/export", views.UsageExportViewSet.as_view({"get": "retrieve"}), name="usage-export"
    ),
    path("usage", views.UsageViewSet.as_view({"get": "retrieve"}), name="usage"),
]
