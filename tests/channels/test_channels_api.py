"""/api/v1/instances/{id}/channels: validation against the provider's peer, tenancy, roles,
secrets never in an answer. The gateway work runs in tasks queued on commit (not here)."""

from __future__ import annotations

import pytest

from accounts.models import AuditEvent
from channels.models import Channel
from tests.factories import InstanceFactory

pytestmark = pytest.mark.django_db


def url(instance, channel=None, tail=""):
    base = f"/api/v1/instances/{instance.pk}/channels"
    return f"{base}/{channel.pk}{tail}" if channel else base


@pytest.fixture
def instance(alice_org):
    return InstanceFactory(organization=alice_org, name="support-bot")


def test_connecting_with_a_good_token_stores_the_channel_and_never_returns_the_token(
    api_for, alice_org, instance, telegram_peer
):
    token = telegram_peer.add_bot("acme_help_bot")
    answer = api_for(alice_org).post(
        url(instance), {"kind": "telegram", "token": token}, format="json"
    )
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert body["bot_name"] == "acme_help_bot"
    assert body["status"] == "applying" and body["dm_policy"] == "pairing"
    assert token not in answer.content.decode()
    channel = Channel.objects.get()
    assert channel.secret == token and channel.instance == instance
    assert AuditEvent.objects.filter(action="channel.connected").count() == 1
    listed = api_for(alice_org).get(url(instance))
    assert [c["id"] for c in listed.json()["results"]] == [str(channel.pk)]
    assert token not in listed.content.decode()


def test_a_token_the_provider_refuses_is_a_field_error_and_nothing_is_stored(
    api_for, alice_org, instance, telegram_peer
):
    answer = api_for(alice_org).post(
        url(instance),
        {"kind": "telegram", "token": "42424242:AAthisBotDoesNotExistAnywhere0123456"},
        format="json",
    )
    assert answer.status_code == 400
    assert "Telegram refused this bot token (Unauthorized)" in answer.content.decode()
    assert "token" in answer.json()["error"]["fields"]
    assert not Channel.objects.exists()
    assert not AuditEvent.objects.filter(action="channel.connected").exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"kind": "telegram", "token": "not a token"}, "token"),
        ({"kind": "matrix", "token": "x"}, "kind"),
        ({"kind": "telegram"}, "token"),
        ({"kind": "discord", "token": "short"}, "token"),
        ({"kind": "slack", "token": "xoxp-user-token"}, "token"),
        ({"kind": "telegram", "token": "1:2", "dm_policy": "allowlist"}, "allow_from"),
        ({"kind": "telegram", "token": "1:2", "allow_from": ["has space"]}, "allow_from"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(api_for, alice_org, instance, payload, field):
    answer = api_for(alice_org).post(url(instance), payload, format="json")
    assert answer.status_code == 400, answer.content
    assert field in answer.json()["error"]["fields"], answer.json()
    assert not Channel.objects.exists()


def test_a_second_telegram_channel_on_one_instance_is_refused(
    api_for, alice_org, instance, telegram_peer
):
    api = api_for(alice_org)
    first = api.post(
        url(instance), {"kind": "telegram", "token": telegram_peer.add_bot("a_bot")}, format="json"
    )
    assert first.status_code == 201
    second = api.post(
        url(instance), {"kind": "telegram", "token": telegram_peer.add_bot("b_bot")}, format="json"
    )
    assert second.status_code == 400 and "already has a telegram channel" in second.content.decode()
    assert Channel.objects.count() == 1


def test_another_organizations_instance_and_channel_are_404(
    api_for, alice_org, charlie_org, instance, telegram_peer
):
    channel = Channel.objects.create(
        organization=alice_org, instance=instance, kind="telegram", secret="1:x"
    )
    charlie = api_for(charlie_org)
    assert charlie.get(url(instance)).status_code == 404
    token = telegram_peer.add_bot("c_bot")
    assert (
        charlie.post(url(instance), {"kind": "telegram", "token": token}, format="json").status_code
        == 404
    )
    assert charlie.get(url(instance, channel)).status_code == 404
    assert charlie.delete(url(instance, channel)).status_code == 404
    assert charlie.get(url(instance, channel, "/pairing")).status_code == 404
    # Charlie's own instance with alice's channel id: still a 404.
    theirs = InstanceFactory(organization=charlie_org)
    assert charlie.get(url(theirs, channel)).status_code == 404
    assert api_for(alice_org).get("/api/v1/instances/not-a-uuid/channels").status_code == 404
    assert Channel.objects.get().status == "applying"


def test_a_read_only_token_may_list_but_not_connect_or_remove(
    api_for, alice_org, instance, telegram_peer
):
    channel = Channel.objects.create(
        organization=alice_org, instance=instance, kind="telegram", secret="1:x"
    )
    reader = api_for(alice_org, scopes=("read",))
    assert reader.get(url(instance)).status_code == 200
    token = telegram_peer.add_bot("r_bot")
    assert (
        reader.post(url(instance), {"kind": "telegram", "token": token}, format="json").status_code
        == 403
    )
    assert reader.delete(url(instance, channel)).status_code == 403
    assert reader.get(url(instance, channel, "/pairing")).status_code == 403
    assert Channel.objects.get().status == "applying"


def test_removing_marks_the_channel_and_changing_the_policy_validates(api_for, alice_org, instance):
    channel = Channel.objects.create(
        organization=alice_org, instance=instance, kind="telegram", secret="1:x"
    )
    api = api_for(alice_org)
    bad = api.patch(url(instance, channel), {"dm_policy": "allowlist"}, format="json")
    assert bad.status_code == 400 and "allow_from" in bad.json()["error"]["fields"]
    ok = api.patch(
        url(instance, channel), {"dm_policy": "allowlist", "allow_from": ["12345"]}, format="json"
    )
    assert ok.status_code == 200 and ok.json()["allow_from"] == ["12345"]
    gone = api.delete(url(instance, channel))
    assert gone.status_code == 202 and gone.json()["status"] == "removing"
    assert AuditEvent.objects.filter(action="channel.removed").count() == 1
