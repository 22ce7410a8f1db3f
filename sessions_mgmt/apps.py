from django.apps import AppConfig


class SessionsMgmtConfig(AppConfig):
    name = "sessions_mgmt"
    default_auto_field = "django.db.models.BigAutoField"
