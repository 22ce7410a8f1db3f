from django.apps import AppConfig


class InstancesConfig(AppConfig):
    name = "instances"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Operation handlers for the instance lifecycle (sessions_mgmt registers its own kinds).
        from .handlers import register_all

        register_all()
        from . import billing_hooks  # what billing asks of instances (fleet/hooks.py)

        billing_hooks.register()
