"""Signed outgoing webhooks: a real receiver on loopback, a real Celery worker, the documented
verification snippet; retries with back-off, the same delivery id on every retry and on a
redelivery, an endpoint disabled after 3 days of failures with an email to its owners; the
address rule; the secret shown once; another organization's endpoints are a 404."""

from __future__ import annotations

import itertools
import json
import re
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core import mail
from django.utils import timezone

from fleet import hooks
from instances import operations, state
from notifications import events, services
from notifications.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tests.factories import (
    InstanceFactory,
    OperationFactory,
)

from .receiver import Receiver

DOC = Path(__file__).resolve().parents[2] / "docs" / "notifications.md"
WEBHOOKS = "/api/v1/webhooks"
DELIVERIES = "/api/v1/webhook-deliveries"


def documented_verify():
    """The verification snippet of docs/notifications.md, run as a receiver would run it."""
    text = DOC.read_text()
    section = text.split("### Verifying a delivery", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace["verify"]


def _endpoint(org, url, wanted, **kwargs):
    from accounts.services import SYSTEM

    return services.endpoint_create(
        actor=SYSTEM, organization=org, url=url, events=list(wanted), **kwargs
    )


def _wait(predicate, timeout=60, what="the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


# --- with a real worker ------------------------------------------------------------------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_crash_loop_and_a_failed_backup_each_arrive_once_signed(
    webhook_worker, alice_org, receiver
):
    endpoint, secret = _endpoint(
        alice_org, receiver.url, [events.INSTANCE_STATUS, events.BACKUP_FAILED]
    )
    bot = InstanceFactory(organization=alice_org, name="acme-support", client_name="Acme Ltd")
    assert state.transition(bot, "crash_looping", reason="exited 3 times in 60 s")
    op = OperationFactory(instance=bot, kind="backup", state="running", finished_at=None)
    operations.finish(op, error=RuntimeError("disk full"))

    got = receiver.wait_for(2)
    time.sleep(2)  # anything sent twice would arrive by now
    assert len(receiver.requests) == 2
    verify = documented_verify()
    by_type = {}
    for r in got:
        assert verify(secret, r.body, r.headers["Clawfleet-Signature"])
        assert not verify("whsec_wrong", r.body, r.headers["Clawfleet-Signature"])
        body = json.loads(r.body)
        assert body["type"] == r.headers["Clawfleet-Event"]
        by_type[body["type"]] = (r, body)
    assert set(by_type) == {"instance.status_changed", "backup.failed"}
    crash = by_type["instance.status_changed"][1]["data"]
    assert (crash["status"], crash["previous_status"]) == ("crash_looping", "running")
    assert crash["instance"]["name"] == "acme-support"
    assert crash["instance"]["client_name"] == "Acme Ltd"
    backup = by_type["backup.failed"][1]["data"]
    assert backup["operation"]["kind"] == "backup" and backup["operation"]["state"] == "failed"
    # Recorded: delivered on the first attempt, with its status code.
    for delivery in WebhookDelivery.objects.filter(endpoint=endpoint):
        assert delivery.state == "delivered"
        assert list(delivery.attempts.values_list("status_code", flat=True)) == [200]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_receiver_failing_three_times_gets_the_event_on_the_fourth_try_and_a_replay_keeps_the_id(
    webhook_worker, alice_org, api_for
):
    with Receiver(script=[500, 500, 500]) as receiver:
        endpoint, secret = _endpoint(alice_org, receiver.url, [events.INSTANCE_STATUS])
        bot = InstanceFactory(organization=alice_org, status="running")
        assert state.transition(bot, "stopped", reason="stopped by alice")
        got = receiver.wait_for(4, timeout=90)
        assert [r.status for r in got] == [500, 500, 500, 200]
        ids = {r.headers["Clawfleet-Delivery"] for r in got}
        assert len(ids) == 1
        assert [r.headers["Clawfleet-Attempt"] for r in got] == ["1", "2", "3", "4"]
        assert len({r.body for r in got}) == 1  # the same bytes, re-signed each time
        delivery = WebhookDelivery.objects.get(endpoint=endpoint)
        _wait(lambda: WebhookDelivery.objects.get(pk=delivery.pk).state == "delivered")
        delivery.refresh_from_db()
        assert str(delivery.pk) in ids
        assert delivery.attempt_count == 4
        assert list(delivery.attempts.values_list("status_code", flat=True)) == [
            500,
            500,
            500,
            200,
        ]
        gaps = [
            (b.started_at - a.started_at).total_seconds()
            for a, b in itertools.pairwise(delivery.attempts.all())
        ]
        assert gaps[1] > gaps[0] * 1.5 and gaps[2] > gaps[1] * 1.5  # the back-off doubles

        # The API shows the attempts; a redelivery by hand sends it again with the same id.
        api = api_for(alice_org)
        shown = api.get(f"{DELIVERIES}/{delivery.pk}").json()
        assert [a["status_code"] for a in shown["attempts"]] == [500, 500, 500, 200]
        response = api.post(f"{DELIVERIES}/{delivery.pk}/redeliver")
        assert response.status_code == 202
        replay = receiver.wait_for(5)[-1]
        assert replay.headers["Clawfleet-Delivery"] == str(delivery.pk)
        assert documented_verify()(secret, replay.body, replay.headers["Clawfleet-Signature"])
        _wait(lambda: WebhookAttempt.objects.filter(delivery=delivery).count() == 5)
        assert WebhookAttempt.objects.get(delivery=delivery, number=5).manual


# --- the delivery service, one attempt at a time -------------------------------------------------


@pytest.mark.django_db
def test_the_back_off_doubles_up_to_its_cap(settings):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 30
    settings.WEBHOOK_RETRY_MAX_SECONDS = 4 * 3600
    waits = [services.backoff_seconds(n) for n in range(1, 12)]
    assert waits[:4] == [30, 60, 120, 240]
    assert max(waits) == 4 * 3600
    # Retried for at least 24 hours: the sum of the waits before giving up exceeds a day.
    total, n = 0.0, 1
    while total < 24 * 3600:
        total += services.backoff_seconds(n)
        n += 1
    assert 10 <= n <= 20


@pytest.mark.django_db
def test_a_delivery_failing_for_its_whole_window_gives_up(alice_org, settings, receiver):
    receiver.script = [503]
    endpoint, _ = _endpoint(alice_org, receiver.url, [events.OPERATION_FINISHED])
    delivery = WebhookDelivery.objects.create(
        organization=alice_org,
        endpoint=endpoint,
        event_type=events.OPERATION_FINISHED,
        body="{}",
        next_attempt_at=timezone.now(),
        window_started_at=timezone.now() - timedelta(hours=24, minutes=1),
    )
    attempt = services.delivery_attempt(delivery_id=delivery.pk)
    assert attempt.status_code == 503
    delivery.refresh_from_db()
    assert delivery.state == "failed" and delivery.next_attempt_at is None
    assert services.delivery_attempt(delivery_id=delivery.pk) is None  # nothing more to send


@pytest.mark.django_db
def test_an_endpoint_failing_for_three_days_is_disabled_and_the_owners_get_an_email(
    alice, bob, alice_org, receiver, django_capture_on_commit_callbacks
):
    receiver.script = [500, 500]
    endpoint, _ = _endpoint(alice_org, receiver.url, [events.OPERATION_FINISHED])
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        failing_since=timezone.now() - timedelta(days=3, minutes=1)
    )
    now = timezone.now()
    first, second = (
        WebhookDelivery.objects.create(
            organization=alice_org,
            endpoint=endpoint,
            event_type=events.OPERATION_FINISHED,
            body="{}",
            next_attempt_at=now,
        )
        for _ in range(2)
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.delivery_attempt(delivery_id=first.pk)
    endpoint.refresh_from_db()
    assert not endpoint.is_active and endpoint.disabled_at is not None
    assert "3 days" in endpoint.disabled_reason
    second.refresh_from_db()
    assert second.state == "failed"  # nothing more goes to a disabled endpoint
    disabled = [m for m in mail.outbox if "disabled" in m.subject]
    assert len(disabled) == 1 and disabled[0].to == ["alice@example.com"]  # the owner only
    assert receiver.url in disabled[0].body
    assert services.delivery_attempt(delivery_id=second.pk) is None


@pytest.mark.django_db
def test_a_success_clears_the_failure_streak(alice_org, receiver):
    endpoint, _ = _endpoint(alice_org, receiver.url, [events.OPERATION_FINISHED])
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        failing_since=timezone.now() - timedelta(days=2)
    )
    delivery = WebhookDelivery.objects.create(
        organization=alice_org,
        endpoint=endpoint,
        event_type=events.OPERATION_FINISHED,
        body="{}",
        next_attempt_at=timezone.now(),
    )
    assert services.delivery_attempt(delivery_id=delivery.pk).status_code == 200
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None and endpoint.is_active


