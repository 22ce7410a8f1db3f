"""Ensure the local Host row and the instances' Docker network exist. Idempotent (`make run`)."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from instances import placement
from instances.runtime import runtime_for


class Command(BaseCommand):
    help = "Ensure the local Docker host and the clawfleet network exist (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--no-engine", action="store_true", help="Only ensure the Host row (no Docker calls)."
        )

    def handle(self, *args, no_engine=False, **options):
        host = placement.ensure_local_host()
        self.stdout.write(
            f"host {host.name}: {host.base_url} (ports {host.port_range_start}-"
            f"{host.port_range_end}, {host.memory_mb} MB, {host.max_instances} max)"
        )
        if no_engine:
            return
        from instances.runtime import EngineUnavailable

        rt = runtime_for(host)
        try:
            gateway = rt.ensure_network(settings.FLEET_NETWORK)
        except EngineUnavailable as exc:
            raise CommandError(f"{exc}") from exc
        self.stdout.write(f"network {settings.FLEET_NETWORK}: gateway {gateway}")
        missing = [
            v
            for v in settings.FLEET_OPENCLAW_VERSIONS
            if not rt.image_exists(settings.FLEET_OPENCLAW_IMAGE.format(version=v))
        ]
        if missing:
            self.stdout.write(
                self.style.WARNING(
                    "missing images for "
                    + ", ".join(missing)
                    + ": run images/openclaw/build.sh "
                    + " ".join(missing)
                )
            )
        self.stdout.write(self.style.SUCCESS("fleet ready"))
