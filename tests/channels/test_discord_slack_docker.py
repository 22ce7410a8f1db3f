"""Discord and Slack in a real gateway of the real image, against the local peers
(tests/channels/provider_peers.py): the plugins load as bundled (no trust refusal), both accounts
connect (Discord's Gateway WebSocket READY, Slack's socket mode hello), and a token the peer stops
accepting shows in OpenClaw's own status as the reason the channel is broken.

One gateway container for the module, on the test network, with OpenClaw's own process-wide API
overrides `DISCORD_API_URL` / `SLACK_API_URL` pointing at the peer on the network's gateway (the
egress policy allows that port, as for the Telegram peer). The config is the one a channel
writes (build_channel_config).
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid

import pytest
from django.conf import settings

from channels.services import health
from instances import specs
from instances.openclaw import config as oc
from instances.openclaw import files
from tests.channels.provider_peers import ProviderPeer
from tests.fleet_fixtures import TEST_NETWORK

pytestmark = [pytest.mark.docker]

IMAGE_VERSION = "2026.9.6"
DISCORD_TOKEN = "MTIz.GhIj.abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH"
SLACK_TOKEN = "xoxb-1-2-abc"
SLACK_APP_TOKEN = "xapp-1-A-2-b"
# The Discord plugin accepts an API override over HTTPS or loopback HTTP only ("Discord endpoint
# REST API base URL must use HTTPS or loopback HTTP"): inside the container a few lines of node
# forward 127.0.0.1:FORWARD_PORT to the peer (REST and the Gateway WebSocket, same origin).
FORWARD_PORT = 18790
LOOPBACK_FORWARDER = (
    "const net=require(`net`);net.createServer(c=>{const u=net.connect("
    "+process.env.PEER_PORT,process.env.PEER_HOST);c.pipe(u);u.pipe(c);"
    "c.on(`error`,()=>u.destroy());u.on(`error`,()=>c.destroy())})"
    f".listen({FORWARD_PORT},`127.0.0.1`)"
)


def status(container) -> dict:
    code, out = container.exec_run(
        ["openclaw", "gateway", "call", "channels.status", "--params", '{"probe":true}', "--json"],
        user="1000:1000",
    )
    text = out.decode(errors="replace")
    assert code == 0, text[-1500:]
    return json.loads(text[text.index("{") :])


def wait_state(container, want_healthy: bool, timeout: float = 150) -> dict:
    deadline = time.monotonic() + timeout
    states: dict = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(AssertionError, ValueError):
            payload = status(container)
            states = {k: health.account_state(payload, k) for k in ("discord", "slack")}
            if all(s["healthy"] is want_healthy and not s["settling"] for s in states.values()):
                return states
        time.sleep(3)
    raise AssertionError(f"wanted healthy={want_healthy}, OpenClaw says {states}")


@pytest.fixture(scope="module")
def gateway(docker_runtime, openclaw_image):
    from instances import egress

    rt = docker_runtime
    image = openclaw_image[IMAGE_VERSION]
    net_gateway = rt.network_gateway(TEST_NETWORK)
    peer = ProviderPeer(["127.0.0.1", net_gateway]).start()
    peer.discord_tokens[DISCORD_TOKEN] = {
        "id": "123",
        "username": "fleet_discord",
        "bot": True,
        "discriminator": "0",
    }
    peer.slack_tokens[SLACK_TOKEN] = {
        "user": "fleet_slack",
        "user_id": "U1",
        "team": "Acme",
        "team_id": "T1",
        "bot_id": "B1",
    }
    peer.slack_app_tokens.add(SLACK_APP_TOKEN)
    saved_allow = list(settings.FLEET_EGRESS_ALLOW)
    settings.FLEET_EGRESS_ALLOW = [*saved_allow, f"gateway:{peer.port}"]
    egress.install(TEST_NETWORK, runtime=rt)

    tag = uuid.uuid4().hex[:8]
    volume = f"clawfleet-test-dcsl-{tag}"
    rt.ensure_volume(volume, {specs.PLANE_LABEL: specs.plane_id()})
    config = oc.build_config(
        gateway_token="t" * 32,
        provider_id="custom",
        base_url="http://127.0.0.1:9/v1",
        api_key="x",
        model_id="m",
        model_name="m",
        prices={},
        context_window=1000,
        max_tokens=100,
    )
    for part in (
        oc.build_channel_config("discord", token=DISCORD_TOKEN),
        oc.build_channel_config("slack", token=SLACK_TOKEN, extra_token=SLACK_APP_TOKEN),
    ):
        config = oc.merge_owned(config, part, oc.channel_owned_paths(next(iter(part["channels"]))))
    rt.write_file(volume, image, files.CONFIG_FILE, files.render(config))
    container = rt.client.containers.run(
        image,
        ["sh", "-c", f"node -e '{LOOPBACK_FORWARDER}' & exec openclaw gateway --bind lan"],
        name=f"clawfleet-test-dcsl-{tag}",
        hostname=f"oc-dcsl-{tag}",
        detach=True,
        network=TEST_NETWORK,
        user="1000:1000",
        init=True,
        environment={
            "OPENCLAW_NO_RESPAWN": "1",
            "PEER_HOST": net_gateway,
            "PEER_PORT": str(peer.port),
            "DISCORD_API_URL": f"http://127.0.0.1:{FORWARD_PORT}/discord",
            "SLACK_API_URL": f"{peer.url_for(net_gateway)}/slack/",
        },
        volumes={volume: {"bind": "/home/node/.openclaw", "mode": "rw"}},
        labels={specs.PLANE_LABEL: specs.plane_id()},
    )
    try:
        yield container, peer
    finally:
        with contextlib.suppress(Exception):
            container.remove(force=True)
        with contextlib.suppress(Exception):
            rt.remove_volume(volume)
        peer.stop()
        settings.FLEET_EGRESS_ALLOW = saved_allow
        with contextlib.suppress(Exception):
            egress.install(TEST_NETWORK, runtime=rt)


def test_discord_and_slack_connect_to_their_peers_and_a_revoked_token_breaks_them(gateway):
    container, peer = gateway

    # Loaded as bundled and connected: Discord's READY and Slack's hello came from the peer.
    states = wait_state(container, want_healthy=True)
    assert states["discord"]["probe_ok"] is True and states["slack"]["probe_ok"] is True
    payload = status(container)
    assert "PluginTrustRefusalError" not in json.dumps(payload)
    assert {s["kind"] for s in peer.sockets if s["accepted"]} == {"discord", "slack"}
    assert "GET /discord/users/@me" in peer.calls and "POST /slack/auth.test" in peer.calls

    # The provider stops accepting both tokens: OpenClaw's probe says why, the channel is broken.
    peer.discord_tokens.clear()
    peer.slack_tokens.clear()
    states = wait_state(container, want_healthy=False)
    assert "401" in states["discord"]["reason"], states
    assert "invalid_auth" in states["slack"]["reason"], states