@pytest.mark.django_db
def test_a_redirect_is_not_followed(alice_org, receiver):
    receiver.script = [302]
    endpoint, _ = _endpoint(alice_org, receiver.url, [events.OPERATION_FINISHED])
    delivery = WebhookDelivery.objects.create(
        organization=alice_org,
        endpoint=endpoint,
        event_type=events.OPERATION_FINISHED,
        body="{}",
        next_attempt_at=timezone.now(),
    )
    attempt = services.delivery_attempt(delivery_id=delivery.pk)
    assert attempt.status_code == 302 and "Redirects are not followed" in attempt.error
    assert len(receiver.requests) == 1


# --- what the apps below tell ---------------------------------------------------------------------


@pytest.mark.django_db
def test_the_budget_and_channel_hooks_become_events(alice_org, receiver):
    _endpoint(alice_org, receiver.url, [events.BUDGET_THRESHOLD, events.CHANNEL_BROKEN])
    from billing.models import Budget

    budget = Budget.objects.create(organization=alice_org, monthly_cap_usd=10)
    hooks.run(
        "budget.threshold",
        organization=alice_org,
        budget=budget,
        instance=None,
        percent=80,
        spent=8,
        cap=10,
    )
    bot = InstanceFactory(organization=alice_org)
    channel = SimpleNamespace(pk=7, instance=bot, organization=alice_org, kind="telegram")
    hooks.run("channel.health_changed", channel=channel, healthy=True, reason="fine")
    hooks.run("channel.health_changed", channel=channel, healthy=False, reason="token revoked")
    rows = WebhookDelivery.objects.filter(organization=alice_org).order_by("created_at")
    assert [d.event_type for d in rows] == ["budget.threshold_reached", "channel.broken"]
    budget_body = json.loads(rows[0].body)["data"]["budget"]
    assert (budget_body["percent"], budget_body["spent"], budget_body["cap"]) == (
        80,
        "8.00",
        "10.00",
    )
    assert json.loads(rows[1].body)["data"]["reason"] == "token revoked"


