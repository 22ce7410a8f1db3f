"""Accounts: signup, organizations, members, invitations, API tokens, roles and tenancy."""

import logging
import re
from datetime import timedelta

import pytest
from django.core import mail
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from accounts import services
from accounts.models import ApiToken, AuditEvent, Invitation, Membership, Organization, Role, User
from accounts.services import SYSTEM, Actor
from accounts.tenancy import OrganizationScopedMixin, OrganizationScopedViewSet

pytestmark = pytest.mark.django_db


def test_signup_creates_a_personal_organization_and_sends_a_confirmation_email(client):
    response = client.post(
        reverse("account_signup"),
        {
            "email": "dana@example.com",
            "password1": "a-long-Passphrase-9",
            "password2": "a-long-Passphrase-9",
        },
    )
    assert response.status_code == 302
    user = User.objects.get(email="dana@example.com")
    org = Organization.objects.get(memberships__user=user)
    assert org.kind == Organization.Kind.PERSONAL
    assert Membership.objects.get(user=user, organization=org).role == Role.OWNER
    assert len(mail.outbox) == 1
    link = re.search(r"http://\S+/accounts/confirm-email/\S+/", mail.outbox[0].body).group(0)
    confirm_path = (
        link.split("testserver", 1)[-1] if "testserver" in link else link.split("//", 1)[1]
    )
    confirm_path = "/" + confirm_path.split("/", 1)[1]
    assert client.post(confirm_path).status_code == 302
    assert user.emailaddress_set.get().verified


def test_signup_with_a_weak_password_shows_an_error_and_creates_nobody(client):
    response = client.post(
        reverse("account_signup"),
        {"email": "erin@example.com", "password1": "password", "password2": "password"},
    )
    assert response.status_code == 200
    assert "too common" in response.content.decode() or "too short" in response.content.decode()
    assert not User.objects.filter(email="erin@example.com").exists()


def test_signup_with_an_invalid_email_shows_an_error(client):
    response = client.post(
        reverse("account_signup"),
        {
            "email": "not-an-email",
            "password1": "a-long-Passphrase-9",
            "password2": "a-long-Passphrase-9",
        },
    )
    assert response.status_code == 200
    assert "valid email" in response.content.decode()
    assert User.objects.count() == 0


def test_creating_an_organization_with_a_taken_slug_is_refused_and_creates_nothing(
    alice_client, charlie_org
):
    before = Organization.objects.count()
    response = alice_client.post(reverse("org_create"), {"name": "Copycat", "slug": "charlie-co"})
    assert response.status_code == 200
    assert "is taken" in response.content.decode()
    assert Organization.objects.count() == before


def test_creating_an_agency_makes_the_creator_its_owner_and_audits_it(alice_client, alice):
    response = alice_client.post(reverse("org_create"), {"name": "Acme Agency", "slug": ""})
    assert response.status_code == 302
    org = Organization.objects.get(name="Acme Agency")
    assert org.slug == "acme-agency" and org.kind == "agency"
    assert Membership.objects.get(organization=org, user=alice).role == Role.OWNER
    assert AuditEvent.objects.filter(
        organization=org, action="organization.created", actor=alice
    ).exists()


