from django.urls import path

from . import views

urlpatterns = [
    path("usage", views.UsageViewSet.as_view({"get": "retrieve"}), name="usage"),
]
