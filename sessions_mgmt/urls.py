from django.urls import path

from . import views

app_name = "sessions_mgmt"
urlpatterns = [
    path("", views.session_list, name="list"),
    path("<int:pk>/", views.session_detail, name="detail"),
    path("<int:pk>/transcript/", views.transcript, name="transcript"),
    path("instances/<uuid:pk>/backups/", views.backup_list, name="backups"),
    path("instances/<uuid:pk>/backups/new/", views.backup_now, name="backup_now"),
    path("instances/<uuid:pk>/backups/<uuid:backup_id>/restore/", views.restore, name="restore"),
    path("instances/<uuid:pk>/retention/", views.retention, name="retention"),
    path("instances/<uuid:pk>/prune/", views.prune, name="prune"),
]
