"""Customer-facing errors never show engine URLs, addresses or host paths."""
# Private addresses here are only validated or rendered as text, never contacted: the reachability
# tests send packets only to stand-in hosts in network namespaces they create (tests/security).

from __future__ import annotations

import pytest

from fleet.api import public_text
from instances.models import Instance, Operation
from sessions_mgmt.models import Backup

from .conftest import API, token_client

ENGINE = "tcp://10.20.30.40:2376"
HOST_PATH = "/var/lib/clawfleet/backups/alice/2026.tar.zst"


def test_operation_errors_steps_backups_and_status_hide_engine_addresses_and_paths(world):
    Operation.objects.filter(pk=world.operation.pk).update(
        state=Operation.State.FAILED,
        error=f"EngineUnavailable: {ENGINE}: connection refused",
        steps=[{"name": "volume", "state": "failed", "detail": f"cannot write {HOST_PATH}"}],
    )
    Backup.objects.filter(pk=world.backup.pk).update(
        state=Backup.State.FAILED, error=f"The backup failed (OSError: {HOST_PATH}: no space)"
    )
    Instance.objects.filter(pk=world.running.pk).update(
        status_message="OpenClaw did not become ready: 127.0.0.1:19123/readyz not ready"
    )
    api = token_client(world.alice_secret)
    bodies = [
        api.get(f"{API}/operations/{world.operation.pk}").content.decode(),
        api.get(f"{API}/operations").content.decode(),
        api.get(f"{API}/backups/{world.backup.pk}").content.decode(),
        api.get(f"{API}/instances/{world.running.pk}").content.decode(),
    ]
    for body in bodies:
        for leak in ("tcp://", "10.20.30.40", "/var/lib", "127.0.0.1:19123"):
            assert leak not in body
    assert "connection refused" in bodies[0] and "[address hidden]" in bodies[0]
    assert "cannot write [path hidden]" in bodies[0]
    assert "no space" in bodies[2]


@pytest.mark.parametrize(
    "text",
    [
        "Crashed 3 times within 300 s; not restarting it again.",
        "OpenClaw 2026.9.6 is not available on this host.",
        "Start the instance to read its transcripts; read/write and/or retry.",
    ],
)
def test_ordinary_messages_pass_unchanged(text):
    assert public_text(text) == text


@pytest.mark.parametrize(
    "leak",
    [
        "unix:///var/run/docker.sock",
        "ssh://root@engine-2",
        "http://192.168.1.9:8080/v1",
        "[fd00::12]:2376",
        "/srv/clawfleet/var/backups/x",
    ],
)
def test_engine_urls_addresses_and_host_paths_are_hidden(leak):
    assert leak not in public_text(f"failed: {leak}: refused")
