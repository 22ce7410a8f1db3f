"""Admin actions on instances go through the admin's own URLs and call the same services as the
dashboard and the API: an Operation of the right kind is queued, an audit row is written, and a
second action while one is active is an error message that creates nothing."""

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from accounts.models import AuditEvent
from instances.models import Instance, Operation
from sessions_mgmt.models import Backup

from .conftest import make_backup, make_instance

CHANGELIST = reverse("admin:instances_instance_changelist")


def run_action(client, action, instances, **extra):
    data = {"action": action, "_selected_action": [str(i.pk) for i in instances], "index": 0}
    data.update(extra)
    return client.post(CHANGELIST, data, follow=True)


def texts(response):
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.mark.parametrize(
    ("action", "status", "kind", "audit_action"),
    [
        ("restart_instances", Instance.Status.RUNNING, "restart", "instance.restarted"),
        ("stop_instances", Instance.Status.RUNNING, "stop", "instance.stopped"),
        ("start_instances", Instance.Status.STOPPED, "start", "instance.started"),
        ("backup_instances", Instance.Status.RUNNING, "backup", "backup.requested"),
        ("prune_instances", Instance.Status.RUNNING, "prune", "sessions.prune_requested"),
    ],
)
def test_a_changelist_action_queues_the_operation_and_audits_it(
    admin_client_, superuser, org, host, action, status, kind, audit_action
):
    instance = make_instance(org, host, status=status)

    response = run_action(admin_client_, action, [instance])

    assert response.status_code == 200
    op = Operation.objects.get(instance=instance)
    assert (op.kind, op.state) == (kind, Operation.State.QUEUED)
    assert op.requested_by == superuser
    assert op.requested_via == "admin"
    event = AuditEvent.objects.get(action=audit_action, target_id=str(instance.pk))
    assert event.actor == superuser
    assert event.organization == org
    assert event.data["via"] == "admin"
    assert any("queued" in t for t in texts(response))


def test_a_manual_backup_from_admin_is_of_kind_manual(admin_client_, instance):
    run_action(admin_client_, "backup_instances", [instance])

    op = Operation.objects.get(instance=instance)
    assert op.params == {"kind": Backup.Kind.MANUAL}


def test_a_second_action_while_one_is_active_is_an_error_and_creates_nothing(
    admin_client_, instance
):
    run_action(admin_client_, "restart_instances", [instance])
    audits = AuditEvent.objects.count()

    response = run_action(admin_client_, "stop_instances", [instance])

    assert response.status_code == 200
    assert Operation.objects.filter(instance=instance).count() == 1
    assert AuditEvent.objects.count() == audits
    assert any("in progress" in t for t in texts(response))


def test_an_action_the_state_does_not_allow_is_an_error_message_not_a_500(admin_client_, instance):
    response = run_action(admin_client_, "start_instances", [instance])  # already running

    assert response.status_code == 200
    assert not Operation.objects.filter(instance=instance).exists()
    assert any("Cannot start" in t for t in texts(response))


def test_an_action_on_several_instances_queues_one_operation_each(admin_client_, org, host):
    instances = [make_instance(org, host) for _ in range(3)]

    run_action(admin_client_, "restart_instances", instances)

    assert Operation.objects.filter(kind="restart").count() == 3


def test_upgrade_asks_for_the_version_on_an_intermediate_page_then_queues_it(
    admin_client_, instance, settings
):
    page = run_action(admin_client_, "upgrade_instances", [instance])

    assert page.status_code == 200
    assert b"Upgrade OpenClaw" in page.content
    for version in settings.FLEET_OPENCLAW_VERSIONS:
        assert version.encode() in page.content
    assert not Operation.objects.exists()

    run_action(admin_client_, "upgrade_instances", [instance], apply="1", version="2026.9.6")

    op = Operation.objects.get(instance=instance)
    assert op.kind == "upgrade"
    assert op.params == {"from_version": "2026.9.5", "to_version": "2026.9.6"}
    assert AuditEvent.objects.filter(action="instance.upgrade_requested").exists()


def test_upgrade_to_an_unknown_version_is_refused_by_the_form(admin_client_, instance):
    page = run_action(admin_client_, "upgrade_instances", [instance], apply="1", version="1.0")

    assert b"Select a valid choice" in page.content
    assert not Operation.objects.exists()


def test_upgrade_to_the_running_version_is_an_error_message(admin_client_, instance):
    response = run_action(
        admin_client_, "upgrade_instances", [instance], apply="1", version="2026.9.5"
    )

    assert any("already runs" in t for t in texts(response))
    assert not Operation.objects.exists()


