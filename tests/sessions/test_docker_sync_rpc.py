"""The session mirror over the gateway RPC transport, on the real engine, image and mock LLM.

One deployed gateway for the module's one scenario (pytest-django flushes the tables after a
transactional test, so the steps share one test). Sessions are created through OpenClaw's own
store the way bench/sessions does (`sessions.create` over the WebSocket RPC), changed with
`sessions.patch` and removed with `sessions.delete`; the mirror is compared with OpenClaw's own
`sessions.list` field by field after each step.

The broken gateways sit beside the real one in the same sync run: one whose port nobody
listens on (down), one that is a SIGSTOPped process (accepts, never answers) and one that
answers garbage. Each fails with a reason a user sees (an InstanceEvent), the real one syncs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from instances.models import Instance, InstanceEvent
from instances.openclaw import gateway_rpc as rpc
from sessions_mgmt import services, tasks
from sessions_mgmt.models import Session

from ..fleet_fixtures import deploy_and_wait

pytestmark = [pytest.mark.docker, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

N_SESSIONS = 100

GARBAGE_SERVER = textwrap.dedent(
    """
    import http.server, sys
    class H(http.server.BaseHTTPRequestHandler):
        def _answer(self):
            body = b"<html>this is not an RPC answer</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        do_GET = do_POST = _answer
        def log_message(self, *a):
            pass
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", GARBAGE_SERVER, str(port)])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            import time

            time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"the stand-in gateway on {port} did not start")


def mirror_view(instance) -> dict[str, tuple]:
    return {
        s.session_key: (s.session_id, s.agent_id, s.channel, s.status, s.openclaw_updated_ms)
        for s in Session.objects.filter(instance=instance).exclude(status=Session.Status.PRUNED)
    }


def openclaw_view(client) -> dict[str, tuple]:
    return {
        r.key: (
            r.session_id,
            r.agent_id,
            r.channel,
            Session.Status.ARCHIVED if r.archived else Session.Status.LIVE,
            r.updated_ms,
        )
        for r in client.list_sessions().rows
    }


def concurrent_list(ep) -> dict:
    """One sessions.list on a socket of its own (never a pooled one), as a fresh process would."""
    sock = rpc._connect(ep, timeout=20, limit=1 << 22)
    try:
        return rpc.answer_of(
            "sessions.list", sock.request("sessions.list", {"limit": 1}, timeout=20)
        )
    finally:
        sock.close()


def synced(instance, **kwargs):
    instance.refresh_from_db()
    result = services.sync_instance_sessions(instance=instance, **kwargs)
    for _ in range(5):  # OpenClaw's usage cache can still be warming up right after a start
        if not result.pending:
            break
        instance.refresh_from_db()
        result = services.sync_instance_sessions(instance=instance)
    return result


def broken_instance(org, host, name: str, port: int) -> Instance:
    return Instance.objects.create(
        organization=org,
        name=name,
        openclaw_version="2026.9.6",
        status=Instance.Status.RUNNING,
        host=host,
        host_port=port,
        provider="custom",
        model_name="mock-model",
        gateway_token="broken-gateway-" + "x" * 20,
    )


