"""The dashboard never shows engine URLs, host ports, container names or host paths in a stored
message (Instance.status_message, Operation.error and step details, Backup.error, event messages,
channel errors): every customer-facing render passes the `public` filter (fleet.text)."""
# Addresses here are only rendered as text, never contacted.

import re
from pathlib import Path

import pytest
from django.urls import reverse

from instances.models import Instance, InstanceEvent, Operation
from tests.factories import BackupFactory, OperationFactory

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
ENGINE = "unix:///var/run/docker.sock"
PORT = "127.0.0.1:19188/readyz"
HOST_PATH = "/var/lib/clawfleet/backups/alice/2026.tar.zst"
LEAKS = ("unix://", "docker.sock", "127.0.0.1:19188/readyz", "/var/lib/clawfleet", "clawfleet-")


def _leaky_world(instance):
    container = instance.container_name
    Instance.objects.filter(pk=instance.pk).update(
        status=Instance.Status.FAILED,
        status_message=f"OpenClaw did not become ready: {PORT} not ready after 120s",
    )
    op = OperationFactory(
        instance=instance,
        state=Operation.State.FAILED,
        error=f"EngineUnavailable: {ENGINE}: connection refused",
        error_detail=f"EngineUnavailable: {ENGINE}: connection refused",
        steps=[
            {"name": "Create volume", "state": "done"},
            {"name": "Start container", "state": "failed", "detail": f"{container} exited"},
        ],
    )
    BackupFactory(
        instance=instance,
        state="failed",
        error=f"The backup failed (OSError: {HOST_PATH}: no space left)",
    )
    InstanceEvent.objects.create(
        instance=instance, kind="orphan_removed", message=f"Removed container {container}"
    )
    return op


def test_no_customer_page_shows_engine_urls_ports_container_names_or_paths(
    alice_client, alice_instance, fake_runtime
):
    op = _leaky_world(alice_instance)
    pk = alice_instance.pk
    pages = {
        "dashboard": alice_client.get(reverse("dashboard")),
        "fleet": alice_client.get(reverse("instances:fleet"), **HTMX),
        "detail": alice_client.get(reverse("instances:detail", args=[pk])),
        "status": alice_client.get(reverse("instances:status", args=[pk]), **HTMX),
        "operation": alice_client.get(reverse("instances:operation", args=[pk, op.pk])),
        "progress": alice_client.get(
            reverse("instances:operation_progress", args=[pk, op.pk]), **HTMX
        ),
        "backups": alice_client.get(reverse("sessions_mgmt:backups", args=[pk])),
    }
    for name, response in pages.items():
        assert response.status_code == 200, name
        body = response.content.decode()
        for leak in LEAKS:
            assert leak not in body, (name, leak)
    detail = pages["detail"].content.decode()
    # The message itself is still there, only the address is gone.
    assert "OpenClaw did not become ready: [address hidden]" in detail
    assert "connection refused" in pages["operation"].content.decode()
    assert "[name hidden] exited" in pages["operation"].content.decode()
    assert "Removed container [name hidden]" in detail
    assert "no space left" in pages["backups"].content.decode()


def test_staff_admin_keeps_the_detail(alice_instance, client, django_user_model):
    from tests.admin.door import sign_in_staff
    from tests.factories import UserFactory

    op = _leaky_world(alice_instance)
    staff = UserFactory(email="root@clawfleet.test", is_staff=True, is_superuser=True)
    sign_in_staff(client, staff)
    body = client.get(reverse("admin:instances_operation_change", args=[op.pk])).content.decode()
    assert ENGINE in body


# The fields that hold stored messages, as the templates name them. Every customer-facing
# template that prints one passes it through `public` (the staff admin's templates are exempt).
# (base.html's bare `{{ message }}` is a flash message our views compose, not a stored one.)
MESSAGE_FIELD = re.compile(
    r"\{\{\s*(?:(?:\w+\.)+(?:status_message|error|detail|last_error|message)|error)\b(?!\.)"
    r"(?P<rest>[^}]*)\}\}"
)


def test_every_customer_template_cleans_stored_messages():
    root = Path(__file__).resolve().parents[2] / "templates"
    offenders = []
    for path in root.rglob("*.html"):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("admin/", "allauth/", "account/", "notifications/")):
            continue  # staff pages; allauth's own texts; a customer's own webhook URLs
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for m in MESSAGE_FIELD.finditer(line):
                if not m.group("rest").lstrip().startswith("|public"):
                    offenders.append(f"{rel}:{n}: {m.group(0)}")
    assert offenders == []


def test_with_the_edge_on_the_fleet_table_shows_public_addresses_never_host_ports(
    settings, alice_client, alice_instance
):
    settings.FLEET_EDGE_ADMIN_URL = "http://127.0.0.1:9"  # only read, never contacted here
    Instance.objects.filter(pk=alice_instance.pk).update(edge_label="alice-bot-alice")
    for body in (
        alice_client.get(reverse("dashboard")).content.decode(),
        alice_client.get(reverse("instances:fleet"), **HTMX).content.decode(),
        alice_client.get(reverse("instances:detail", args=[alice_instance.pk])).content.decode(),
    ):
        assert "127.0.0.1:19188" not in body
        assert "https://alice-bot-alice." in body
    Instance.objects.filter(pk=alice_instance.pk).update(status=Instance.Status.STOPPED)
    for url in (reverse("dashboard"), reverse("instances:detail", args=[alice_instance.pk])):
        body = alice_client.get(url).content.decode()
        assert "127.0.0.1:19188" not in body  # not live: no public address yet, and no host port
