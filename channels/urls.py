from django.urls import path

from . import views

app_name = "channels"
urlpatterns = [
    path("instances/<uuid:pk>/", views.channel_list, name="list"),
    path("instances/<uuid:pk>/<uuid:channel_pk>/policy/", views.channel_policy, name="policy"),
    path("instances/<uuid:pk>/<uuid:channel_pk>/remove/", views.channel_remove, name="remove"),
    path(
        "instances/<uuid:pk>/<uuid:channel_pk>/pairing/<str:decision>/",
        views.pairing_decide,
        name="pairing",
    ),
]
