"""Staff roles and the staff transcript view.

Support sees session metadata and costs; a transcript opens only with the permission
"sessions_mgmt.view_transcript", and only when the customer allowed support access or the staff
member gives a reason. Every attempt leaves an audit row. Reading a transcript needs a running
instance; these instances are stopped, so the gates and the audit are what we check here."""

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from accounts.models import AuditEvent
from instances.models import Instance

from .conftest import make_instance, make_session
from .door import sign_in_staff

TRANSCRIPT_ACTIONS = ("transcript.viewed_by_staff", "transcript.view_failed_by_staff")


@pytest.fixture
def stopped(org, host):
    return make_instance(org, host, status=Instance.Status.STOPPED)


@pytest.fixture
def session(stopped):
    return make_session(stopped, session_key="agent:main:telegram:direct:777", cost="1.25")


def transcript_url(session):
    return reverse("admin:sessions_mgmt_session_transcript", args=[session.pk])


def transcript_audits():
    return AuditEvent.objects.filter(action__in=TRANSCRIPT_ACTIONS)


def test_the_support_group_may_view_and_read_transcripts_but_change_nothing(db):
    perms = set(
        Group.objects.get(name="Support").permissions.values_list(
            "content_type__app_label", "codename"
        )
    )
    assert ("sessions_mgmt", "view_transcript") in perms
    for app, codename in [
        ("instances", "view_instance"),
        ("instances", "view_operation"),
        ("instances", "view_instanceevent"),
        ("sessions_mgmt", "view_session"),
        ("sessions_mgmt", "view_backup"),
    ]:
        assert (app, codename) in perms
    assert all(codename.startswith("view_") for _, codename in perms)


def test_staff_without_the_permission_get_403_by_url_and_see_no_link(client, viewer_staff, session):
    sign_in_staff(client, viewer_staff)

    assert client.get(transcript_url(session)).status_code == 403
    assert (
        client.post(transcript_url(session), {"reason": "ticket 1234 says so"}).status_code == 403
    )

    listing = client.get(reverse("admin:sessions_mgmt_session_changelist"))
    assert listing.status_code == 200
    assert b"agent:main:telegram:direct:777" in listing.content  # metadata is visible
    assert transcript_url(session).encode() not in listing.content
    change = client.get(reverse("admin:sessions_mgmt_session_change", args=[session.pk]))
    assert transcript_url(session).encode() not in change.content
    instance_page = client.get(
        reverse("admin:instances_instance_change", args=[session.instance_id])
    )
    assert transcript_url(session).encode() not in instance_page.content
    assert not transcript_audits().exists()


def test_support_sees_session_costs_and_the_transcript_link(support_client, session):
    listing = support_client.get(reverse("admin:sessions_mgmt_session_changelist"))

    assert listing.status_code == 200
    assert b"1.2500" in listing.content
    assert transcript_url(session).encode() in listing.content


def test_support_without_the_customers_grant_must_give_a_reason_first(support_client, session):
    page = support_client.get(transcript_url(session))

    assert page.status_code == 200
    assert b"not</strong> allowed support" in page.content
    assert b'name="reason"' in page.content
    assert not transcript_audits().exists()

    empty = support_client.post(transcript_url(session), {"reason": "  "})
    assert b"This field is required" in empty.content
    assert not transcript_audits().exists()


def test_a_reason_opens_the_transcript_and_the_attempt_is_audited(
    support_client, support_user, session
):
    reason = "Ticket #4521: customer reports the bot loops on this chat"

    page = support_client.post(transcript_url(session), {"reason": reason})

    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"]
    # The instance is stopped, so nothing can be read, but the attempt is on record.
    assert b"Start the instance" in page.content
    event = transcript_audits().get()
    assert event.actor == support_user
    assert event.organization == session.organization
    assert event.target_id == str(session.instance_id)
    assert event.data["session_key"] == session.session_key
    assert event.data["reason"] == reason
    assert event.data["customer_allowed"] is False
    assert event.data["via"] == "admin"


def test_with_the_customers_grant_no_reason_is_asked_and_the_view_is_audited(
    support_client, support_user, session
):
    Instance.objects.filter(pk=session.instance_id).update(support_transcript_access=True)

    page = support_client.get(transcript_url(session))

    assert page.status_code == 200
    assert b'name="reason"' not in page.content
    event = transcript_audits().get()
    assert event.actor == support_user
    assert event.data["customer_allowed"] is True
    assert event.data["reason"] == ""


def test_superusers_also_give_a_reason_without_the_customers_grant(admin_client_, session):
    page = admin_client_.get(transcript_url(session))

    assert b'name="reason"' in page.content
    assert not transcript_audits().exists()


def test_a_transcript_of_an_unknown_session_is_a_404(support_client, db):
    url = reverse("admin:sessions_mgmt_session_transcript", args=[999999])
    assert support_client.get(url).status_code == 404


class _History:
    """The running instance's OpenClaw, as far as a transcript read asks it."""

    def history(self, key, *, offset=None, limit=50, **kwargs):
        from instances.openclaw.client import Message

        return [Message(id="1", role="user", text="the customer's words", at=None)], None


def test_staff_transcript_audit_rows_carry_the_client_ip(support_client, org, host, monkeypatch):
    from sessions_mgmt.services import access

    monkeypatch.setattr(access, "client_for", lambda instance, **kwargs: _History())
    running = make_session(make_instance(org, host), session_key="agent:main:telegram:direct:9")
    stopped = make_session(
        make_instance(org, host, status=Instance.Status.STOPPED),
        session_key="agent:main:telegram:direct:10",
    )
    reason = {"reason": "Ticket #77: the customer asked us to look"}

    read = support_client.post(transcript_url(running), reason, REMOTE_ADDR="192.0.2.44")
    failed = support_client.post(transcript_url(stopped), reason, REMOTE_ADDR="192.0.2.45")

    assert b"the customer&#x27;s words" in read.content
    assert b"Start the instance" in failed.content
    viewed = AuditEvent.objects.get(action="transcript.viewed_by_staff")
    assert (viewed.ip, viewed.data["session_key"]) == ("192.0.2.44", running.session_key)
    not_read = AuditEvent.objects.get(action="transcript.view_failed_by_staff")
    assert (not_read.ip, not_read.data["error"]) == ("192.0.2.45", "TranscriptUnavailable")
