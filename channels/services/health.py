"""Each channel's health, as OpenClaw itself reports it (`channels.status` with a probe).

A channel is healthy when OpenClaw runs its account, is connected and reports no error; the
reason of a break is OpenClaw's own (`lastError`, or the status issue for the account). The
state change is a conditional update, so the hook `channel.health_changed` runs once per break
and once per recovery, and the owners get one email per break (`broken_notified_at`).

Recovery: a broken account whose token the provider accepts again (OpenClaw's probe says ok)
is restarted with `channels.start` (OpenClaw does not retry an account it saw unauthorized).
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from accounts.services import SYSTEM, audit
from fleet import hooks
from instances.openclaw.client import OpenClawError

from ..models import Channel
from . import gateway

log = logging.getLogger(__name__)
CS = Channel.Status
SETTLE_SECONDS = 25
_LIVE = (CS.APPLYING, CS.HEALTHY, CS.STOPPED)
STATUS_TIMEOUT = 60
# Status issues that are advice about the bot's setup, not a failure of the account (measured on
# a connected Discord account: "guild messages are blocked ... no guilds are configured" is of
# kind config, "Message Content Intent is disabled" of kind intent). DMs work with both.
ADVISORY_ISSUES = ("config", "intent")


def account_state(payload: dict, kind: str, account_id: str = "default") -> dict:
    """{healthy, reason, probe_ok, settling} for one account from a channels.status answer."""
    accounts = (payload.get("channelAccounts") or {}).get(kind) or []
    account = next((a for a in accounts if a.get("accountId") == account_id), None)
    issues = [
        i
        for i in payload.get("statusIssues") or []
        if i.get("channel") == kind
        and i.get("accountId", account_id) == account_id
        and i.get("kind") not in ADVISORY_ISSUES
    ]
    if account is None:
        summary = (payload.get("channels") or {}).get(kind) or {}
        reason = summary.get("lastError") or "OpenClaw has not loaded this channel."
        return {"healthy": False, "reason": str(reason), "probe_ok": None, "settling": True}
    probe = account.get("probe") if isinstance(account.get("probe"), dict) else {}
    probe_ok = probe.get("ok") if probe else None
    error = account.get("lastError") or (probe.get("error") if probe_ok is False else None)
    if not error and issues:
        error = issues[0].get("message")
    running = bool(account.get("running"))
    connected = account.get("connected", running)
    healthy = running and bool(connected) and not error
    settling = not healthy and not error and account.get("lifecycle") in (None, "starting", "")
    reason = "" if healthy else str(error or f"not running ({account.get('lifecycle') or '?'})")
    return {"healthy": healthy, "reason": reason, "probe_ok": probe_ok, "settling": settling}


def _scrub(channel: Channel, text: str) -> str:
    for secret in (channel.secret, channel.secret_extra):
        if secret:
            text = text.replace(secret, "***")
    return text[:300]


def set_health(channel: Channel, *, healthy: bool, reason: str) -> bool:
    """Record what OpenClaw says; True if the channel broke or recovered just now."""
    now = timezone.now()
    reason = _scrub(channel, reason)
    new = CS.HEALTHY if healthy else CS.BROKEN
    with transaction.atomic():
        row = Channel.objects.select_for_update().filter(pk=channel.pk).first()
        if row is None or row.status == CS.REMOVING:
            return False
        old = row.status
        fields = {"status": new, "last_error": "" if healthy else reason, "last_checked_at": now}
        notify = not healthy and row.broken_notified_at is None and old != CS.BROKEN
        if notify:
            fields["broken_notified_at"] = now
        if healthy:
            fields["broken_notified_at"] = None
        Channel.objects.filter(pk=row.pk).update(**fields)
        for key, value in fields.items():
            setattr(channel, key, value)
        # A break (anything -> broken) or a recovery (broken -> healthy); the first success of
        # a new channel and a stopped instance are neither.
        changed = (new == CS.BROKEN) != (old == CS.BROKEN) and old in (CS.BROKEN, *_LIVE)
        if changed:
            audit(
                actor=SYSTEM,
                action="channel.recovered" if healthy else "channel.broken",
                organization=channel.organization,
                target=channel,
                data={"reason": fields["last_error"]},
            )
            transaction.on_commit(
                lambda: hooks.run(
                    "channel.health_changed", channel=channel, healthy=healthy, reason=reason
                )
            )
        if notify:
            transaction.on_commit(lambda: email_owners(channel, reason))
    return changed


def email_owners(channel: Channel, reason: str) -> None:
    from accounts.models import Membership, Role

    emails = list(
        Membership.objects.filter(
            organization_id=channel.organization_id, role=Role.OWNER
        ).values_list("user__email", flat=True)
    )
    if not emails:
        return
    instance = channel.instance
    send_mail(
        f"[Clawfleet] {channel.get_kind_display()} channel of {instance.name} stopped working",
        (
            f"The {channel.get_kind_display()} channel {channel.bot_name or channel.account_id} "
            f"of your instance {instance.name} stopped working.\n\nOpenClaw says: {reason}\n\n"
            "If you revoked or changed the bot token, connect the channel again with the new "
            "one. If the provider accepts the token again, the channel recovers by itself.\n"
        ),
        settings.DEFAULT_FROM_EMAIL,
        emails,
        fail_silently=True,
    )


def mark_stopped(instance) -> None:
    Channel.objects.filter(instance=instance).exclude(status=CS.REMOVING).update(
        status=CS.STOPPED, last_checked_at=timezone.now()
    )


def check_instance(instance, *, client=None, settle: float = SETTLE_SECONDS) -> list[Channel]:
    """Read channels.status once (waiting up to `settle` s for accounts still starting),
    record each channel's health, restart accounts the provider accepts again."""
    channels = list(
        Channel.objects.filter(instance=instance)
        .exclude(status=CS.REMOVING)
        .select_related("instance", "organization")
    )
    if not channels:
        return []
    if instance.status != "running":
        mark_stopped(instance)
        return channels
    client = client or gateway.client_for(instance, timeout=STATUS_TIMEOUT)
    deadline = time.monotonic() + settle
    restarted: set = set()
    while True:
        payload = client.call("channels.status", {"probe": True}, timeout=STATUS_TIMEOUT)
        states = {ch.pk: account_state(payload, ch.kind, ch.account_id) for ch in channels}
        to_restart = [
            ch
            for ch in channels
            if not states[ch.pk]["healthy"]
            and states[ch.pk]["probe_ok"] is True
            and ch.pk not in restarted
        ]
        for ch in to_restart:
            restarted.add(ch.pk)
            try:
                client.call("channels.start", {"channel": ch.kind, "accountId": ch.account_id})
            except OpenClawError as exc:
                log.warning("channels.start %s failed: %s", ch.pk, exc)
        waiting = (
            to_restart
            or any(s["settling"] for s in states.values())
            or any(pk in restarted and not states[pk]["healthy"] for pk in states)
        )
        if not waiting or time.monotonic() >= deadline:
            break
        time.sleep(2)
    for ch in channels:
        state = states[ch.pk]
        set_health(ch, healthy=state["healthy"], reason=state["reason"])
    return channels


def queue_after_ready(instance, operation=None, **kwargs) -> None:
    """`instance.ready`: apply the instance's channels again (a restore, an upgrade or a new
    volume may not hold them) and remove those marked for removal."""
    from .. import tasks

    for channel_id, status in Channel.objects.filter(instance=instance).values_list("pk", "status"):
        task = tasks.remove_channel_task if status == CS.REMOVING else tasks.apply_channel_task
        transaction.on_commit(lambda t=task, c=str(channel_id): t.delay(c))
