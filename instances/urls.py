"""Dashboard URLs for instances (mounted at /instances/; the dashboard home is /dashboard/)."""

from django.urls import path

from . import views, views_edge

app_name = "instances"
urlpatterns = [
    path("new/", views.deploy, name="deploy"),
    path("fleet/", views.fleet_partial, name="fleet"),
    path("<uuid:pk>/", views.instance_detail, name="detail"),
    path("<uuid:pk>/status/", views.status_partial, name="status"),
    path("<uuid:pk>/logs/", views.logs_partial, name="logs"),
    path("<uuid:pk>/token/", views.reveal_token, name="reveal_token"),
    path("<uuid:pk>/open/", views_edge.open_assistant, name="open_assistant"),
    path("<uuid:pk>/upgrade/", views.instance_upgrade, name="upgrade"),
    path("<uuid:pk>/prices/", views.instance_prices, name="prices"),
    path("<uuid:pk>/delete/", views.instance_delete, name="delete"),
    *[
        path(f"<uuid:pk>/{action}/", views.instance_action, {"action": action}, name=action)
        for action in views.ACTIONS
    ],
    path("<uuid:pk>/operations/<uuid:op_id>/", views.operation_detail, name="operation"),
    path(
        "<uuid:pk>/operations/<uuid:op_id>/progress/",
        views.operation_partial,
        name="operation_progress",
    ),
]
