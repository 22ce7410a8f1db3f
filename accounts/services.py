"""Writes for accounts: organizations, members, invitations, API tokens, and the audit log.

Every state change goes through a function here that records an AuditEvent in the same
transaction (zulip's "one action function" habit).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from . import roles
from .client_ip import client_ip
from .models import ApiToken, AuditEvent, Invitation, Membership, Organization, Role, User


@dataclass(frozen=True)
class Actor:
    """Who is acting: a user, an API token of an organization, or the system (beat, reconcile)."""

    user: User | None = None
    token: ApiToken | None = None
    ip: str | None = None
    via: str = "system"  # dashboard, api, admin, cli, system

    @classmethod
    def from_request(cls, request, via: str = "dashboard") -> Actor:
        token = getattr(request, "auth", None)
        token = token if isinstance(token, ApiToken) else None
        # A token's principal is not a person: the audit row names the token instead.
        authenticated = getattr(request.user, "is_authenticated", False)
        user = request.user if authenticated and token is None else None
        return cls(user=user, token=token, ip=client_ip(request), via="api" if token else via)

    @property
    def label(self) -> str:
        if self.user:
            return self.user.email
        if self.token:
            return f"token {self.token.name}"
        return "system"


SYSTEM = Actor()


def audit(
    *,
    actor: Actor,
    action: str,
    organization: Organization | None = None,
    target=None,
    data: dict | None = None,
) -> AuditEvent:
    """Record one audit row. Never put secrets in `data`."""
    return AuditEvent.objects.create(
        organization=organization,
        actor=actor.user,
        actor_token=actor.token,
        action=action,
        target_type=target.__class__.__name__ if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_repr=str(target)[:200] if target is not None else "",
        data={"via": actor.via, **(data or {})},
        ip=actor.ip,
    )


class RateLimited(ValidationError):
    """Too many of something in a window: a form error on a page, a 429 in the API (fleet.api
    turns any ValidationError with `retry_after` into one, with Retry-After)."""

    def __init__(self, message: str, *, retry_after: int):
        super().__init__(message, code="rate_limited")
        self.retry_after = retry_after


def require(membership_role: str | None, permission: str) -> None:
    if not roles.role_allows(membership_role, permission):
        raise PermissionDenied("Your role in this organization does not allow that.")


# --- organizations ---------------------------------------------------------------------------


def _unique_slug(base: str) -> str:
    base = slugify(base)[:40] or "org"
    slug, n = base, 1
    while Organization.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def organization_create(
    *, actor: Actor, owner: User, name: str, slug: str | None = None, kind: str = "agency"
) -> Organization:
    """Create an organization with `owner` as its owner. A taken slug is a ValidationError."""
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "Give the organization a name."})
    if slug:
        slug = slugify(slug)
        if not slug:
            raise ValidationError({"slug": "Use letters, numbers and hyphens."})
        if Organization.objects.filter(slug=slug).exists():
            raise ValidationError({"slug": f"The address “{slug}” is taken. Choose another."})
    else:
        slug = _unique_slug(name)
    try:
        with transaction.atomic():
            org = Organization.objects.create(
                name=name, slug=slug, kind=kind, billing_email=owner.email
            )
    except IntegrityError as exc:
        raise ValidationError({"slug": f"The address “{slug}” is taken. Choose another."}) from exc
    Membership.objects.create(user=owner, organization=org, role=Role.OWNER)
    audit(actor=actor, action="organization.created", organization=org, target=org)
    return org


def personal_organization_ensure(*, user: User) -> Organization:
    """Every user has a personal organization from signup on."""
    existing = (
        Organization.objects.filter(memberships__user=user, kind=Organization.Kind.PERSONAL)
        .order_by("id")
        .first()
    )
    if existing:
        return existing
    name = user.email.split("@")[0]
    return organization_create(
        actor=Actor(user=user, via="dashboard"),
        owner=user,
        name=f"{name}'s workspace",
        kind=Organization.Kind.PERSONAL,
    )


@transaction.atomic
def organization_rename(*, actor: Actor, organization: Organization, name: str) -> Organization:
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "Give the organization a name."})
    old = organization.name
    organization.name = name
    organization.save(update_fields=["name"])
    audit(
        actor=actor,
        action="organization.renamed",
        organization=organization,
        target=organization,
        data={"from": old, "to": name},
    )
    return organization


# --- members and invitations -----------------------------------------------------------------


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@transaction.atomic
def invitation_create(
    *, actor: Actor, organization: Organization, email: str, role: str = Role.MEMBER
) -> tuple[Invitation, str]:
    """Invite `email`; returns the invitation and the secret link (sent by email, never stored)."""
    email = (email or "").strip().lower()
    from django.core.validators import validate_email

    try:
        validate_email(email)
    except ValidationError as exc:
        raise ValidationError({"email": "Enter a valid email address."}) from exc
    if role not in Role.values or role == Role.OWNER:
        raise ValidationError({"role": "Choose admin, member or viewer."})
    if Membership.objects.filter(organization=organization, user__email__iexact=email).exists():
        raise ValidationError({"email": f"{email} is already a member."})
    _check_invitation_rate(actor=actor, organization=organization)
    Invitation.objects.filter(
        organization=organization, email=email, accepted_at__isnull=True, revoked_at__isnull=True
    ).update(revoked_at=timezone.now())
    secret = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        organization=organization,
        email=email,
        role=role,
        token_hash=_hash(secret),
        invited_by=actor.user,
        expires_at=timezone.now() + timedelta(days=7),
    )
    link = settings.SITE_URL + reverse("invitation_accept", args=[secret])
    inviter = actor.label

    def _send():
        send_mail(
            f"{inviter} invited you to {organization.name} on Clawfleet",
            f"Join {organization.name} as {invitation.get_role_display()}:\n\n{link}\n\n"
            "The link works for 7 days.",
            None,
            [email],
        )

    transaction.on_commit(_send)
    audit(
        actor=actor,
        action="invitation.created",
        organization=organization,
        target=invitation,
        data={"email": email, "role": role},
    )
    return invitation, link


def _check_invitation_rate(*, actor: Actor, organization: Organization) -> None:
    """At most INVITATIONS_PER_HOUR_PER_ORG invitations an hour from one organization and
    INVITATIONS_PER_HOUR_PER_USER from one person (all their organizations together), so that
    nobody sends mail in our name in bulk. Counted from the rows themselves (exact, shared by
    every process); the organization's row lock orders concurrent invitations."""
    Organization.objects.select_for_update().filter(pk=organization.pk).first()
    since = timezone.now() - timedelta(hours=1)
    recent = Invitation.objects.filter(created_at__gte=since)
    limits = [(recent.filter(organization=organization), settings.INVITATIONS_PER_HOUR_PER_ORG)]
    if actor.user is not None:
        limits.append(
            (recent.filter(invited_by=actor.user), settings.INVITATIONS_PER_HOUR_PER_USER)
        )
    for rows, limit in limits:
        if rows.count() >= limit:
            oldest = rows.order_by("created_at").values_list("created_at", flat=True)[0]
            wait = max(1, int((oldest + timedelta(hours=1) - timezone.now()).total_seconds()) + 1)
            minutes = max(1, round(wait / 60))
            raise RateLimited(
                f"Too many invitations in the last hour ({limit}). "
                f"Try again in about {minutes} minute{'s' if minutes != 1 else ''}.",
                retry_after=wait,
            )


