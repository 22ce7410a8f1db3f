"""One reconcile pass over every active host; prints each correction."""

from django.core.management.base import BaseCommand

from instances.models import Host
from instances.reconcile import reconcile_host


class Command(BaseCommand):
    help = "Run one reconcile pass (restart crashed instances, remove orphans) and print it."

    def add_arguments(self, parser):
        parser.add_argument("--host", help="Only this host (by name).")

    def handle(self, *args, host=None, **options):
        hosts = Host.objects.filter(is_active=True)
        if host:
            hosts = hosts.filter(name=host)
        total = 0
        for h in hosts:
            corrections = reconcile_host(h)
            h.refresh_from_db(fields=["last_error"])
            if h.last_error:
                self.stdout.write(self.style.ERROR(f"{h.name}: {h.last_error}"))
            for c in corrections:
                self.stdout.write(f"{h.name}: {c}")
            total += len(corrections)
        self.stdout.write(f"{total} correction(s)")
