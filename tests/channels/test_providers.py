"""Discord's and Slack's token checks against their local peers, and the config each channel
kind writes into openclaw.json (owned and secret paths)."""

from __future__ import annotations

import pytest

from channels import providers
from channels.models import Channel
from instances.openclaw import config as oc
from tests.channels.provider_peers import ProviderPeer
from tests.factories import InstanceFactory

DISCORD_TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GhIjKl.abcdefghijklmnopqrstuvwxyz0123456789AB"
SLACK_TOKEN = "xoxb-1111-2222-abcdefabcdef"


@pytest.fixture(scope="module")
def peer_process():
    peer = ProviderPeer().start()
    peer.discord_tokens[DISCORD_TOKEN] = {
        "id": "1122334455",
        "username": "fleet-discord",
        "bot": True,
    }
    peer.slack_tokens[SLACK_TOKEN] = {"user": "fleetbot", "user_id": "U0FLEET", "team": "Acme"}
    yield peer
    peer.stop()


@pytest.fixture
def peer(peer_process, settings):
    settings.FLEET_DISCORD_API_ROOT = f"{peer_process.url}/discord"
    settings.FLEET_SLACK_API_ROOT = f"{peer_process.url}/slack"
    return peer_process


def test_discord_accepts_a_known_bot_token_and_names_a_refused_one(peer):
    before = peer.calls.count("GET /discord/users/@me")
    identity = providers.check_token("discord", DISCORD_TOKEN)
    assert identity.name == "fleet-discord" and identity.bot_id == "1122334455"
    other = DISCORD_TOKEN.replace("abc", "xyz")
    with pytest.raises(providers.TokenRejected, match=r"Discord refused this bot token \(401"):
        providers.check_token("discord", other)
    with pytest.raises(providers.TokenRejected, match="not a Discord bot token"):
        providers.check_token("discord", "short")
    # The malformed one never left the machine.
    assert peer.calls.count("GET /discord/users/@me") - before == 2


def test_slack_accepts_a_known_bot_token_and_names_a_refused_one(peer):
    assert providers.check_token("slack", SLACK_TOKEN).name == "fleetbot"
    with pytest.raises(providers.TokenRejected, match=r"invalid_auth"):
        providers.check_token("slack", "xoxb-9999-unknown")
    with pytest.raises(providers.TokenRejected, match="xapp-"):
        providers.check_token("slack", SLACK_TOKEN, "not-an-app-token")


def test_an_unreachable_provider_is_not_a_rejected_token(settings):
    settings.FLEET_DISCORD_API_ROOT = "http://127.0.0.1:9/discord"  # nothing listens on 9
    with pytest.raises(providers.ProviderUnreachable):
        providers.check_token("discord", DISCORD_TOKEN)


@pytest.mark.django_db
def test_connecting_discord_and_slack_through_the_service_stores_nothing_on_a_bad_token(
    peer, alice_org
):
    from django.core.exceptions import ValidationError

    from accounts.services import SYSTEM
    from channels import services

    instance = InstanceFactory(organization=alice_org)
    with pytest.raises(ValidationError) as refused:
        services.channel_connect(
            actor=SYSTEM, instance=instance, kind="slack", token="xoxb-9999-unknown"
        )
    assert "invalid_auth" in str(refused.value.message_dict["token"])
    assert not Channel.objects.exists()
    services.channel_connect(actor=SYSTEM, instance=instance, kind="discord", token=DISCORD_TOKEN)
    services.channel_connect(actor=SYSTEM, instance=instance, kind="slack", token=SLACK_TOKEN)
    assert sorted(Channel.objects.values_list("kind", "bot_name")) == [
        ("discord", "fleet-discord"),
        ("slack", "fleetbot"),
    ]


@pytest.mark.parametrize("kind", ["telegram", "discord", "slack"])
def test_each_kinds_config_puts_its_secrets_only_at_its_secret_paths(kind):
    config = oc.build_channel_config(kind, token="T0KEN", extra_token="xapp-A", dm_policy="open")
    secrets = oc.channel_secret_paths(kind)
    assert secrets and all(oc.get_path(config, p) in ("T0KEN", "xapp-A") for p in secrets)
    redacted = oc.redact(config, secrets)
    assert "T0KEN" not in repr(redacted)
    assert oc.get_path(config, f"channels.{kind}.allowFrom") == ["*"]  # open needs the wildcard
    merged = oc.merge_owned({"gateway": {"port": 1}}, config, oc.channel_owned_paths(kind))
    assert merged["gateway"] == {"port": 1} and merged["channels"][kind]["enabled"] is True
    removed = oc.merge_owned(merged, {}, oc.channel_owned_paths(kind))
    assert removed == {"gateway": {"port": 1}, "channels": {}, "plugins": {"entries": {}}}