def invitation_for_secret(secret: str) -> Invitation | None:
    return (
        Invitation.objects.select_related("organization").filter(token_hash=_hash(secret)).first()
    )


@transaction.atomic
def invitation_accept(*, actor: Actor, user: User, secret: str) -> Membership:
    invitation = (
        Invitation.objects.select_for_update().filter(token_hash=_hash(secret or "")).first()
    )
    if invitation is None or not invitation.is_pending:
        raise ValidationError("This invitation is no longer valid. Ask for a new one.")
    if invitation.email.lower() != user.email.lower():
        raise ValidationError(f"This invitation was sent to {invitation.email}.")
    membership, _ = Membership.objects.get_or_create(
        user=user, organization=invitation.organization, defaults={"role": invitation.role}
    )
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["accepted_at"])
    audit(
        actor=actor,
        action="invitation.accepted",
        organization=invitation.organization,
        target=membership,
    )
    return membership


@transaction.atomic
def invitation_revoke(*, actor: Actor, invitation: Invitation) -> None:
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])
    audit(
        actor=actor,
        action="invitation.revoked",
        organization=invitation.organization,
        target=invitation,
    )


def _actor_role(actor: Actor, organization: Organization) -> str | None:
    """The acting person's role in the organization. The system and the command line act as an
    owner would (they are the operator); a token or a non-member has no role here."""
    if actor.user is None and actor.token is None:
        return Role.OWNER
    if actor.user is None:
        return None
    return (
        Membership.objects.filter(organization=organization, user=actor.user)
        .values_list("role", flat=True)
        .first()
    )


