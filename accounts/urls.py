from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("org/switch/", views.org_switch, name="org_switch"),
    path("org/new/", views.org_create, name="org_create"),
    path("org/", views.org_settings, name="org_settings"),
    path("org/members/<int:membership_id>/", views.member_update, name="member_update"),
    path(
        "org/invitations/<int:invitation_id>/revoke/",
        views.invitation_revoke,
        name="invitation_revoke",
    ),
    path("invitations/<str:secret>/", views.invitation_accept, name="invitation_accept"),
    path("org/tokens/", views.api_tokens, name="api_tokens"),
    path("org/tokens/<uuid:token_id>/revoke/", views.api_token_revoke, name="api_token_revoke"),
    path("org/audit/", views.audit_log, name="audit_log"),
]
