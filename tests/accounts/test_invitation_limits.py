"""Invitations are rate-limited per organization and per inviting person."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from accounts import services
from accounts.models import Invitation, Role
from accounts.services import Actor, RateLimited
from fleet.api import exception_handler
from tests.factories import MembershipFactory, OrganizationFactory

pytestmark = pytest.mark.django_db


def invite(client, email):
    return client.post(reverse("org_settings"), {"invite": "1", "email": email, "role": "member"})


def test_invitations_beyond_the_organizations_hourly_limit_are_a_form_error(
    settings, alice_client, django_capture_on_commit_callbacks
):
    settings.INVITATIONS_PER_HOUR_PER_ORG = 3
    with django_capture_on_commit_callbacks(execute=True):
        for n in range(3):
            assert invite(alice_client, f"friend{n}@example.com").status_code == 302
        refused = invite(alice_client, "friend3@example.com")
    assert refused.status_code == 200
    assert "Too many invitations in the last hour (3)" in refused.content.decode()
    assert not Invitation.objects.filter(email="friend3@example.com").exists()
    assert len(mail.outbox) == 3


def test_the_limit_per_person_counts_all_their_organizations(settings, alice, alice_org):
    settings.INVITATIONS_PER_HOUR_PER_ORG, settings.INVITATIONS_PER_HOUR_PER_USER = 10, 2
    other_org = OrganizationFactory(name="Alice Two", slug="alice-two")
    MembershipFactory(user=alice, organization=other_org, role=Role.OWNER)
    actor = Actor(user=alice)
    services.invitation_create(actor=actor, organization=alice_org, email="a@example.com")
    services.invitation_create(actor=actor, organization=other_org, email="b@example.com")
    with pytest.raises(RateLimited, match="Too many invitations"):
        services.invitation_create(actor=actor, organization=other_org, email="c@example.com")


def test_invitations_older_than_an_hour_no_longer_count(settings, alice, alice_org):
    settings.INVITATIONS_PER_HOUR_PER_ORG = 1
    actor = Actor(user=alice)
    services.invitation_create(actor=actor, organization=alice_org, email="a@example.com")
    with pytest.raises(RateLimited):
        services.invitation_create(actor=actor, organization=alice_org, email="b@example.com")
    Invitation.objects.update(created_at=timezone.now() - timedelta(hours=1, seconds=5))
    services.invitation_create(actor=actor, organization=alice_org, email="b@example.com")
    assert Invitation.objects.filter(email="b@example.com").exists()


def test_a_service_rate_limit_is_a_429_with_retry_after_in_the_api():
    response = exception_handler(RateLimited("Too many invitations.", retry_after=120), {})
    assert response.status_code == 429
    assert response["Retry-After"] == "120"
    assert response.data["error"]["code"] == "rate_limited"
    assert response.data["error"]["message"].startswith("Too many invitations.")
