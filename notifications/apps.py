from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Webhooks and notifications"

    def ready(self):
        # The top of the app chain: it listens to what the apps below tell (fleet/hooks.py).
        from . import handlers

        handlers.register()
