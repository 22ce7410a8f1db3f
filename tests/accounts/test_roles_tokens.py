"""Roles and tokens: only an owner makes or removes an owner; a member who is removed or demoted
takes the API tokens they created with them; the billing scope reads usage and nothing else."""

from __future__ import annotations

import re

import pytest
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from rest_framework.test import APIClient

from accounts import services
from accounts.models import ApiToken, AuditEvent, Membership, Role
from accounts.services import SYSTEM, Actor
from tests.factories import MembershipFactory, UserFactory, verified

pytestmark = pytest.mark.django_db

API = "/api/v1"


@pytest.fixture
def ada(alice_org):
    """An admin in alice's organization."""
    user = verified(UserFactory(email="ada@example.com"))
    MembershipFactory(user=user, organization=alice_org, role=Role.ADMIN)
    return user


def set_role(actor_user, user, role):
    return services.membership_set_role(
        actor=Actor(user=actor_user), membership=membership(user), role=role
    )


def membership(user) -> Membership:
    return Membership.objects.get(user=user)


def bearer(secret: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return api


def test_an_admin_cannot_become_owner(client, ada, alice):
    client.force_login(ada)
    response = client.post(
        reverse("member_update", args=[membership(ada).id]), {"role": "owner"}, follow=True
    )
    assert response.status_code == 200
    assert "Only an owner can make, demote or remove an owner." in response.content.decode()
    assert membership(ada).role == Role.ADMIN
    with pytest.raises(PermissionDenied):
        services.membership_set_role(
            actor=Actor(user=ada), membership=membership(ada), role="owner"
        )
    assert membership(ada).role == Role.ADMIN
    assert not AuditEvent.objects.filter(action="membership.role_changed").exists()


def test_an_admin_cannot_make_someone_else_owner_nor_demote_or_remove_an_owner(
    ada, alice, bob, alice_org
):
    second_owner = verified(UserFactory(email="otto@example.com"))
    MembershipFactory(user=second_owner, organization=alice_org, role=Role.OWNER)
    with pytest.raises(PermissionDenied):
        services.membership_set_role(
            actor=Actor(user=ada), membership=membership(bob), role="owner"
        )
    with pytest.raises(PermissionDenied):
        services.membership_set_role(
            actor=Actor(user=ada), membership=membership(second_owner), role="member"
        )
    with pytest.raises(PermissionDenied):
        services.membership_remove(actor=Actor(user=ada), membership=membership(second_owner))
    assert membership(bob).role == Role.MEMBER
    assert membership(second_owner).role == Role.OWNER


def test_an_admin_still_manages_members_below_owner(ada, bob):
    services.membership_set_role(actor=Actor(user=ada), membership=membership(bob), role="viewer")
    assert membership(bob).role == Role.VIEWER


def test_an_owner_makes_and_unmakes_owners(alice, bob):
    services.membership_set_role(actor=Actor(user=alice), membership=membership(bob), role="owner")
    assert membership(bob).role == Role.OWNER
    services.membership_set_role(actor=Actor(user=alice), membership=membership(bob), role="admin")
    assert membership(bob).role == Role.ADMIN


def test_a_member_who_is_not_an_admin_cannot_change_roles_through_the_service(bob, ada):
    with pytest.raises(PermissionDenied):
        services.membership_set_role(
            actor=Actor(user=bob), membership=membership(ada), role="viewer"
        )


def _token_made_by(client, user, name="made by ada") -> str:
    client.force_login(user)
    response = client.post(reverse("api_tokens"), {"name": name, "scopes": ["read"]})
    token = ApiToken.objects.get(name=name)
    assert token.created_by == user
    return re.search(r"cf_live_[A-Za-z0-9]+", response.content.decode()).group(0)


def test_a_removed_members_token_gets_401(client, alice, ada):
    secret = _token_made_by(client, ada)
    assert bearer(secret).get(f"{API}/instances").status_code == 200
    client.force_login(alice)
    response = client.post(reverse("member_update", args=[membership(ada).id]), {"remove": "1"})
    assert response.status_code == 302
    assert not Membership.objects.filter(user=ada).exists()
    assert bearer(secret).get(f"{API}/instances").status_code == 401
    revoked = AuditEvent.objects.get(action="api_token.revoked")
    assert (
        revoked.actor == alice and revoked.data["reason"] == "creator removed from the organization"
    )


def test_a_member_demoted_below_admin_loses_their_tokens_but_others_keep_theirs(
    client, alice, ada, alice_org, make_token
):
    secret = _token_made_by(client, ada)
    _, system_secret = make_token(alice_org, ("read",), name="made by the system")
    services.membership_set_role(actor=Actor(user=alice), membership=membership(ada), role="member")
    assert bearer(secret).get(f"{API}/instances").status_code == 401
    assert bearer(system_secret).get(f"{API}/instances").status_code == 200
    event = AuditEvent.objects.get(action="membership.role_changed")
    assert event.data["tokens_revoked"] == 1


def test_an_owner_who_becomes_admin_keeps_their_tokens(client, alice, bob):
    services.membership_set_role(actor=SYSTEM, membership=membership(bob), role="owner")
    secret = _token_made_by(client, bob, name="bob's")
    services.membership_set_role(actor=Actor(user=alice), membership=membership(bob), role="admin")
    assert bearer(secret).get(f"{API}/instances").status_code == 200


def test_the_billing_scope_reads_usage_and_nothing_else(alice_org, make_token):
    _, secret = make_token(alice_org, ("billing",))
    api = bearer(secret)
    assert api.get(f"{API}/usage").status_code == 200
    for path in (
        "instances",
        "sessions",
        "backups",
        "operations",
        "members",
        "tokens",
        "audit-events",
        "organization",
    ):
        assert api.get(f"{API}/{path}").status_code == 403, path
    assert api.post(f"{API}/instances", {"name": "x"}, format="json").status_code == 403


@pytest.mark.parametrize(
    "next_url",
    [
        "https://evil.example/phish",
        "//evil.example/phish",
        "/\\evil.example",
        "javascript:alert(1)",
        "http://testserver/instances/",
    ],
)
def test_the_organization_switcher_goes_only_to_local_paths(alice_client, alice_org, next_url):
    response = alice_client.post(
        reverse("org_switch"), {"organization": alice_org.id, "next": next_url}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("dashboard")


def test_the_organization_switcher_keeps_a_local_next_path(alice_client, alice_org):
    response = alice_client.post(
        reverse("org_switch"), {"organization": alice_org.id, "next": "/instances/?page=2"}
    )
    assert response.status_code == 302 and response["Location"] == "/instances/?page=2"
