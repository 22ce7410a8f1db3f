import pytest
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from accounts.models import AuditEvent
from instances.openclaw.client import Message
from sessions_mgmt import services
from sessions_mgmt.models import Backup, Session
from sessions_mgmt.services import access


class HistoryClient:
    def __init__(self):
        self.asked = []

    def history(self, key, *, offset=None, limit=50, **kwargs):
        self.asked.append((key, offset, limit))
        return [
            Message(id="1", role="user", text="hello there", at=None)
        ], 7 if not offset else None


@pytest.fixture
def history(monkeypatch):
    client = HistoryClient()
    monkeypatch.setattr(access, "client_for", lambda instance, **kwargs: client)
    return client


def _session(instance, key="agent:main:a"):
    return Session.objects.create(
        instance=instance, organization_id=instance.organization_id, session_key=key
    )


def test_transcript_pages_come_from_the_instance_not_our_database(alice_instance, history):
    _session(alice_instance)
    messages, older = services.transcript_page(
        instance=alice_instance, session_key="agent:main:a", limit=10
    )
    assert messages[0].text == "hello there" and older == 7
    services.transcript_page(instance=alice_instance, session_key="agent:main:a", before="7")
    assert history.asked == [("agent:main:a", None, 10), ("agent:main:a", 7, 50)]


def test_staff_need_the_customers_consent_or_a_reason(alice_instance, history, django_user_model):
    _session(alice_instance)
    staff = django_user_model.objects.create(email="staff@clawfleet.example", is_staff=True)
    with pytest.raises(PermissionDenied):
        services.transcript_for_staff(
            staff_user=staff, instance=alice_instance, session_key="agent:main:a", reason=""
        )
    assert not AuditEvent.objects.filter(action="transcript.viewed_by_staff").exists()
    services.transcript_for_staff(
        staff_user=staff,
        instance=alice_instance,
        session_key="agent:main:a",
        reason="ticket 42: assistant loops",
    )
    event = AuditEvent.objects.get(action="transcript.viewed_by_staff")
    assert event.actor == staff and event.data["reason"].startswith("ticket 42")
    assert event.organization_id == alice_instance.organization_id


def test_staff_may_read_without_a_reason_when_the_customer_allows_it(
    alice_instance, history, django_user_model
):
    _session(alice_instance)
    alice_instance.support_transcript_access = True
    staff = django_user_model.objects.create(email="staff2@clawfleet.example", is_staff=True)
    services.transcript_for_staff(
        staff_user=staff, instance=alice_instance, session_key="agent:main:a"
    )
    assert AuditEvent.objects.filter(action="transcript.viewed_by_staff").count() == 1


def test_non_staff_cannot_use_the_staff_path(alice_instance, history, alice):
    _session(alice_instance)
    with pytest.raises(PermissionDenied):
        services.transcript_for_staff(
            staff_user=alice, instance=alice_instance, session_key="agent:main:a", reason="x"
        )


def test_alice_sees_her_sessions_with_filters_and_sort(client, alice, alice_instance):
    client.force_login(alice)
    a = _session(alice_instance, "agent:main:cheap")
    b = _session(alice_instance, "agent:main:pricey")
    Session.objects.filter(pk=b.pk).update(cost_usd="1.5", channel="telegram")
    r = client.get(reverse("sessions_mgmt:list"), {"sort": "cost"})
    assert r.status_code == 200
    body = r.content.decode()
    assert body.index("agent:main:pricey") < body.index("agent:main:cheap")
    r = client.get(reverse("sessions_mgmt:list"), {"channel": "telegram"})
    assert "agent:main:pricey" in r.content.decode()
    assert "agent:main:cheap" not in r.content.decode()
    r = client.get(reverse("sessions_mgmt:list"), {"q": "cheap"})
    assert "agent:main:cheap" in r.content.decode() and "pricey" not in r.content.decode()
    r = client.get(reverse("sessions_mgmt:detail", args=[a.pk]))
    assert r.status_code == 200 and "Transcript" in r.content.decode()