def test_the_mirror_equals_openclaws_list_over_rpc_and_a_broken_gateway_fails_alone(
    alice_org,
    entitled_org,
    mock_prices,
    mock_llm,
    openclaw_image,
    docker_runtime,
    celery_worker_process,
    settings,
):
    entitled_org(alice_org, max_instances=10)
    instance, _ = deploy_and_wait(
        alice_org, name=f"rpc-{uuid.uuid4().hex[:6]}", base_url=mock_llm.container_url
    )
    client = services.client_for(instance)
    keys = [f"agent:main:rpc-test-{i:04d}" for i in range(N_SESSIONS)]
    for key in keys:
        client.call("sessions.create", {"key": key})
    # The client says which transport it used: sessions.* over the paired WebSocket ...
    assert client.last_transport == "ws-rpc"
    # ... and the admin allowlist over the HTTP admin RPC, not a CLI in the container.
    assert "hash" in client.call("config.get", {})
    assert client.last_transport == "http-rpc"

    # 0. Processes of the control plane meeting an unpaired gateway at the same moment (the web
    # and a worker after a deploy) all get through: one approval wins, the others connect again.
    ep = client.endpoint
    rpc.http_call(
        ep.base_url,
        ep.token,
        "device.pair.remove",
        {"deviceId": rpc.device().id},
        timeout=10,
        limit=1 << 20,
    )
    rpc.POOL.drop(ep.key)
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: concurrent_list(ep), range(4)))
    assert all("sessions" in a for a in answers), answers

    # 1. First sync: the mirror equals OpenClaw's list, field by field.
    first = synced(instance, full=True)
    # (the deploy's own sync in the worker may have mirrored some of them already)
    assert first.created + first.updated + first.unchanged >= N_SESSIONS
    assert mirror_view(instance) == openclaw_view(client)
    assert set(keys) <= set(mirror_view(instance))

    # An unchanged re-sync asks one question and writes nothing.
    again = synced(instance, full=False)
    assert again.quick and again.created == again.updated == 0

    # 2. One in a hundred changed (a label) and one archived: the incremental sync follows.
    client.call("sessions.patch", {"key": keys[1], "label": "renamed by the test"})
    described = {r.key: r for r in client.list_sessions().rows}
    client.call(
        "sessions.patch",
        {"key": keys[2], "archived": True, "expectedSessionId": described[keys[2]].session_id},
    )
    changed = synced(instance, full=False)
    assert changed.updated >= 2 and not changed.full
    assert mirror_view(instance) == openclaw_view(client)
    assert Session.objects.get(instance=instance, session_key=keys[2]).status == "archived"

    # 3. Deletions: the rows OpenClaw no longer lists are marked pruned, the rest equal.
    for key in keys[3:6]:
        client.call("sessions.delete", {"key": key})
    gone = synced(instance, full=False)
    assert gone.pruned == 3
    assert mirror_view(instance) == openclaw_view(client)
    pruned = Session.objects.filter(instance=instance, session_key__in=keys[3:6])
    assert {s.status for s in pruned} == {"pruned"}

    # 4. A gateway that is down, one SIGSTOPped (slow), one answering garbage, beside the real
    # one in the same run: each fails with a recorded reason, the real one still syncs.
    settings.FLEET_SESSION_SYNC_TIMEOUT = 3
    down = broken_instance(alice_org, instance.host, "down", free_port())
    slow_port, garbage_port = free_port(), free_port()
    slow_proc, garbage_proc = start_server(slow_port), start_server(garbage_port)
    try:
        os.kill(slow_proc.pid, signal.SIGSTOP)
        slow = broken_instance(alice_org, instance.host, "slow", slow_port)
        garbage = broken_instance(alice_org, instance.host, "garbage", garbage_port)
        client.call("sessions.create", {"key": "agent:main:rpc-test-after"})
        for pk in (down.pk, slow.pk, garbage.pk, instance.pk):
            tasks.sync_instance_sessions_task(str(pk))
    finally:
        os.kill(slow_proc.pid, signal.SIGCONT)
        for proc in (slow_proc, garbage_proc):
            proc.kill()
            proc.wait()
    assert Session.objects.filter(instance=instance, session_key="agent:main:rpc-test-after")
    assert mirror_view(instance) == openclaw_view(client)
    reasons = {}
    for broken in (down, slow, garbage):
        events = InstanceEvent.objects.filter(instance=broken, kind="sessions_sync_failed")
        assert events.count() == 1, broken.name
        reasons[broken.name] = events.get().message
        assert not Session.objects.filter(instance=broken).exists()
    assert reasons["down"].startswith("gateway unavailable"), reasons
    assert reasons["slow"].startswith("gateway unavailable"), reasons
    assert reasons["garbage"].startswith("gateway error"), reasons
    assert "token" not in " ".join(reasons.values()).lower()
    assert not InstanceEvent.objects.filter(instance=instance, kind="sessions_sync_failed")
