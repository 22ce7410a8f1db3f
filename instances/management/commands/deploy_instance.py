"""Deploy an instance from the command line through the same service as the dashboard."""

import time

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.models import Organization
from accounts.services import Actor
from instances import services
from instances.models import Operation


class Command(BaseCommand):
    help = "Deploy an OpenClaw instance for an organization (API keys: prefer --api-key-env)."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="Organization slug")
        parser.add_argument("--name", required=True)
        parser.add_argument("--openclaw-version", dest="openclaw_version")
        parser.add_argument("--memory-mb", type=int)
        parser.add_argument("--cpus")
        parser.add_argument("--provider", default="openai")
        parser.add_argument("--model", dest="model_name", default="gpt-4o-mini")
        parser.add_argument("--base-url", dest="model_base_url", default="")
        parser.add_argument("--api-key-env", help="Read the provider API key from this env var")
        parser.add_argument("--client-name", default="")
        parser.add_argument("--external-id")
        parser.add_argument("--wait", action="store_true", help="Wait for the deploy to finish")
        parser.add_argument("--timeout", type=int, default=300)

    def handle(self, *args, **o):
        import os

        try:
            org = Organization.objects.get(slug=o["org"])
        except Organization.DoesNotExist as exc:
            raise CommandError(f"no organization {o['org']}") from exc
        api_key = os.environ.get(o["api_key_env"], "") if o["api_key_env"] else ""
        try:
            op = services.instance_deploy(
                actor=Actor(via="cli"),
                organization=org,
                name=o["name"],
                openclaw_version=o["openclaw_version"],
                memory_mb=o["memory_mb"],
                cpus=o["cpus"],
                provider=o["provider"],
                model_name=o["model_name"],
                api_key=api_key,
                model_base_url=o["model_base_url"],
                external_id=o["external_id"],
                client_name=o["client_name"],
            )
        except ValidationError as exc:
            lines = [f"{k}: {' '.join(v)}" for k, v in getattr(exc, "message_dict", {}).items()]
            raise CommandError("; ".join(lines) or " ".join(exc.messages)) from exc
        instance = op.instance
        self.stdout.write(
            f"instance {instance.name} ({instance.pk}) on {instance.host.name}:"
            f"{instance.host_port}; operation {op.pk} queued"
        )
        if not o["wait"]:
            return
        deadline = time.monotonic() + o["timeout"]
        while time.monotonic() < deadline:
            op.refresh_from_db()
            if not op.is_active:
                break
            time.sleep(1)
        if op.state != Operation.State.SUCCEEDED:
            raise CommandError(f"deploy {op.state}: {op.error or 'timed out'}")
        self.stdout.write(self.style.SUCCESS(f"running at {instance.gateway_url}"))
