"""Plans stay enforced (issue 12, item 3): a comped-then-ended plan pauses its instances after
the notice, a backup first, never a deletion; nothing starts again without a plan (the API says
why); a downgrade marks the excess, newest first, and pauses it after the notice; coming back
lifts what is announced."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.services import SYSTEM
from billing import tasks as billing_tasks
from billing.models import BillingPause, Subscription
from billing.services import enforcement, subscriptions
from fleet import hooks
from instances import operations, services
from instances.models import Instance, Operation

pytestmark = pytest.mark.django_db

DEPLOY = {
    "provider": "custom",
    "model_name": "mock-model",
    "api_key": "",
    "model_base_url": "http://llm.example.test/v1",
}


class FakeBackup:
    pk = "fake-backup"


@pytest.fixture
def backups():
    return []


@pytest.fixture
def rt(fake_runtime, backups):
    def take_backup(*, instance, kind, operation=None, **_):
        backups.append(
            (instance.name, kind, fake_runtime.containers[instance.container_name].running)
        )
        return FakeBackup()

    with (
        hooks.only("backup.create", take_backup),
        hooks.only("instance.ready"),
        hooks.only("operation.finished"),
    ):
        yield fake_runtime


def deployed(org, name) -> Instance:
    op = services.instance_deploy(actor=SYSTEM, organization=org, name=name, **DEPLOY)
    op = operations.run_operation(op.pk)
    assert op.state == "succeeded", op.error_detail
    return Instance.objects.get(pk=op.instance_id)


def run_queued() -> None:
    for op in Operation.objects.filter(state=Operation.State.QUEUED).order_by("created_at"):
        operations.run_operation(op.pk)


def test_an_ended_comp_pauses_every_instance_after_the_notice_with_a_backup_each(
    alice_org, alice, entitled_org, rt, backups, make_token, django_capture_on_commit_callbacks
):
    alice_org.billing_email = "billing@alice.example"
    alice_org.save()
    plan = entitled_org(alice_org)
    first, second = deployed(alice_org, "first"), deployed(alice_org, "second")
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        sub = subscriptions.subscription_comp_end(actor=SYSTEM, organization=alice_org)
    assert sub.status == Subscription.Status.CANCELED and sub.ended_at is not None
    pauses = BillingPause.objects.filter(organization=alice_org, reason="ended")
    assert sorted(p.instance.name for p in pauses) == ["first", "second"]
    due = pauses[0].due_at
    assert due - sub.ended_at == timedelta(days=3)
    assert len(mail.outbox) == 1 and "plan has ended" in mail.outbox[0].subject
    assert "first, second" in mail.outbox[0].body

    # Nothing starts again without a plan: the API says why.
    _token, secret = make_token(alice_org)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    response = api.post(f"/api/v1/instances/{first.pk}/restart")
    assert response.status_code == 400
    assert "no active plan" in response.json()["error"]["message"] + str(
        response.json()["error"].get("fields")
    )

    # Before the notice is over they keep running.
    assert enforcement.enforce_announced_pauses(now=due - timedelta(minutes=1)) == 0
    assert not Operation.objects.filter(kind=Operation.Kind.PAUSE).exists()

    # After it: each is backed up (while still running), then stopped; nothing is deleted.
    assert enforcement.enforce_announced_pauses(now=due + timedelta(minutes=1)) == 2
    run_queued()
    for instance in (first, second):
        instance.refresh_from_db()
        assert instance.status == Instance.Status.PAUSED
        assert instance.volume_name in rt.volumes
    assert sorted(b[0] for b in backups if b[1] != "pre_delete") == ["first", "second"]
    assert all(running for _name, _kind, running in backups)
    # The beat task runs every 15 minutes: nothing is paused twice.
    assert billing_tasks.enforce_grace_periods.run() == 0

    # A plan again: what billing paused resumes.
    subscriptions.subscription_comp(actor=SYSTEM, organization=alice_org, plan=plan)
    run_queued()
    first.refresh_from_db()
    assert first.status == Instance.Status.RUNNING
    assert not BillingPause.objects.filter(reason="ended", resumed_at__isnull=True).exists()


def test_a_plan_again_before_the_notice_is_over_withdraws_the_pause(alice_org, entitled_org, rt):
    plan = entitled_org(alice_org)
    bot = deployed(alice_org, "bot")
    subscriptions.subscription_comp_end(actor=SYSTEM, organization=alice_org)
    assert BillingPause.objects.filter(instance_id=bot.pk, reason="ended").exists()
    subscriptions.subscription_comp(actor=SYSTEM, organization=alice_org, plan=plan)
    assert not BillingPause.objects.filter(instance_id=bot.pk).exists()
    assert enforcement.enforce_announced_pauses(now=timezone.now() + timedelta(days=4)) == 0


def test_a_downgrade_marks_the_newest_excess_and_pauses_it_after_the_notice(
    alice_org, entitled_org, rt
):
    from tests.fleet_fixtures import make_entitled

    entitled_org(alice_org, max_instances=3)
    oldest, middle, newest = (deployed(alice_org, n) for n in ("oldest", "middle", "newest"))
    small = make_entitled(alice_org, max_instances=1)  # a comp on a smaller plan
    sub = Subscription.objects.get(organization=alice_org)
    enforcement.subscription_changed(sub, was_entitled=True, old_plan_id=None)
    marked = BillingPause.objects.filter(organization=alice_org, reason="over_plan")
    assert sorted(p.instance.name for p in marked) == ["middle", "newest"]
    due = marked[0].due_at
    assert enforcement.enforce_announced_pauses(now=due + timedelta(minutes=1)) == 2
    run_queued()
    statuses = {i.name: i.status for i in Instance.objects.filter(organization=alice_org)}
    assert statuses == {"oldest": "running", "middle": "paused", "newest": "paused"}

    # A bigger plan again: the excess is lifted and resumed.
    bigger = make_entitled(alice_org, max_instances=5)
    sub.refresh_from_db()
    assert sub.plan == bigger
    enforcement.subscription_changed(sub, was_entitled=True, old_plan_id=small.pk)
    run_queued()
    statuses = {i.name: i.status for i in Instance.objects.filter(organization=alice_org)}
    assert set(statuses.values()) == {"running"}
    assert not BillingPause.objects.filter(reason="over_plan", resumed_at__isnull=True).exists()
    assert oldest.status == "running"
