from django.urls import path

from . import views

app_name = "sessions_mgmt"
urlpatterns = [path("", views.session_list, name="list")]