def test_restore_offers_only_this_instances_succeeded_backups_with_a_warning(
    admin_client_, org, host, instance
):
    good = make_backup(instance)
    failed = make_backup(instance, state=Backup.State.FAILED)
    other = make_backup(make_instance(org, host))

    page = run_action(admin_client_, "restore_instance", [instance])

    assert page.status_code == 200
    html = page.content.decode()
    assert "Restoring replaces everything" in html
    assert str(good.pk) in html
    assert str(failed.pk) not in html
    assert str(other.pk) not in html
    assert not Operation.objects.exists()


def test_restore_needs_the_confirmation_then_queues_a_restore_operation(admin_client_, instance):
    backup = make_backup(instance)

    page = run_action(
        admin_client_, "restore_instance", [instance], apply="1", backup=str(backup.pk)
    )
    assert b"This field is required" in page.content
    assert not Operation.objects.exists()

    run_action(
        admin_client_,
        "restore_instance",
        [instance],
        apply="1",
        backup=str(backup.pk),
        confirm="on",
    )

    op = Operation.objects.get(instance=instance)
    assert op.kind == "restore"
    assert op.params == {"backup_id": str(backup.pk)}
    assert AuditEvent.objects.filter(
        action="backup.restore_requested", target_id=str(instance.pk)
    ).exists()


def test_restore_of_several_instances_at_once_is_refused(admin_client_, org, host):
    instances = [make_instance(org, host), make_instance(org, host)]

    response = run_action(admin_client_, "restore_instance", instances)

    assert any("exactly one" in t for t in texts(response))
    assert not Operation.objects.exists()


def test_the_change_page_buttons_call_the_same_services(admin_client_, instance):
    url = reverse("admin:instances_instance_run", args=[instance.pk, "restart"])

    assert admin_client_.get(url).status_code == 405
    response = admin_client_.post(url)

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:instances_instance_change", args=[instance.pk])
    assert Operation.objects.get(instance=instance).kind == "restart"

    again = admin_client_.post(url, follow=True)
    assert any("in progress" in t for t in texts(again))
    assert Operation.objects.filter(instance=instance).count() == 1


def test_the_change_page_upgrade_and_restore_pages(admin_client_, instance):
    backup = make_backup(instance)
    upgrade = reverse("admin:instances_instance_upgrade", args=[instance.pk])
    restore = reverse("admin:instances_instance_restore", args=[instance.pk])

    assert admin_client_.get(upgrade).status_code == 200
    admin_client_.post(upgrade, {"version": "2026.9.6"})
    assert Operation.objects.get(instance=instance).kind == "upgrade"
    Operation.objects.update(state=Operation.State.SUCCEEDED)

    page = admin_client_.get(restore + f"?backup={backup.pk}")
    assert page.status_code == 200
    assert b"checked" in page.content
    admin_client_.post(restore, {"backup": str(backup.pk), "confirm": "on"})
    assert Operation.objects.filter(instance=instance, kind="restore").exists()


def test_sync_now_of_a_stopped_instance_says_it_was_not_synced(admin_client_, org, host):
    instance = make_instance(org, host, status=Instance.Status.STOPPED)

    response = run_action(admin_client_, "sync_instances", [instance])

    assert response.status_code == 200
    assert any("not synced" in t for t in texts(response))


def test_the_change_page_shows_related_rows_and_never_a_secret(admin_client_, instance):
    from .conftest import make_operation, make_session

    make_session(instance, session_key="agent:main:telegram:direct:42")
    make_operation(instance, steps=[{"name": "Pull the image", "state": "done"}])
    make_backup(instance)

    page = admin_client_.get(reverse("admin:instances_instance_change", args=[instance.pk]))

    assert page.status_code == 200
    html = page.content.decode()
    assert "agent:main:telegram:direct:42" in html
    assert "Pull the image" in html
    assert "Restart" in html and "Upgrade…" in html
    assert f"?instance__id__exact={instance.pk}" in html
    for secret in (instance.gateway_token, instance.provider_api_key, instance.channel_token):
        assert secret not in html
    assert "gateway_token" not in html


def test_the_instance_change_page_saves_nothing(admin_client_, instance):
    url = reverse("admin:instances_instance_change", args=[instance.pk])

    response = admin_client_.post(url, {"name": "renamed", "status": "stopped"})

    assert response.status_code == 403
    instance.refresh_from_db()
    assert (instance.name, instance.status) != ("renamed", "stopped")


def test_support_staff_see_instances_but_cannot_run_actions(support_client, instance):
    page = support_client.get(CHANGELIST)
    assert page.status_code == 200
    assert b"restart_instances" not in page.content

    response = run_action(support_client, "restart_instances", [instance])
    assert response.status_code == 200
    run = reverse("admin:instances_instance_run", args=[instance.pk, "restart"])
    assert support_client.post(run).status_code == 403
    upgrade = reverse("admin:instances_instance_upgrade", args=[instance.pk])
    assert support_client.get(upgrade).status_code == 403
    assert not Operation.objects.exists()
