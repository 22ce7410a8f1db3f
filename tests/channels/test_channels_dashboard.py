"""The channels page and card, the deploy wizard's Telegram token, the health bookkeeping and
the data migration of Instance.channel_token (no gateway: the tasks are queued on commit)."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.core import mail
from django.urls import reverse

from accounts.models import AuditEvent
from channels.models import Channel
from channels.services import health
from fleet import hooks
from instances.models import Instance
from tests.factories import InstanceFactory
from tests.fleet_fixtures import make_entitled

pytestmark = pytest.mark.django_db


@pytest.fixture
def instance(alice_org):
    return InstanceFactory(organization=alice_org, name="alice-bot", local=True, host_port=19190)


def page(instance):
    return reverse("channels:list", args=[instance.pk])


def test_the_instance_page_shows_each_channel_with_its_own_health(
    alice_client, alice_org, instance
):
    Channel.objects.create(
        organization=alice_org,
        instance=instance,
        kind="telegram",
        bot_name="alice_help_bot",
        secret="1:secret-token-value",
        status="broken",
        last_error="Unauthorized | Telegram ingress worker exited with code 1",
    )
    body = alice_client.get(reverse("instances:detail", args=[instance.pk])).content.decode()
    assert "@alice_help_bot" in body and "Broken" in body and "Unauthorized" in body
    assert "secret-token-value" not in body
    assert page(instance) in body


def test_connecting_from_the_dashboard_checks_the_token_first(
    alice_client, instance, telegram_peer
):
    refused = alice_client.post(
        page(instance),
        {
            "kind": "telegram",
            "token": "42424242:AAnobodyKnowsThisBot0123456789",
            "dm_policy": "pairing",
        },
    )
    assert refused.status_code == 400
    assert "Telegram refused this bot token" in refused.content.decode()
    assert not Channel.objects.exists()
    token = telegram_peer.add_bot("dash_bot")
    done = alice_client.post(
        page(instance), {"kind": "telegram", "token": token, "dm_policy": "pairing"}
    )
    assert done.status_code == 302
    channel = Channel.objects.get()
    assert channel.bot_name == "dash_bot" and channel.created_by is not None
    listing = alice_client.get(page(instance)).content.decode()
    assert "@dash_bot" in listing and token not in listing


def test_a_viewer_sees_channels_but_cannot_change_them(client, victor, alice_org, instance):
    channel = Channel.objects.create(
        organization=alice_org, instance=instance, kind="telegram", secret="1:x", bot_name="v_bot"
    )
    client.force_login(victor)
    listing = client.get(page(instance))
    assert listing.status_code == 200 and "@v_bot" in listing.content.decode()
    assert "Check the token and connect" not in listing.content.decode()
    assert client.post(page(instance), {"kind": "telegram", "token": "1:2"}).status_code == 403
    remove = reverse("channels:remove", args=[instance.pk, channel.pk])
    assert client.post(remove).status_code == 403
    approve = reverse("channels:pairing", args=[instance.pk, channel.pk, "approve"])
    assert client.post(approve, {"request_id": "r"}).status_code == 403
    assert Channel.objects.get().status == "applying"


def test_another_organizations_channels_are_404(client, charlie, alice_org, instance):
    channel = Channel.objects.create(
        organization=alice_org, instance=instance, kind="telegram", secret="1:x"
    )
    client.force_login(charlie)
    assert client.get(page(instance)).status_code == 404
    remove = reverse("channels:remove", args=[instance.pk, channel.pk])
    assert client.post(remove).status_code == 404
    assert Channel.objects.get().status == "applying"


def test_removing_from_the_dashboard_is_audited(alice_client, alice_org, instance):
    channel = Channel.objects.create(
        organization=alice_org, instance=instance, kind="telegram", secret="1:x"
    )
    alice_client.post(reverse("channels:remove", args=[instance.pk, channel.pk]))
    assert Channel.objects.get().status == "removing"
    assert AuditEvent.objects.filter(action="channel.removed").count() == 1


WIZARD = {"name": "tg-bot", "provider": "openai", "model_name": "gpt-4o-mini", "api_key": "sk-1"}


def test_the_wizards_telegram_token_becomes_a_checked_channel(
    alice_client, alice_org, telegram_peer
):
    make_entitled(alice_org)
    bad = alice_client.post(
        reverse("instances:deploy"),
        {**WIZARD, "channel_token": "42424242:AAnobodyKnowsThisBot0123456789"},
    )
    assert bad.status_code in (200, 400)
    assert "Telegram refused this bot token" in " ".join(
        str(e) for e in bad.context["form"].errors.get("channel_token", [])
    )
    assert not Instance.objects.exists() and not Channel.objects.exists()
    token = telegram_peer.add_bot("wizard_bot")
    ok = alice_client.post(reverse("instances:deploy"), {**WIZARD, "channel_token": token})
    assert ok.status_code == 302
    instance = Instance.objects.get()
    channel = Channel.objects.get(instance=instance)
    assert channel.kind == "telegram" and channel.bot_name == "wizard_bot"
    assert channel.secret == token and instance.channel_token == ""


def test_health_changes_run_the_hook_once_and_email_the_owner_once(alice, alice_org, instance):
    channel = Channel.objects.create(
        organization=alice_org, instance=instance, kind="telegram", secret="1:tok", status="healthy"
    )
    seen = []
    with hooks.only("channel.health_changed", lambda **kw: seen.append(kw["healthy"])):
        from django.test import TestCase

        with TestCase.captureOnCommitCallbacks(execute=True):
            health.set_health(channel, healthy=False, reason="Unauthorized (token 1:tok)")
        with TestCase.captureOnCommitCallbacks(execute=True):
            health.set_health(channel, healthy=False, reason="Unauthorized")
        with TestCase.captureOnCommitCallbacks(execute=True):
            health.set_health(channel, healthy=True, reason="")
    assert seen == [False, True]
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["alice@example.com"]
    assert "1:tok" not in mail.outbox[0].body and "***" in mail.outbox[0].body
    channel.refresh_from_db()
    assert channel.status == "healthy" and channel.broken_notified_at is None


def test_account_state_reads_openclaws_reason():
    payload = {
        "channelAccounts": {
            "telegram": [
                {
                    "accountId": "default",
                    "running": False,
                    "connected": False,
                    "lifecycle": "blocked",
                    "lastError": "Unauthorized | Telegram ingress worker exited with code 1",
                    "probe": {"ok": False, "error": "Unauthorized"},
                }
            ]
        }
    }
    state = health.account_state(payload, "telegram")
    assert state["healthy"] is False and state["probe_ok"] is False
    assert state["reason"].startswith("Unauthorized")
    ok = {
        "channelAccounts": {
            "telegram": [{"accountId": "default", "running": True, "connected": True}]
        }
    }
    assert health.account_state(ok, "telegram")["healthy"] is True
    assert health.account_state({}, "telegram")["settling"] is True


def test_a_connected_discord_account_with_only_setup_advice_is_healthy():
    """What OpenClaw 2026.9.6 reported for a Discord bot connected to the local peer."""
    payload = {
        "channelAccounts": {
            "discord": [
                {"accountId": "default", "running": True, "connected": True, "lifecycle": "ready"}
            ]
        },
        "statusIssues": [
            {"channel": "discord", "accountId": "default", "kind": "config", "message": "x"},
            {"channel": "discord", "accountId": "default", "kind": "intent", "message": "y"},
        ],
    }
    assert health.account_state(payload, "discord") == {
        "healthy": True,
        "reason": "",
        "probe_ok": None,
        "settling": False,
    }
    payload["statusIssues"].append(
        {"channel": "discord", "accountId": "default", "kind": "runtime", "message": "Plugin x"}
    )
    state = health.account_state(payload, "discord")
    assert state["healthy"] is False and state["reason"] == "Plugin x"


def test_the_data_migration_moves_the_old_channel_token_into_a_channel(alice_org):
    instance = InstanceFactory(organization=alice_org, channel_token="5555:AAoldTokenFromTheWizard")
    migration = importlib.import_module("channels.migrations.0002_channel_token_from_instances")
    migration.forwards(apps, None)
    channel = Channel.objects.get(instance=instance)
    assert channel.kind == "telegram" and channel.secret == "5555:AAoldTokenFromTheWizard"
    instance.refresh_from_db()
    assert instance.channel_token == ""
    migration.backwards(apps, None)
    instance.refresh_from_db()
    assert instance.channel_token == "5555:AAoldTokenFromTheWizard"


def test_a_ready_instance_gets_its_channels_applied_and_removals_finished(
    alice_org, instance, monkeypatch
):
    from django.test import TestCase

    from channels import tasks

    keep = Channel.objects.create(
        organization=alice_org, instance=instance, kind="telegram", secret="1:x", status="stopped"
    )
    gone = Channel.objects.create(
        organization=alice_org, instance=instance, kind="slack", secret="xoxb-1", status="removing"
    )
    queued = []
    monkeypatch.setattr(tasks.apply_channel_task, "delay", lambda c: queued.append(("apply", c)))
    monkeypatch.setattr(tasks.remove_channel_task, "delay", lambda c: queued.append(("remove", c)))
    with (
        hooks.only("instance.ready", health.queue_after_ready),
        TestCase.captureOnCommitCallbacks(execute=True),
    ):
        hooks.run("instance.ready", instance=instance, operation=None)
    assert sorted(queued) == [("apply", str(keep.pk)), ("remove", str(gone.pk))]
