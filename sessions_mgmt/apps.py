from django.apps import AppConfig


class SessionsMgmtConfig(AppConfig):
    name = "sessions_mgmt"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Sessions and backups"

    def ready(self):
        # Operations of kinds backup, restore and prune run through instances' framework.
        from instances.operations import register_handler

        from . import services

        register_handler("backup", services.handle_backup)
        register_handler("restore", services.handle_restore)
        register_handler("prune", services.handle_prune)