def _check_member_change(actor: Actor, membership: Membership, *, new_role: str | None) -> None:
    """Members are managed by owners and admins; only an owner makes, demotes or removes an owner
    (an admin cannot promote anyone, themselves included, to owner)."""
    role = _actor_role(actor, membership.organization)
    require(role, roles.MANAGE_MEMBERS)
    if Role.OWNER in (membership.role, new_role) and not roles.role_allows(
        role, roles.MANAGE_OWNERS
    ):
        raise PermissionDenied("Only an owner can make, demote or remove an owner.")


def _revoke_tokens_created_by(*, actor: Actor, membership: Membership, reason: str) -> int:
    """The API tokens a person created in this organization stop working when the person may no
    longer manage tokens there (removed, or demoted to member or viewer)."""
    tokens = ApiToken.objects.select_for_update().filter(
        organization=membership.organization,
        created_by=membership.user,
        revoked_at__isnull=True,
    )
    count = 0
    for token in tokens:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit(
            actor=actor,
            action="api_token.revoked",
            organization=membership.organization,
            target=token,
            data={"reason": reason, "created_by": membership.user.email},
        )
        count += 1
    return count


@transaction.atomic
def membership_set_role(*, actor: Actor, membership: Membership, role: str) -> Membership:
    if role not in Role.values:
        raise ValidationError({"role": "Unknown role."})
    _check_member_change(actor, membership, new_role=role)
    _keep_an_owner(membership, new_role=role)
    old = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    revoked = 0
    if roles.role_allows(old, roles.MANAGE_TOKENS) and not roles.role_allows(
        role, roles.MANAGE_TOKENS
    ):
        revoked = _revoke_tokens_created_by(
            actor=actor, membership=membership, reason=f"creator demoted to {role}"
        )
    audit(
        actor=actor,
        action="membership.role_changed",
        organization=membership.organization,
        target=membership,
        data={"from": old, "to": role, "tokens_revoked": revoked},
    )
    return membership


@transaction.atomic
def membership_remove(*, actor: Actor, membership: Membership) -> None:
    _check_member_change(actor, membership, new_role=None)
    _keep_an_owner(membership, new_role=None)
    org = membership.organization
    revoked = _revoke_tokens_created_by(
        actor=actor, membership=membership, reason="creator removed from the organization"
    )
    audit(
        actor=actor,
        action="membership.removed",
        organization=org,
        target=membership,
        data={"email": membership.user.email, "tokens_revoked": revoked},
    )
    membership.delete()


def _keep_an_owner(membership: Membership, *, new_role: str | None) -> None:
    if membership.role != Role.OWNER or new_role == Role.OWNER:
        return
    owners = Membership.objects.filter(organization=membership.organization, role=Role.OWNER)
    if owners.exclude(pk=membership.pk).count() == 0:
        raise ValidationError("An organization needs at least one owner.")


# --- API tokens ------------------------------------------------------------------------------


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@transaction.atomic
def api_token_create(
    *,
    actor: Actor,
    organization: Organization,
    name: str,
    scopes: list[str],
    expires_at=None,
) -> tuple[ApiToken, str]:
    """Create a token; returns it with the secret, which is never stored or shown again."""
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "Name the token after what uses it."})
    scopes = sorted(set(scopes or []))
    unknown = set(scopes) - set(ApiToken.Scope.values)
    if not scopes or unknown:
        raise ValidationError({"scopes": "Choose one or more of: read, operate, billing."})
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "The expiry must be in the future."})
    body = secrets.token_urlsafe(32).replace("-", "x").replace("_", "y")
    secret = ApiToken.PREFIX + body
    token = ApiToken.objects.create(
        organization=organization,
        name=name,
        lookup=body[:8],
        token_hash=hash_token(secret),
        scopes=scopes,
        created_by=actor.user,
        expires_at=expires_at,
    )
    audit(
        actor=actor,
        action="api_token.created",
        organization=organization,
        target=token,
        data={"scopes": scopes},
    )
    return token, secret


@transaction.atomic
def api_token_revoke(*, actor: Actor, token: ApiToken) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit(
            actor=actor, action="api_token.revoked", organization=token.organization, target=token
        )
    return token


def api_token_authenticate(secret: str, ip: str | None = None) -> ApiToken | None:
    """The token for a presented secret if it is active; records the last use (cheaply)."""
    if not secret or not secret.startswith(ApiToken.PREFIX):
        return None
    token = (
        ApiToken.objects.select_related("organization", "created_by")
        .filter(token_hash=hash_token(secret))
        .first()
    )
    if token is None or not token.is_active:
        return None
    now = timezone.now()
    # At most one write a minute per token, so a busy client does not turn reads into writes.
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now, last_used_ip=ip)
        token.last_used_at, token.last_used_ip = now, ip
    return token
