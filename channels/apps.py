from django.apps import AppConfig


class ChannelsConfig(AppConfig):
    name = "channels"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Channels"

    def ready(self):
        # What instances tells this app (fleet/hooks.py): once an operation leaves a gateway
        # ready, its channels are applied again and their health read; a deploy that came with
        # a channel token (the wizard) asks for a Telegram channel.
        from fleet import hooks

        from . import services
        from .services import health

        hooks.register("instance.ready", health.queue_after_ready)
        hooks.register("instance.channel_requested", services.connect_requested_by_deploy)
