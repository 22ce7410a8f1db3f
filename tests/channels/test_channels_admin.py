"""The staff admin of channels (channels/admin.py): staff see each channel's bot, instance,
organization and health but never its secrets; the two actions call the same services and tasks
as the dashboard and the API (audited as the staff member, via admin); staff without the operate
permission are offered neither.

Non-transactional like the rest of the admin suite: the removal's task is queued on commit,
which never fires here, so we assert on the rows and on what the page says.
"""

# ruff: noqa: F811 - pytest fixtures imported from the admin suite are used as arguments
from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.urls import reverse

from accounts.models import AuditEvent
from channels import tasks
from channels.models import Channel
from instances.models import Instance
from instances.openclaw.client import OpenClawError
from tests.admin.conftest import (  # noqa: F401 - the admin suite's fixtures
    _fast_passwords,
    admin_client_,
    host,
    make_instance,
    make_org,
    superuser,
)
from tests.admin.door import sign_in_staff
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:channels_channel_changelist")
TOKEN = "123456789:AAsecretTelegramTokenDoNotShowXXXXXXXXX"
SLACK_APP_TOKEN = "xapp-1-A0-secret-app-token-do-not-show"


def make_channel(instance, *, kind="telegram", status=Channel.Status.HEALTHY, **kwargs):
    return Channel.objects.create(
        organization=instance.organization,
        instance=instance,
        kind=kind,
        bot_name=f"{kind}_support_bot",
        secret=TOKEN if kind == "telegram" else f"{kind}-secret-do-not-show",
        secret_extra=SLACK_APP_TOKEN if kind == "slack" else "",
        status=status,
        **kwargs,
    )


def run_action(client, action, channels):
    data = {"action": action, "_selected_action": [str(c.pk) for c in channels], "index": 0}
    return client.post(CHANGELIST, data, follow=True)


def texts(response):
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def org(db):
    return make_org(name="Acme")


@pytest.fixture
def running(org, host):
    return make_instance(org, host, status=Instance.Status.RUNNING)


def test_staff_see_each_channel_with_its_instance_and_health_but_never_its_secrets(
    admin_client_, running
):
    telegram = make_channel(running, last_error="")
    slack = make_channel(running, kind="slack", status=Channel.Status.BROKEN, last_error="bad")

    listing = admin_client_.get(CHANGELIST)
    page = admin_client_.get(reverse("admin:channels_channel_change", args=[slack.pk]))

    assert listing.status_code == 200 and page.status_code == 200
    body = listing.content.decode()
    assert "telegram_support_bot" in body and "slack_support_bot" in body
    assert running.name in body and "Broken" in body and "Healthy" in body
    for content in (body, page.content.decode()):
        assert TOKEN not in content
        assert "slack-secret-do-not-show" not in content and SLACK_APP_TOKEN not in content
    assert "bad" in page.content.decode()  # OpenClaw's reason, read-only
    assert telegram.secret == TOKEN  # stored all the same


def test_removing_from_the_admin_marks_the_channels_and_audits_the_staff_member(
    admin_client_, superuser, running, org, host
):
    other = make_instance(org, host)
    channels = [make_channel(running), make_channel(other, kind="discord")]

    response = run_action(admin_client_, "remove_channels", channels)

    assert response.status_code == 200
    assert "Removal queued." in texts(response)
    for channel in channels:
        channel.refresh_from_db()
        assert channel.status == Channel.Status.REMOVING
        event = AuditEvent.objects.get(action="channel.removed", target_id=str(channel.pk))
        assert event.actor == superuser
        assert event.organization == org
        assert event.data["via"] == "admin"
        assert event.data["kind"] == channel.kind


def test_the_removal_task_is_queued_once_the_action_commits(
    admin_client_, running, django_capture_on_commit_callbacks, monkeypatch
):
    channel = make_channel(running)
    queued = []
    monkeypatch.setattr(tasks.remove_channel_task, "delay", lambda cid: queued.append(cid))

    with django_capture_on_commit_callbacks(execute=True):
        run_action(admin_client_, "remove_channels", [channel])

    assert queued == [str(channel.pk)]


def test_reading_health_of_a_stopped_instance_shows_its_channels_as_stopped(
    admin_client_, org, host
):
    stopped = make_instance(org, host, status=Instance.Status.STOPPED)
    channel = make_channel(stopped)

    response = run_action(admin_client_, "check_health", [channel])

    assert "Health read." in texts(response)
    channel.refresh_from_db()
    assert channel.status == Channel.Status.STOPPED
    assert channel.last_checked_at is not None
    listing = admin_client_.get(CHANGELIST).content.decode()
    assert "Instance not running" in listing


def test_a_gateway_that_cannot_answer_is_an_error_message_naming_the_instance(
    admin_client_, running, monkeypatch
):
    channel = make_channel(running)

    def fail(instance_id):
        raise OpenClawError("channels.status failed (exit 1)", code=1)

    monkeypatch.setattr(tasks, "check_channels_of", fail)

    response = run_action(admin_client_, "check_health", [channel])

    assert response.status_code == 200
    assert f"Instance {running.pk}: channels.status failed (exit 1)" in texts(response)
    channel.refresh_from_db()
    assert channel.status == Channel.Status.HEALTHY  # nothing recorded from a failed read


def test_staff_who_may_only_look_are_offered_no_channel_action(client, running):
    viewer = UserFactory(email="val.viewer@clawfleet.test", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_channel"))
    sign_in_staff(client, viewer)
    channel = make_channel(running)

    listing = client.get(CHANGELIST)
    response = run_action(client, "remove_channels", [channel])

    assert listing.status_code == 200
    assert "telegram_support_bot" in listing.content.decode()
    assert "remove_channels" not in listing.content.decode()
    assert "check_health" not in listing.content.decode()
    channel.refresh_from_db()
    assert channel.status == Channel.Status.HEALTHY
    assert not AuditEvent.objects.filter(action="channel.removed").exists()
    assert response.status_code == 200
