"""The egress firewall of tenant containers from the command line (scripts/ensure-firewall.sh).

    manage.py fleet_firewall [ensure]   create the instances' network if missing, install its
                                        rules, verify (exit 1 with the problems)
    manage.py fleet_firewall base       only the dispatch chains and their jumps (make test)
    manage.py fleet_firewall verify     print what is wrong (exit 1), nothing when all is in place
    manage.py fleet_firewall describe   the expected and installed rules as JSON
    manage.py fleet_firewall remove     remove one network's rules

--network defaults to FLEET_NETWORK, --allow (repeatable) to FLEET_EGRESS_ALLOW. Needs root.
"""

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from instances import egress


class Command(BaseCommand):
    help = "Install, verify or describe the egress firewall of tenant containers."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser):
        parser.add_argument(
            "action",
            nargs="?",
            default="ensure",
            choices=["ensure", "base", "install", "verify", "describe", "remove"],
        )
        parser.add_argument("--network", default=None, help="default: FLEET_NETWORK")
        parser.add_argument(
            "--allow",
            action="append",
            default=None,
            help="an allowed endpoint (host:port, cidr:port, gateway:port); default: "
            "FLEET_EGRESS_ALLOW",
        )

    def handle(self, *args, action, network, allow, **options):
        network = network or settings.FLEET_NETWORK
        try:
            if action == "base":
                self._print_changes(egress.install_base())
                self.stdout.write("egress firewall: dispatch chains in place")
                return
            if action == "describe":
                self.stdout.write(json.dumps(egress.describe(network, allow), indent=2))
                return
            if action == "remove":
                egress.remove(network)
                self.stdout.write(f"egress firewall: rules of {network} removed")
                return
            if action == "ensure":
                gateway = egress.local_runtime().ensure_network(network)
                self.stdout.write(f"network {network}: gateway {gateway}")
            if action in ("ensure", "install"):
                self._print_changes(egress.install(network, allow))
        except (egress.EgressError, ValueError) as exc:
            raise CommandError(f"egress firewall: {exc}")
        except Exception as exc:  # noqa: BLE001 - the engine's errors name their fix
            raise CommandError(f"egress firewall: {type(exc).__name__}: {exc}")
        problems = egress.verify(network, allow, runtime=egress.local_runtime())
        if problems:
            raise CommandError(
                "egress firewall: " + "; ".join(problems) + " (run scripts/ensure-firewall.sh)"
            )
        allowed = ", ".join(allow if allow is not None else settings.FLEET_EGRESS_ALLOW) or "none"
        self.stdout.write(f"egress firewall of {network}: verified (allowed: {allowed})")

    def _print_changes(self, changes):
        for line in changes:
            self.stdout.write(f"  {line}")