def test_charlie_never_sees_alices_sessions_or_backups(
    client, alice, charlie, alice_instance, history
):
    s = _session(alice_instance, "agent:main:secret")
    backup = Backup.objects.create(
        instance=alice_instance,
        organization_id=alice_instance.organization_id,
        kind="manual",
        state="succeeded",
        storage_name="x",
    )
    client.force_login(charlie)
    r = client.get(reverse("sessions_mgmt:list"))
    assert r.status_code == 200 and "agent:main:secret" not in r.content.decode()
    for url in (
        reverse("sessions_mgmt:detail", args=[s.pk]),
        reverse("sessions_mgmt:transcript", args=[s.pk]),
        reverse("sessions_mgmt:backups", args=[alice_instance.pk]),
        reverse("sessions_mgmt:retention", args=[alice_instance.pk]),
        reverse("sessions_mgmt:restore", args=[alice_instance.pk, backup.pk]),
    ):
        assert client.get(url).status_code == 404, url
    for url in (
        reverse("sessions_mgmt:backup_now", args=[alice_instance.pk]),
        reverse("sessions_mgmt:prune", args=[alice_instance.pk]),
        reverse("sessions_mgmt:restore", args=[alice_instance.pk, backup.pk]),
    ):
        assert client.post(url, {"confirm": alice_instance.name}).status_code == 404, url
    assert history.asked == []


def test_a_viewer_may_look_but_not_read_transcripts_or_back_up(
    client, victor, alice_instance, history
):
    s = _session(alice_instance)
    client.force_login(victor)
    assert client.get(reverse("sessions_mgmt:detail", args=[s.pk])).status_code == 200
    assert client.get(reverse("sessions_mgmt:transcript", args=[s.pk])).status_code == 403
    r = client.post(reverse("sessions_mgmt:backup_now", args=[alice_instance.pk]))
    assert r.status_code == 403
    assert history.asked == []


def test_transcript_partial_renders_turns_and_a_load_older_button(
    client, alice, alice_instance, history
):
    s = _session(alice_instance)
    client.force_login(alice)
    r = client.get(reverse("sessions_mgmt:transcript", args=[s.pk]))
    body = r.content.decode()
    assert "turn turn-user" in body and "hello there" in body
    assert "before=7" in body


def test_back_up_now_queues_an_operation(client, alice, alice_instance):
    client.force_login(alice)
    r = client.post(reverse("sessions_mgmt:backup_now", args=[alice_instance.pk]))
    assert r.status_code == 302
    assert alice_instance.operations.filter(kind="backup").count() == 1


def test_restore_asks_for_the_instance_name_and_shows_the_warning(client, alice, alice_instance):
    backup = Backup.objects.create(
        instance=alice_instance,
        organization_id=alice_instance.organization_id,
        kind="manual",
        state="succeeded",
        storage_name="x",
    )
    client.force_login(alice)
    url = reverse("sessions_mgmt:restore", args=[alice_instance.pk, backup.pk])
    r = client.get(url)
    assert "replaces the instance" in r.content.decode()
    r = client.post(url, {"confirm": "wrong"})
    assert r.status_code == 400 and "to confirm" in r.content.decode()
    assert alice_instance.operations.count() == 0
    r = client.post(url, {"confirm": alice_instance.name})
    assert r.status_code == 302
    assert alice_instance.operations.filter(kind="restore").count() == 1


def test_retention_form_shows_inline_errors_and_saves(client, alice, alice_instance):
    client.force_login(alice)
    url = reverse("sessions_mgmt:retention", args=[alice_instance.pk])
    r = client.post(url, {"session_idle_days": "0", "session_max_count": "10"})
    assert r.status_code == 400 and "field-error" in r.content.decode()
    r = client.post(
        url, {"session_idle_days": "14", "session_max_count": "100", "archive_before_prune": "on"}
    )
    assert r.status_code == 302
    alice_instance.refresh_from_db()
    assert (alice_instance.session_idle_days, alice_instance.session_max_count) == (14, 100)
    assert alice_instance.support_transcript_access is False


def test_cards_render_for_the_instance_page(alice_instance):
    from django.template.loader import render_to_string

    _session(alice_instance)
    html = render_to_string("sessions_mgmt/_sessions_card.html", {"instance": alice_instance})
    assert "1 sessions" in html or "1 session" in html
    html = render_to_string("sessions_mgmt/_backups_card.html", {"instance": alice_instance})
    assert "Back up now" in html
