"""Quotas against abuse (issue 12, item 7): manual backups and restores are rate-limited per
instance, backups count against the plan's storage allowance (shown on the backups page), a
restore needs a plan, and a state past the plan's disk allowance is reported once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from accounts.services import Actor, RateLimited
from billing.models import Subscription
from instances.models import InstanceEvent, Operation
from sessions_mgmt.models import Backup
from sessions_mgmt.services import quotas
from sessions_mgmt.services.backups import backup_request
from sessions_mgmt.services.restore import restore_request
from tests.factories import BackupFactory, OperationFactory

from .conftest import make_instance

MB = 1024 * 1024


@pytest.fixture
def inst(alice_org, alice, host):
    return make_instance(alice_org, host)


def actor(user):
    return Actor(user=user, via="dashboard")


def test_the_seventh_manual_backup_in_an_hour_is_refused_with_when_to_try_again(inst, alice):
    for _ in range(6):
        OperationFactory(instance=inst, kind="backup", params={"kind": "manual"})
    with pytest.raises(RateLimited, match=r"Too many manual backups of assistant .*\(6\)") as exc:
        backup_request(actor=actor(alice), instance=inst)
    assert 0 < exc.value.retry_after <= 3600
    assert Operation.objects.filter(instance=inst, kind="backup").count() == 6


def test_scheduled_and_old_backups_do_not_count_against_the_manual_limit(inst, alice):
    for _ in range(6):
        OperationFactory(instance=inst, kind="backup", params={"kind": "nightly"})
    for _ in range(6):
        op = OperationFactory(instance=inst, kind="backup", params={"kind": "manual"})
        Operation.objects.filter(pk=op.pk).update(created_at=timezone.now() - timedelta(hours=2))
    assert backup_request(actor=actor(alice), instance=inst).kind == "backup"


def test_the_fourth_restore_in_an_hour_is_refused(inst, alice):
    backup = BackupFactory(instance=inst)
    for _ in range(3):
        OperationFactory(instance=inst, kind="restore")
    with pytest.raises(RateLimited, match="Too many restores"):
        restore_request(actor=actor(alice), instance=inst, backup=backup)
    assert Operation.objects.filter(instance=inst, kind="restore").count() == 3


def test_a_restore_needs_a_plan(inst, alice, alice_org):
    backup = BackupFactory(instance=inst)
    Subscription.objects.filter(organization=alice_org).update(status=Subscription.Status.CANCELED)
    with pytest.raises(ValidationError) as exc:
        restore_request(actor=actor(alice), instance=inst, backup=backup)
    assert "no active plan" in str(exc.value)
    assert not Operation.objects.filter(kind="restore").exists()


def test_a_full_storage_allowance_refuses_manual_backups_and_restores_not_scheduled_ones(
    inst, alice, alice_org
):
    plan = Subscription.objects.get(organization=alice_org).plan
    plan.backup_storage_mb = 10
    plan.save()
    backup = BackupFactory(instance=inst, size_bytes=6 * MB)
    # A kept pre-restore volume counts as the state it holds.
    BackupFactory(
        instance=inst, kind="pre_restore", size_bytes=1 * MB, manifest={"archive_size": 4 * MB}
    )
    assert quotas.storage_used_bytes(inst) == 11 * MB
    assert quotas.storage(inst)["full"] is True
    with pytest.raises(ValidationError, match="use 11 MB of the plan's 10 MB"):
        backup_request(actor=actor(alice), instance=inst)
    with pytest.raises(ValidationError, match="Cannot restore"):
        restore_request(actor=actor(alice), instance=inst, backup=backup)
    assert backup_request(actor=actor(alice), instance=inst, kind="nightly").kind == "backup"


def test_the_backups_page_shows_the_allowance_as_a_bar(client, inst, alice, alice_org):
    plan = Subscription.objects.get(organization=alice_org).plan
    plan.backup_storage_mb = 100
    plan.save()
    BackupFactory(instance=inst, size_bytes=25 * MB, manifest={"archive_size": 30 * MB})
    client.force_login(alice)
    response = client.get(reverse("sessions_mgmt:backups", args=[inst.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Backup storage" in page and "25.0\xa0MB of 100.0\xa0MB" in page
    assert 'aria-valuenow="25"' in page
    assert "State volume: 30.0\xa0MB" in page


def test_a_state_past_the_disk_allowance_is_reported_once_and_cleared(inst, alice_org):
    plan = Subscription.objects.get(organization=alice_org).plan
    plan.disk_mb = 5
    plan.save()
    big = BackupFactory(instance=inst, kind="nightly", manifest={"archive_size": 8 * MB})
    assert quotas.report_disk_usage(instance=inst, backup=big) is True
    assert quotas.report_disk_usage(instance=inst, backup=big) is True
    events = InstanceEvent.objects.filter(instance=inst, kind="disk_over")
    assert events.count() == 1 and "8 MB, over the plan's 5 MB" in events[0].message
    assert len(mail.outbox) == 1 and "disk allowance" in mail.outbox[0].subject
    assert mail.outbox[0].to == ["alice@example.com"]
    small = BackupFactory(instance=inst, kind="nightly", manifest={"archive_size": 1 * MB})
    assert quotas.report_disk_usage(instance=inst, backup=small) is False
    assert InstanceEvent.objects.filter(instance=inst, kind="disk_ok").count() == 1
    assert len(mail.outbox) == 1
    assert quotas.storage(inst)["disk_over"] is False
    assert Backup.objects.filter(instance=inst).count() == 2