def test_an_invitation_is_emailed_and_accepting_it_makes_a_member(
    alice_client, alice_org, client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(
            reverse("org_settings"), {"invite": "1", "email": "Frank@Example.com", "role": "viewer"}
        )
    assert response.status_code == 302
    assert "Join Alice Co" in mail.outbox[-1].body
    link = re.search(r"/invitations/\S+/", mail.outbox[-1].body).group(0)
    invitation = Invitation.objects.get(email="frank@example.com")
    assert link.split("/")[2] not in invitation.token_hash  # only a hash is stored

    frank = User.objects.create_user("frank@example.com", "a-long-Passphrase-9")
    client.force_login(frank)
    assert client.post(link).status_code == 302
    assert Membership.objects.get(user=frank, organization=alice_org).role == Role.VIEWER
    assert client.post(link).status_code == 404  # used once


def test_inviting_an_invalid_email_is_a_form_error_and_sends_nothing(alice_client):
    response = alice_client.post(
        reverse("org_settings"), {"invite": "1", "email": "nope", "role": "member"}
    )
    assert response.status_code == 200
    assert "valid email" in response.content.decode()
    assert Invitation.objects.count() == 0 and len(mail.outbox) == 0


def test_an_invitation_for_someone_else_cannot_be_accepted(alice, alice_org, charlie):
    _, link = services.invitation_create(
        actor=Actor(user=alice), organization=alice_org, email="zed@example.com"
    )
    secret = link.rstrip("/").split("/")[-1]
    with pytest.raises(ValidationError, match="sent to zed@example.com"):
        services.invitation_accept(actor=Actor(user=charlie), user=charlie, secret=secret)
    assert not Membership.objects.filter(user=charlie, organization=alice_org).exists()


def test_a_viewer_cannot_invite_create_tokens_or_change_roles(client, victor, bob, alice_org):
    client.force_login(victor)
    assert (
        client.post(
            reverse("org_settings"), {"invite": "1", "email": "x@example.com", "role": "member"}
        ).status_code
        == 403
    )
    assert client.get(reverse("api_tokens")).status_code == 403
    membership = Membership.objects.get(user=bob)
    assert (
        client.post(reverse("member_update", args=[membership.id]), {"role": "owner"}).status_code
        == 403
    )
    membership.refresh_from_db()
    assert membership.role == Role.MEMBER
    assert Invitation.objects.count() == 0 and ApiToken.objects.count() == 0


def test_charlie_gets_404_for_alices_members_invitations_and_tokens(
    client, charlie, alice, bob, alice_org, make_token
):
    token, _ = make_token(alice_org)
    invitation, _ = services.invitation_create(
        actor=Actor(user=alice), organization=alice_org, email="g@example.com"
    )
    client.force_login(charlie)
    bob_membership = Membership.objects.get(user=bob)
    assert (
        client.post(reverse("member_update", args=[bob_membership.id]), {"remove": "1"}).status_code
        == 404
    )
    assert client.post(reverse("invitation_revoke", args=[invitation.id])).status_code == 404
    assert client.post(reverse("api_token_revoke", args=[token.id])).status_code == 404
    assert client.post(reverse("org_switch"), {"organization": alice_org.id}).status_code == 404
    assert Membership.objects.filter(pk=bob_membership.pk).exists()
    token.refresh_from_db()
    assert token.revoked_at is None


def test_the_last_owner_cannot_be_demoted_or_removed(alice):
    membership = Membership.objects.get(user=alice)
    with pytest.raises(ValidationError, match="at least one owner"):
        services.membership_set_role(actor=Actor(user=alice), membership=membership, role="member")
    with pytest.raises(ValidationError, match="at least one owner"):
        services.membership_remove(actor=Actor(user=alice), membership=membership)


def test_an_api_token_is_shown_once_and_only_its_hash_is_stored(alice_client, alice_org, caplog):
    caplog.set_level(logging.DEBUG)
    response = alice_client.post(
        reverse("api_tokens"), {"name": "CRM sync", "scopes": ["read", "operate"]}
    )
    assert response.status_code == 200
    secret = re.search(r"cf_live_[A-Za-z0-9]+", response.content.decode()).group(0)
    token = ApiToken.objects.get(name="CRM sync")
    assert token.scopes == ["operate", "read"]
    # Nowhere in the database, nowhere in the logs.
    with connection.cursor() as cursor:
        for table in ("accounts_apitoken", "accounts_auditevent"):
            cursor.execute(f"SELECT * FROM {table}")  # noqa: S608 - fixed table names
            assert secret not in repr(cursor.fetchall())
    assert secret not in caplog.text
    assert alice_client.get(reverse("api_tokens")).content.decode().count(secret) == 0
    assert services.api_token_authenticate(secret) == token


def test_a_revoked_or_expired_token_no_longer_authenticates(alice_org, make_token):
    token, secret = make_token(alice_org)
    assert services.api_token_authenticate(secret) == token
    services.api_token_revoke(actor=SYSTEM, token=token)
    assert services.api_token_authenticate(secret) is None

    expiring, secret2 = make_token(alice_org, expires_at=timezone.now() + timedelta(hours=1))
    ApiToken.objects.filter(pk=expiring.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert services.api_token_authenticate(secret2) is None


def test_token_creation_rejects_unknown_scopes_and_past_expiry(alice_org):
    with pytest.raises(ValidationError, match="read, operate, billing"):
        services.api_token_create(actor=SYSTEM, organization=alice_org, name="x", scopes=["admin"])
    with pytest.raises(ValidationError, match="future"):
        services.api_token_create(
            actor=SYSTEM,
            organization=alice_org,
            name="x",
            scopes=["read"],
            expires_at=timezone.now() - timedelta(days=1),
        )
    assert ApiToken.objects.count() == 0


def test_the_token_last_used_time_is_recorded(alice_org, make_token):
    token, secret = make_token(alice_org)
    assert token.last_used_at is None
    services.api_token_authenticate(secret, ip="127.0.0.1")
    token.refresh_from_db()
    assert token.last_used_at is not None and token.last_used_ip == "127.0.0.1"


def test_audit_events_are_append_only(alice, alice_org):
    event = services.audit(actor=Actor(user=alice), action="x.y", organization=alice_org)
    event.action = "tampered"
    with pytest.raises(ValueError, match="append-only"):
        event.save()


def test_a_scoped_view_that_defines_get_queryset_is_refused_at_import_time():
    with pytest.raises(ImproperlyConfigured, match="scope_queryset"):

        class Leaky(OrganizationScopedMixin):
            def get_queryset(self):
                return Organization.objects.all()

    with pytest.raises(ImproperlyConfigured, match="scope_queryset"):

        class LeakyApi(OrganizationScopedViewSet):
            def get_queryset(self):
                return Organization.objects.all()


def test_the_organization_switcher_changes_the_current_organization(
    alice_client, alice, charlie_org
):
    Membership.objects.create(user=alice, organization=charlie_org, role=Role.VIEWER)
    response = alice_client.post(reverse("org_switch"), {"organization": charlie_org.id})
    assert response.status_code == 302
    page = alice_client.get(reverse("org_settings")).content.decode()
    assert "Charlie Co" in page and "you are viewer" in page


def test_dashboard_pages_render_for_a_signed_in_user(alice_client):
    for name in ("dashboard", "org_settings", "api_tokens", "audit_log", "org_create"):
        assert alice_client.get(reverse(name)).status_code == 200, name


def test_signin_is_rate_limited_by_allauth(client, alice):
    pages = [
        client.post(reverse("account_login"), {"login": "alice@example.com", "password": "wrong"})
        for _ in range(12)
    ]
    assert any(
        p.status_code == 429 or "Too many failed login attempts" in p.content.decode()
        for p in pages
    )
    # Even the right password is refused while the limit holds.
    right = client.post(
        reverse("account_login"),
        {"login": "alice@example.com", "password": "correct-horse-battery"},
    )
    assert right.status_code in (200, 429) and "_auth_user_id" not in client.session
