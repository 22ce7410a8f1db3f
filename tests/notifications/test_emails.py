"""Notification emails: owners and admins, each kind opt-out per person, at most one per
instance per kind per hour."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail

from accounts.models import Role
from instances import state
from notifications.models import EmailNotice, EmailOptOut
from tests.factories import InstanceFactory, MembershipFactory, UserFactory, verified

pytestmark = pytest.mark.django_db


@pytest.fixture
def adam(alice_org):
    user = verified(UserFactory(email="adam@example.com"))
    MembershipFactory(user=user, organization=alice_org, role=Role.ADMIN)
    return user


@pytest.fixture
def commit(django_capture_on_commit_callbacks):
    return django_capture_on_commit_callbacks


def _crash(bot, commit):
    with commit(execute=True):
        state.transition(bot, "crash_looping", reason="exited 3 times")
    with commit(execute=True):
        state.transition(bot, "running", reason="recovered")


def test_a_crash_loop_mails_owners_and_admins_once_an_hour(alice, bob, adam, alice_org, commit):
    bot = InstanceFactory(organization=alice_org, name="acme-support")
    _crash(bot, commit)
    _crash(bot, commit)  # again within the hour: no second mail
    crash_mails = [m for m in mail.outbox if "crash-looping" in m.subject]
    assert len(crash_mails) == 1
    assert sorted(crash_mails[0].to) == ["adam@example.com", "alice@example.com"]  # not bob
    assert "acme-support" in crash_mails[0].subject
    # An hour later it may mail again; another instance mails at once.
    EmailNotice.objects.update(sent_at=EmailNotice.objects.get().sent_at - timedelta(hours=1))
    _crash(bot, commit)
    _crash(InstanceFactory(organization=alice_org, name="beta-bot"), commit)
    assert len([m for m in mail.outbox if "crash-looping" in m.subject]) == 3


def test_a_person_opting_out_of_a_kind_no_longer_gets_it(alice, adam, alice_org, client, commit):
    client.force_login(alice)
    page = client.get("/notifications/preferences/")
    assert "An instance is crash-looping" in page.content.decode()
    response = client.post(
        "/notifications/preferences/",
        {"instance.failed": "on", "backup.failed": "on"},  # crash-looping left unticked
        follow=True,
    )
    assert "Email preferences saved." in response.content.decode()
    assert EmailOptOut.objects.filter(user=alice, kind="instance.crash_looping").exists()
    _crash(InstanceFactory(organization=alice_org), commit)
    (sent,) = [m for m in mail.outbox if "crash-looping" in m.subject]
    assert sent.to == ["adam@example.com"]
    # Ticking it again opts back in.
    client.post("/notifications/preferences/", {"instance.crash_looping": "on"})
    assert not EmailOptOut.objects.filter(user=alice, kind="instance.crash_looping").exists()


def test_a_successful_operation_or_a_healthy_status_mails_nobody(alice, alice_org, commit):
    bot = InstanceFactory(organization=alice_org, status="stopped")
    with commit(execute=True):
        state.transition(bot, "starting", reason="start")
        state.transition(bot, "running", reason="start")
    assert mail.outbox == []
