"""Telegram end to end on the real engine, image, worker, mock LLM and the local Bot API peer.

One deployed instance, one scenario (the worker sees only committed rows; pytest-django
flushes the tables after a transactional test): a refused token changes nothing; a good one is
applied by OpenClaw's hot reload (same container start time); a message injected into the peer
reaches the assistant and the mock LLM's reply is posted back for that chat; pairing from the
dashboard (approve lets the message through, reject does not); the session is mirrored with its
channel and tokens; a revoked token breaks the channel within one health check with OpenClaw's
reason (hook and one email), a restored one recovers; removal takes config and secret out of the
volume and the bot stops answering.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from django.core import mail
from django.core.exceptions import ValidationError

from accounts.services import SYSTEM
from channels import services, tasks
from channels.models import Channel
from fleet import hooks
from instances.openclaw import files
from sessions_mgmt.models import Session
from sessions_mgmt.services.mirror import sync_instance_sessions

from ..fleet_fixtures import deploy_and_wait

pytestmark = [pytest.mark.docker, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

ALICE_ID = 910001
BOB_ID = 910002


def read_config(rt, instance) -> dict:
    return json.loads(rt.read_file(instance.volume_name, _image(instance), files.CONFIG_FILE))


def _image(instance):
    from instances import specs

    return specs.image_for(instance.openclaw_version)


def started_at(rt, instance) -> str:
    return rt.inspect(instance.container_name).started_at


def wait_status(channel, wanted, timeout=120) -> Channel:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        channel.refresh_from_db()
        if channel.status in wanted:
            return channel
        time.sleep(1)
    raise AssertionError(f"channel {channel.status} ({channel.last_error}), wanted {wanted}")


def replies(peer, token, chat_id) -> list[str]:
    return [m.get("text", "") for m in peer.sent_to(token, chat_id)]


def wait_reply(peer, token, chat_id, needle, timeout=120) -> str:
    ok = peer.wait_for(lambda: any(needle in t for t in replies(peer, token, chat_id)), timeout)
    assert ok, f"no reply with {needle!r} to {chat_id}; got {replies(peer, token, chat_id)}"
    return next(t for t in replies(peer, token, chat_id) if needle in t)


def test_telegram_end_to_end_on_a_real_instance(
    alice,
    alice_org,
    client,
    entitled_org,
    mock_prices,
    mock_llm,
    openclaw_image,
    docker_runtime,
    telegram_peer_for_containers,
    celery_worker_process,
    settings,
):
    peer = telegram_peer_for_containers
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.FLEET_GATEWAY_WEB_TIMEOUT = 60  # a shared 2-core machine: patient pairing reads
    entitled_org(alice_org)
    instance, _ = deploy_and_wait(
        alice_org, name=f"tg-{uuid.uuid4().hex[:6]}", base_url=mock_llm.container_url
    )
    rt = docker_runtime
    boot = started_at(rt, instance)
    before = read_config(rt, instance)
    assert "channels" not in before

    # 1. A token the peer does not know: a field error naming the problem, nothing stored.
    with pytest.raises(ValidationError) as refused:
        services.channel_connect(
            actor=SYSTEM,
            instance=instance,
            kind="telegram",
            token="123456789:AAunknownBotTokenXXXXXXXXXXXXXXXXXXX",
        )
    assert "Telegram refused this bot token (Unauthorized)" in str(refused.value.message_dict)
    assert not Channel.objects.exists()
    assert read_config(rt, instance) == before

    # 2. A good token: applied by hot reload, no restart; the secret only in openclaw.json.
    token = peer.add_bot("fleet_e2e_bot")
    channel = services.channel_connect(
        actor=SYSTEM, instance=instance, kind="telegram", token=token
    )
    assert channel.bot_name == "fleet_e2e_bot"
    channel = wait_status(channel, {Channel.Status.HEALTHY, Channel.Status.BROKEN})
    assert channel.status == Channel.Status.HEALTHY, channel.last_error
    assert started_at(rt, instance) == boot
    config = read_config(rt, instance)
    assert config["channels"]["telegram"]["botToken"] == token
    assert config["channels"]["telegram"]["apiRoot"] == settings.FLEET_TELEGRAM_INSTANCE_API_ROOT
    assert config["gateway"]["auth"]["token"] == instance.gateway_token  # ours kept
    env = rt.client.containers.get(instance.container_name).attrs["Config"]["Env"]
    assert not any(token in e for e in env)
    assert "getUpdates" in peer.methods(token)

    # 3. Alice messages the bot: OpenClaw asks for pairing; the dashboard shows the request.
    client.force_login(alice)
    page_url = f"/channels/instances/{instance.pk}/"
    peer.inject(token, user_id=ALICE_ID, text="hello there", first_name="Alicia")
    wait_reply(peer, token, ALICE_ID, "Pairing code")
    page = client.get(page_url)
    assert page.status_code == 200
    assert str(ALICE_ID) in page.content.decode() and "Alicia" in page.content.decode()
    (request,) = services.pairing_list(channel)
    response = client.post(
        f"/channels/instances/{instance.pk}/{channel.pk}/pairing/approve/",
        {"request_id": request.request_id},
    )
    assert response.status_code == 302
    assert services.pairing_list(channel) == []

    # Approved: her next message reaches the assistant, the mock LLM's reply comes back to her.
    marker = f"m-{uuid.uuid4().hex[:8]}"
    peer.inject(token, user_id=ALICE_ID, text=f"what is {marker}", first_name="Alicia")
    reply = wait_reply(peer, token, ALICE_ID, "Mock reply")
    assert marker in reply
    assert any(marker in r["last_user_message"] for r in mock_llm.requests())

    # 4. Bob asks too; rejected from the dashboard, his messages stay unanswered.
    peer.inject(token, user_id=BOB_ID, text="let me in", first_name="Bobby")
    wait_reply(peer, token, BOB_ID, "Pairing code")
    (bob_request,) = services.pairing_list(channel)
    assert bob_request.sender_id == str(BOB_ID)
    client.post(
        f"/channels/instances/{instance.pk}/{channel.pk}/pairing/reject/",
        {"request_id": bob_request.request_id},
    )
    bob_marker = f"b-{uuid.uuid4().hex[:8]}"
    peer.inject(token, user_id=BOB_ID, text=f"please {bob_marker}", first_name="Bobby")
    time.sleep(15)
    assert not any("Mock reply" in t for t in replies(peer, token, BOB_ID))
    assert not any(bob_marker in r["last_user_message"] for r in mock_llm.requests())
    from accounts.models import AuditEvent

    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"channel.connected", "channel.pairing_approved", "channel.pairing_rejected"} <= actions

    # 5. The conversation is mirrored with its channel and its tokens.
    sync_instance_sessions(instance=instance, full=True)
    session = Session.objects.get(instance=instance, channel="telegram")
    assert session.input_tokens > 0 and session.output_tokens > 0 and session.cost_usd > 0

    # 6. Revoked at Telegram: broken after one health check, OpenClaw's reason, one email.
    seen = []
    with hooks.only("channel.health_changed", lambda **kw: seen.append(kw)):
        peer.revoke(token)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            tasks.check_channels_of(instance.pk)
            channel.refresh_from_db()
            if channel.status == Channel.Status.BROKEN:
                break
            time.sleep(3)
        assert channel.status == Channel.Status.BROKEN
        assert "Unauthorized" in channel.last_error
        tasks.check_channels_of(instance.pk)  # still broken: no second email or hook
        assert [m.subject for m in mail.outbox if "stopped working" in m.subject] == [
            f"[Clawfleet] Telegram channel of {instance.name} stopped working"
        ]
        assert [(kw["healthy"], "Unauthorized" in kw["reason"]) for kw in seen] == [(False, True)]
        assert token not in mail.outbox[-1].body

        # Restored: the next check sees the provider accept it and restarts the account.
        peer.restore(token)
        tasks.check_channels_of(instance.pk)
        channel.refresh_from_db()
        assert channel.status == Channel.Status.HEALTHY, channel.last_error
        assert [kw["healthy"] for kw in seen] == [False, True]
    assert started_at(rt, instance) == boot

    # 7. Removed: config and secret gone from the volume (backup copies too); no more answers.
    services.channel_remove(actor=SYSTEM, channel=channel)
    deadline = time.monotonic() + 120
    while Channel.objects.filter(pk=channel.pk).exists() and time.monotonic() < deadline:
        time.sleep(1)
    assert not Channel.objects.filter(pk=channel.pk).exists()
    config = read_config(rt, instance)
    assert "telegram" not in config.get("channels", {})
    code, out, _ = rt.run_in_volume(
        instance.volume_name,
        _image(instance),
        ["sh", "-c", 'grep -rlF -- "$T" "$OPENCLAW_STATE_DIR" || true'],
        env={"T": token},
        timeout=60,
    )
    assert out.strip() == b"", out
    count = len(replies(peer, token, ALICE_ID))
    peer.inject(token, user_id=ALICE_ID, text="are you there?", first_name="Alicia")
    time.sleep(10)
    assert len(replies(peer, token, ALICE_ID)) == count
    assert started_at(rt, instance) == boot