@pytest.mark.django_db
def test_only_the_wanted_events_of_active_endpoints_are_delivered(alice_org, receiver):
    wanted, _ = _endpoint(alice_org, receiver.url, [events.INSTANCE_STATUS])
    other, _ = _endpoint(alice_org, receiver.url, [events.BACKUP_FAILED])
    off, _ = _endpoint(alice_org, receiver.url, [events.INSTANCE_STATUS])
    WebhookEndpoint.objects.filter(pk=off.pk).update(is_active=False)
    bot = InstanceFactory(organization=alice_org)
    services.event_emit(
        organization=alice_org,
        event_type=events.INSTANCE_STATUS,
        data={"status": "stopped"},
        instance=bot,
    )
    assert list(WebhookDelivery.objects.values_list("endpoint_id", flat=True)) == [wanted.pk]


# --- the API and the dashboard ---------------------------------------------------------------


@pytest.mark.django_db
def test_the_secret_is_shown_once_and_stored_encrypted(api_for, alice_org):
    from django.db import connection

    api = api_for(alice_org)
    response = api.post(
        WEBHOOKS,
        {"url": "https://hooks.example.com/cf", "events": ["instance.status_changed"]},
        format="json",
    )
    assert response.status_code == 201, response.content
    secret = response.json()["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    shown = api.get(f"{WEBHOOKS}/{response.json()['id']}").json()
    assert "secret" not in shown
    assert secret not in json.dumps(api.get(WEBHOOKS).json())
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM notifications_webhookendpoint")
        (stored,) = cursor.fetchone()
    assert secret not in stored


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.0.0.5/hook",
        "http://192.168.1.20/hook",
        "http://169.254.169.254/latest",
        "http://[::1]/hook",
    ],
)
def test_a_loopback_or_private_url_is_a_field_error_in_production(
    api_for, alice_org, settings, url
):
    settings.WEBHOOK_ALLOW_LOOPBACK = False
    response = api_for(alice_org).post(
        WEBHOOKS, {"url": url, "events": ["backup.failed"]}, format="json"
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert list(error["fields"]) == ["url"]
    assert error["fields"]["url"][0].startswith("This URL points at")
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
def test_the_dashboard_form_shows_the_address_error_and_creates_nothing(alice_client, settings):
    settings.WEBHOOK_ALLOW_LOOPBACK = False
    response = alice_client.post(
        "/notifications/webhooks/",
        {"url": "http://10.1.2.3/hook", "events": ["backup.failed"]},
    )
    assert response.status_code == 200
    assert "This URL points at 10.1.2.3, a private network address" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
def test_the_dashboard_shows_the_secret_once_then_the_attempts_and_redelivers(
    alice_client, alice_org, receiver
):
    response = alice_client.post(
        "/notifications/webhooks/",
        {"url": receiver.url, "events": ["backup.failed"], "description": "on-call"},
    )
    assert response.status_code == 201
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret in response.content.decode()
    page = alice_client.get(f"/notifications/webhooks/{endpoint.pk}/").content.decode()
    assert endpoint.secret not in page
    receiver.script = [500]
    delivery = WebhookDelivery.objects.create(
        organization=alice_org,
        endpoint=endpoint,
        event_type="backup.failed",
        body="{}",
        next_attempt_at=timezone.now(),
    )
    services.delivery_attempt(delivery_id=delivery.pk)
    page = alice_client.get(f"/notifications/webhooks/{endpoint.pk}/").content.decode()
    assert str(delivery.pk) in page and "#1: 500" in page
    response = alice_client.post(
        f"/notifications/webhooks/{endpoint.pk}/deliveries/{delivery.pk}/redeliver/", follow=True
    )
    assert "same delivery id" in response.content.decode()
    delivery.refresh_from_db()
    assert delivery.state == "pending"


@pytest.mark.django_db
def test_another_organizations_endpoints_and_deliveries_are_a_404(
    api_for, alice_org, charlie_org, charlie, client, receiver
):
    endpoint, _ = _endpoint(alice_org, receiver.url, [events.BACKUP_FAILED])
    delivery = WebhookDelivery.objects.create(
        organization=alice_org, endpoint=endpoint, event_type="backup.failed", body="{}"
    )
    api = api_for(charlie_org)
    assert api.get(f"{WEBHOOKS}/{endpoint.pk}").status_code == 404
    assert (
        api.patch(f"{WEBHOOKS}/{endpoint.pk}", {"is_active": False}, format="json").status_code
        == 404
    )
    assert api.post(f"{DELIVERIES}/{delivery.pk}/redeliver").status_code == 404
    assert api.get(WEBHOOKS).json()["results"] == []
    assert api.get(DELIVERIES).json()["results"] == []
    client.force_login(charlie)
    assert client.get(f"/notifications/webhooks/{endpoint.pk}/").status_code == 404


@pytest.mark.django_db
def test_a_member_may_not_manage_webhooks(bob, client, api_for, alice_org):
    client.force_login(bob)
    assert client.get("/notifications/webhooks/").status_code == 403
    assert api_for(alice_org, ["read", "operate"]).get(WEBHOOKS).status_code == 403


@pytest.mark.django_db
def test_redelivering_to_a_disabled_endpoint_is_a_409(api_for, alice_org, receiver):
    endpoint, _ = _endpoint(alice_org, receiver.url, [events.BACKUP_FAILED])
    delivery = WebhookDelivery.objects.create(
        organization=alice_org, endpoint=endpoint, event_type="backup.failed", body="{}"
    )
    api = api_for(alice_org)
    assert (
        api.patch(f"{WEBHOOKS}/{endpoint.pk}", {"is_active": False}, format="json").json()[
            "is_active"
        ]
        is False
    )
    response = api.post(f"{DELIVERIES}/{delivery.pk}/redeliver")
    assert response.status_code == 409
    assert "disabled" in response.json()["error"]["message"]


@pytest.mark.django_db
def test_an_unknown_event_type_is_a_field_error(api_for, alice_org):
    response = api_for(alice_org).post(
        WEBHOOKS,
        {"url": "https://hooks.example.com/", "events": ["instance.exploded"]},
        format="json",
    )
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["events"]


@pytest.mark.django_db
def test_a_backup_missing_for_26_hours_is_an_event_and_an_email(
    alice, alice_org, receiver, django_capture_on_commit_callbacks
):
    from instances.models import Instance
    from sessions_mgmt.services import backups

    _endpoint(alice_org, receiver.url, [events.BACKUP_MISSING])
    from tests.factories import HostFactory

    bot = InstanceFactory(organization=alice_org, name="never-backed-up", host=HostFactory())
    Instance.objects.filter(pk=bot.pk).update(created_at=timezone.now() - timedelta(days=3))
    with django_capture_on_commit_callbacks(execute=True):
        assert backups.check_backup_freshness() == [bot]
    (delivery,) = WebhookDelivery.objects.filter(event_type="backup.missing")
    data = json.loads(delivery.body)["data"]
    assert data["instance"]["name"] == "never-backed-up" and data["hours"] == 26
    services.delivery_attempt(delivery_id=delivery.pk)  # what the worker's task does
    assert receiver.requests[0].headers["Clawfleet-Event"] == "backup.missing"
    assert any("No backup for 26 hours" in m.subject for m in mail.outbox)
