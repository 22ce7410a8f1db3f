from django.urls import path

from . import views

app_name = "billing"
urlpatterns = [
    path("", views.plans, name="plans"),
    path("costs/", views.costs, name="costs"),
]
