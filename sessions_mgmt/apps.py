from django.apps import AppConfig


class SessionsMgmtConfig(AppConfig):
    name = "sessions_mgmt"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Sessions and backups"

    def ready(self):
        # What instances asks of this app, without importing it (fleet/hooks.py): the operation
        # kinds backup, restore and prune run through its framework; a backup before a risky
        # change; a session sync once an operation leaves a gateway ready; no backup row left
        # "running" by an operation that ended.
        from fleet import hooks

        from . import billing_hooks, handlers
        from .services import backups, mirror

        handlers.register_all()
        billing_hooks.register()
        hooks.register("backup.create", backups.backup_for_operation)
        hooks.register("instance.ready", mirror.queue_sync_after_ready)
        hooks.register("operation.finished", backups.close_unfinished_backups)
