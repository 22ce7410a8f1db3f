"""Connect, change and remove channels (one transaction, one audit row each)."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction

from accounts import roles
from accounts.services import Actor, audit, require

from .. import providers
from ..models import Channel

log = logging.getLogger(__name__)

# An instance on its way out takes no new channel.
GONE = ("deleting", "deleted", "purged")
MAX_ALLOW_FROM = 200


def _role(actor: Actor, organization) -> str | None:
    if actor.user is None:
        return roles.Role.OWNER if actor.token is None else None
    if actor.via == "admin" and actor.user.is_staff:
        return roles.Role.OWNER  # the staff admin (its own permission checked by the admin)
    from accounts.models import Membership

    return (
        Membership.objects.filter(organization=organization, user=actor.user)
        .values_list("role", flat=True)
        .first()
    )


def _require_operate(actor: Actor, organization) -> None:
    if actor.token is not None:
        if actor.token.organization_id != organization.pk or not roles.scopes_allow(
            actor.token.scopes, roles.OPERATE
        ):
            raise PermissionDenied("This token may not change channels.")
        return
    require(_role(actor, organization), roles.OPERATE)


def clean_policy(dm_policy: str, allow_from, errors: dict) -> tuple[str, list[str]]:
    dm_policy = (dm_policy or Channel.DmPolicy.PAIRING).strip()
    if dm_policy not in Channel.DmPolicy.values:
        errors["dm_policy"] = ValidationError(
            "Choose one of: " + ", ".join(Channel.DmPolicy.values) + ".", code="invalid"
        )
    if isinstance(allow_from, str):
        allow_from = [s for s in allow_from.replace(",", " ").split() if s]
    senders: list[str] = []
    for raw in allow_from or []:
        sender = str(raw).strip()
        if not sender or len(sender) > 64 or any(c.isspace() or c == "\x00" for c in sender):
            errors["allow_from"] = ValidationError(
                f"{sender[:20]!r} is not a sender id (a user id such as 123456789).",
                code="invalid",
            )
            break
        if sender not in senders:
            senders.append(sender)
    if len(senders) > MAX_ALLOW_FROM:
        errors["allow_from"] = ValidationError(
            f"At most {MAX_ALLOW_FROM} senders.", code="max_length"
        )
    if dm_policy == Channel.DmPolicy.ALLOWLIST and not senders and "allow_from" not in errors:
        errors["allow_from"] = ValidationError(
            "The allowlist policy needs at least one sender id.", code="required"
        )
    return dm_policy, senders


def _check_token(kind: str, token: str, extra: str, field: str) -> providers.Identity:
    try:
        return providers.check_token(kind, token, extra)
    except providers.TokenRejected as exc:
        raise ValidationError({field: ValidationError(str(exc), code="rejected")}) from exc
    except providers.ProviderUnreachable as exc:
        raise ValidationError({field: ValidationError(str(exc), code="unreachable")}) from exc


@transaction.atomic
def channel_connect(
    *,
    actor: Actor,
    instance,
    kind: str,
    token: str,
    extra_token: str = "",
    dm_policy: str = Channel.DmPolicy.PAIRING,
    allow_from=None,
    token_field: str = "token",  # noqa: S107 - a form field name, not a secret
) -> Channel:
    """Check the token with the provider, record the channel, apply it once committed.

    Raises ValidationError per field (nothing is stored then: no row, no config)."""
    organization = instance.organization
    _require_operate(actor, organization)
    errors: dict = {}
    kind = (kind or "").strip().lower()
    if kind not in Channel.Kind.values:
        errors["kind"] = ValidationError(
            "Choose one of: " + ", ".join(Channel.Kind.values) + ".", code="invalid"
        )
    token = (token or "").strip()
    extra_token = (extra_token or "").strip()
    if not token:
        errors[token_field] = ValidationError("Enter the bot token.", code="required")
    if instance.status in GONE:
        errors["instance"] = ValidationError("This instance is being deleted.", code="gone")
    dm_policy, senders = clean_policy(dm_policy, allow_from, errors)
    if not errors and Channel.objects.filter(instance=instance, kind=kind).exists():
        errors["kind"] = ValidationError(
            f"This instance already has a {kind} channel: remove it first.", code="taken"
        )
    if errors:
        raise ValidationError(errors)
    identity = _check_token(kind, token, extra_token, token_field)
    try:
        with transaction.atomic():
            channel = Channel.objects.create(
                organization=organization,
                instance=instance,
                kind=kind,
                bot_name=identity.name[:100],
                bot_id=identity.bot_id[:64],
                secret=token,
                secret_extra=extra_token,
                dm_policy=dm_policy,
                allow_from=senders,
                status=Channel.Status.APPLYING,
                created_by=actor.user,
            )
    except IntegrityError as exc:
        raise ValidationError(
            {"kind": ValidationError(f"This instance already has a {kind} channel.", code="taken")}
        ) from exc
    audit(
        actor=actor,
        action="channel.connected",
        organization=organization,
        target=channel,
        data={
            "instance": str(instance.pk),
            "kind": kind,
            "bot": channel.bot_name,
            "dm_policy": dm_policy,
        },
    )
    _queue_apply(channel)
    return channel


@transaction.atomic
def channel_update(*, actor: Actor, channel: Channel, dm_policy: str, allow_from=None) -> Channel:
    """Change who may talk to the bot (a policy change is hot-applied like the rest)."""
    _require_operate(actor, channel.organization)
    errors: dict = {}
    dm_policy, senders = clean_policy(dm_policy, allow_from, errors)
    if channel.status == Channel.Status.REMOVING:
        errors["dm_policy"] = ValidationError("This channel is being removed.", code="gone")
    if errors:
        raise ValidationError(errors)
    Channel.objects.filter(pk=channel.pk).update(
        dm_policy=dm_policy, allow_from=senders, status=Channel.Status.APPLYING
    )
    channel.refresh_from_db()
    audit(
        actor=actor,
        action="channel.policy_changed",
        organization=channel.organization,
        target=channel,
        data={"dm_policy": dm_policy, "senders": len(senders)},
    )
    _queue_apply(channel)
    return channel


@transaction.atomic
def channel_remove(*, actor: Actor, channel: Channel) -> Channel:
    """Mark the channel for removal; the task takes its config and secrets out of the volume
    and deletes the row."""
    _require_operate(actor, channel.organization)
    Channel.objects.filter(pk=channel.pk).update(status=Channel.Status.REMOVING)
    channel.status = Channel.Status.REMOVING
    audit(
        actor=actor,
        action="channel.removed",
        organization=channel.organization,
        target=channel,
        data={"instance": str(channel.instance_id), "kind": channel.kind},
    )
    from .. import tasks

    channel_id = str(channel.pk)
    transaction.on_commit(lambda: tasks.remove_channel_task.delay(channel_id))
    return channel


def _queue_apply(channel: Channel) -> None:
    from .. import tasks

    channel_id = str(channel.pk)
    transaction.on_commit(lambda: tasks.apply_channel_task.delay(channel_id))


def connect_requested_by_deploy(*, instance, actor, kind, token, field) -> Channel:
    """The `instance.channel_requested` hook: a deploy came with a channel token (the wizard's
    field, the API's `channel_token`). Checked with the provider; applied once ready."""
    return channel_connect(
        actor=actor, instance=instance, kind=kind, token=token, token_field=field
    )
