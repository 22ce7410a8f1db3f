"""Instance services and selectors on the database (no engine: operations are only queued)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from accounts.models import AuditEvent
from accounts.services import SYSTEM, Actor
from instances import placement, selectors, services
from instances.models import Host, Instance, Operation
from instances.operations import OperationInProgress

pytestmark = pytest.mark.django_db

DEPLOY = {
    "provider": "openai",
    "model_name": "gpt-4o-mini",
    "api_key": "sk-test-not-a-real-key",
}


@pytest.fixture
def alice_plan(alice, alice_org, entitled_org):
    return entitled_org(alice_org, max_instances=3, max_memory_mb=2048, max_cpus=Decimal("2"))


def deploy(org, name="bot", actor=SYSTEM, **kwargs):
    return services.instance_deploy(
        actor=actor, organization=org, name=name, **{**DEPLOY, **kwargs}
    )


def errors_of(excinfo) -> dict:
    return excinfo.value.message_dict


def assert_nothing_created():
    assert Instance.objects.count() == 0
    assert Operation.objects.count() == 0


def test_deploy_records_a_placed_instance_and_a_queued_operation(alice, alice_org, alice_plan):
    op = deploy(alice_org, actor=Actor(user=alice, via="dashboard"))

    instance = op.instance
    assert op.kind == Operation.Kind.DEPLOY and op.state == Operation.State.QUEUED
    assert instance.status == Instance.Status.PENDING
    assert instance.openclaw_version == "2026.9.6"
    assert instance.host.name == "local"
    assert 19100 <= instance.host_port <= 19999
    assert instance.memory_mb == 2048 and instance.cpus == Decimal("1")
    assert AuditEvent.objects.filter(
        action="instance.deployed", target_id=str(instance.pk)
    ).exists()


def test_secrets_are_encrypted_at_rest_and_never_in_the_audit_log(alice_org, alice_plan):
    op = deploy(alice_org)
    instance = Instance.objects.get(pk=op.instance_id)
    assert len(instance.gateway_token) >= 32
    with connection.cursor() as cur:
        cur.execute(
            "SELECT gateway_token, provider_api_key FROM instances_instance WHERE id = %s",
            [instance.pk],
        )
        raw_token, raw_key = cur.fetchone()
    assert instance.gateway_token not in raw_token
    assert "sk-test-not-a-real-key" not in raw_key
    audit_data = str(list(AuditEvent.objects.values_list("data", flat=True)))
    assert instance.gateway_token not in audit_data and "sk-test" not in audit_data


def test_an_unknown_version_is_refused_and_nothing_is_created(alice_org, alice_plan):
    with pytest.raises(ValidationError) as exc:
        deploy(alice_org, openclaw_version="1999.1.1")
    assert "Unknown version 1999.1.1" in errors_of(exc)["openclaw_version"][0]
    assert_nothing_created()


def test_a_taken_name_is_refused(alice_org, alice_plan):
    deploy(alice_org, name="bot")
    with pytest.raises(ValidationError) as exc:
        deploy(alice_org, name="bot")
    assert "taken" in errors_of(exc)["name"][0]
    assert exc.value.error_dict["name"][0].code == "taken"
    assert Instance.objects.count() == 1


def test_the_same_name_is_fine_in_another_organization(alice_org, alice_plan, charlie_org):
    from tests.fleet_fixtures import make_entitled

    make_entitled(charlie_org)
    deploy(alice_org, name="bot")
    deploy(charlie_org, name="bot")
    assert Instance.objects.filter(name="bot").count() == 2


@pytest.mark.parametrize("name", ["", "Bot", "-bot", "bot-", "b" * 41, "bot_1", "my bot"])
def test_a_name_must_be_a_short_lowercase_slug(alice_org, alice_plan, name):
    with pytest.raises(ValidationError) as exc:
        deploy(alice_org, name=name)
    assert "lowercase" in errors_of(exc)["name"][0]
    assert_nothing_created()


def test_memory_above_the_plan_is_refused(alice_org, alice_plan):
    with pytest.raises(ValidationError) as exc:
        deploy(alice_org, memory_mb=4096)
    assert "up to 2048 MB" in errors_of(exc)["memory_mb"][0]
    assert_nothing_created()


def test_memory_below_what_openclaw_needs_is_refused(alice_org, alice_plan):
    with pytest.raises(ValidationError) as exc:
        deploy(alice_org, memory_mb=512)
    assert "at least 1024 MB" in errors_of(exc)["memory_mb"][0]
    assert_nothing_created()


def test_cpus_above_the_plan_are_refused(alice_org, alice_plan):
    with pytest.raises(ValidationError) as exc:
        deploy(alice_org, cpus="4")
    assert "cpus" in errors_of(exc)
    assert_nothing_created()


def test_a_missing_api_key_is_refused_for_a_hosted_provider(alice_org, alice_plan):
    with pytest.raises(ValidationError) as exc:
        deploy(alice_org, api_key="")
    assert "API key" in errors_of(exc)["api_key"][0]
    assert_nothing_created()


def test_a_custom_provider_needs_a_base_url_and_a_model_but_no_key(alice_org, alice_plan):
    with pytest.raises(ValidationError) as exc:
        deploy(alice_org, provider="custom", api_key="", model_name="", model_base_url="")
    errors = errors_of(exc)
    assert "base URL" in errors["model_base_url"][0]
    assert "model" in errors["model_name"][0]
    assert "api_key" not in errors
    assert_nothing_created()

    op = deploy(
        alice_org,
        provider="custom",
        api_key="",
        model_name="mock-model",
        model_base_url="http://llm.example.test/v1",
    )
    assert op.instance.provider_api_key == ""


def test_every_error_is_reported_at_once(alice_org, alice_plan):
    with pytest.raises(ValidationError) as exc:
        deploy(alice_org, name="Bad Name", openclaw_version="0", memory_mb=99999, api_key="")
    assert {"name", "openclaw_version", "memory_mb", "api_key"} <= set(errors_of(exc))
    assert_nothing_created()


def test_an_organization_without_a_plan_cannot_deploy(alice_org):
    with pytest.raises(ValidationError) as exc:
        deploy(alice_org)
    assert "plan" in errors_of(exc)
    assert_nothing_created()


def test_the_plan_limits_the_number_of_instances(alice_org, entitled_org):
    entitled_org(alice_org, max_instances=1)
    deploy(alice_org, name="one")
    with pytest.raises(ValidationError) as exc:
        deploy(alice_org, name="two")
    assert "instances" in errors_of(exc)


def test_a_taken_external_id_is_refused(alice_org, alice_plan):
    deploy(alice_org, name="one", external_id="crm-1")
    with pytest.raises(ValidationError) as exc:
        deploy(alice_org, name="two", external_id="crm-1")
    assert "taken" in errors_of(exc)["external_id"][0]


# --- operations ---------------------------------------------------------------------------------


def running_instance(org, name="bot") -> Instance:
    op = deploy(org, name=name)
    Operation.objects.filter(pk=op.pk).update(state=Operation.State.SUCCEEDED)
    Instance.objects.filter(pk=op.instance_id).update(status=Instance.Status.RUNNING)
    return Instance.objects.get(pk=op.instance_id)


def test_a_second_restart_while_one_is_queued_gets_an_operation_in_progress(alice_org, alice_plan):
    instance = running_instance(alice_org)
    first = services.instance_restart(actor=SYSTEM, instance=instance)
    with pytest.raises(OperationInProgress, match="An operation is in progress"):
        services.instance_restart(actor=SYSTEM, instance=instance)
    assert list(instance.operations.filter(state__in=Operation.ACTIVE_STATES)) == [first]


def test_the_database_refuses_two_active_operations_even_past_the_service_checks(
    alice_org, alice_plan
):
    from instances.operations import operation_request

    instance = running_instance(alice_org)
    operation_request(actor=SYSTEM, instance=instance, kind="restart", enqueue=False)
    with pytest.raises(OperationInProgress) as exc:
        operation_request(actor=SYSTEM, instance=instance, kind="stop", enqueue=False)
    assert exc.value.active.kind == "restart"


def test_a_stopped_instance_cannot_be_stopped_again(alice_org, alice_plan):
    instance = running_instance(alice_org)
    Instance.objects.filter(pk=instance.pk).update(status=Instance.Status.STOPPED)
    with pytest.raises(ValidationError) as exc:
        services.instance_stop(actor=SYSTEM, instance=instance)
    assert exc.value.code == "invalid_state"
    assert "stopped" in exc.value.messages[0]


def test_lifecycle_requests_set_the_desired_state_and_audit(alice, alice_org, alice_plan):
    instance = running_instance(alice_org)
    actor = Actor(user=alice, via="api")
    op = services.instance_stop(actor=actor, instance=instance)
    instance.refresh_from_db()
    assert instance.desired_state == Instance.DesiredState.STOPPED
    assert op.requested_by == alice and op.requested_via == "api"
    assert AuditEvent.objects.filter(action="instance.stopped", actor=alice).count() == 1


def test_upgrade_validates_the_version(alice_org, alice_plan):
    instance = running_instance(alice_org)
    with pytest.raises(ValidationError) as exc:
        services.instance_upgrade(actor=SYSTEM, instance=instance, version="9.9.9")
    assert "Unknown version" in errors_of(exc)["version"][0]
    with pytest.raises(ValidationError):
        services.instance_upgrade(actor=SYSTEM, instance=instance, version="2026.9.6")
    op = services.instance_upgrade(actor=SYSTEM, instance=instance, version="2026.9.5")
    assert op.params == {"from_version": "2026.9.6", "to_version": "2026.9.5"}


def test_purge_is_only_for_deleted_instances(alice_org, alice_plan):
    instance = running_instance(alice_org)
    with pytest.raises(ValidationError):
        services.instance_purge(actor=SYSTEM, instance=instance)
    op = services.instance_delete(actor=SYSTEM, instance=instance)
    assert op.kind == "delete"


def test_purge_expired_requests_a_purge_only_after_the_grace_period(alice_org, alice_plan):
    due, fresh = running_instance(alice_org, "due"), running_instance(alice_org, "fresh")
    now = timezone.now()
    Instance.objects.filter(pk=due.pk).update(status="deleted", purge_after=now - timedelta(1))
    Instance.objects.filter(pk=fresh.pk).update(status="deleted", purge_after=now + timedelta(1))
    ops = services.purge_expired(actor=SYSTEM)
    assert [op.instance_id for op in ops] == [due.pk]
    assert ops[0].kind == "purge"


def test_pause_and_resume(alice_org, alice_plan):
    instance = running_instance(alice_org)
    op = services.instance_pause(actor=SYSTEM, instance=instance, reason="Payment failed")
    assert op.kind == "pause" and op.params == {"reason": "Payment failed"}
    Operation.objects.filter(pk=op.pk).update(state="succeeded")
    with pytest.raises(ValidationError):
        services.instance_resume(actor=SYSTEM, instance=instance)
    Instance.objects.filter(pk=instance.pk).update(status="paused")
    op = services.instance_resume(actor=SYSTEM, instance=instance)
    assert op.kind == "start" and op.params == {"resume": True}


# --- update -------------------------------------------------------------------------------------


def test_update_renames_and_changes_retention_without_an_operation(alice_org, alice_plan):
    instance = running_instance(alice_org)
    services.instance_update(
        actor=SYSTEM, instance=instance, name="renamed", session_idle_days=10, client_name="ACME"
    )
    assert instance.queued_operation is None
    instance.refresh_from_db()
    assert (instance.name, instance.session_idle_days, instance.client_name) == (
        "renamed",
        10,
        "ACME",
    )


def test_update_refuses_a_taken_name_and_unknown_fields(alice_org, alice_plan):
    instance = running_instance(alice_org, "one")
    running_instance(alice_org, "two")
    with pytest.raises(ValidationError) as exc:
        services.instance_update(actor=SYSTEM, instance=instance, name="two")
    assert "taken" in errors_of(exc)["name"][0]
    with pytest.raises(ValidationError):
        services.instance_update(actor=SYSTEM, instance=instance, gateway_token="x")


def test_a_memory_change_on_a_running_instance_queues_a_recreating_restart(alice_org, entitled_org):
    entitled_org(alice_org, max_memory_mb=4096)
    instance = running_instance(alice_org)
    services.instance_update(actor=SYSTEM, instance=instance, memory_mb=3072)
    op = instance.queued_operation
    assert op.kind == "restart" and op.params["recreate"] is True
    instance.refresh_from_db()
    assert instance.memory_mb == 3072


def test_a_memory_change_above_the_plan_is_refused(alice_org, alice_plan):
    instance = running_instance(alice_org)
    with pytest.raises(ValidationError) as exc:
        services.instance_update(actor=SYSTEM, instance=instance, memory_mb=8192)
    assert "memory_mb" in errors_of(exc)


# --- placement ----------------------------------------------------------------------------------


def test_a_default_local_host_is_created_on_first_use(alice_org, alice_plan, settings):
    assert not Host.objects.exists()
    deploy(alice_org)
    host = Host.objects.get()
    assert (host.name, host.base_url) == ("local", settings.FLEET_DOCKER_URL)


def test_placement_refuses_when_no_host_has_room(alice_org, alice_plan):
    host = placement.ensure_local_host()
    Host.objects.filter(pk=host.pk).update(memory_mb=3000)
    deploy(alice_org, name="one")
    with pytest.raises(ValidationError) as exc:
        deploy(alice_org, name="two")
    assert "No host has room" in errors_of(exc)["memory_mb"][0]
    assert Instance.objects.count() == 1


def test_placement_honours_the_host_instance_count(alice_org, alice_plan):
    host = placement.ensure_local_host()
    Host.objects.filter(pk=host.pk).update(max_instances=1)
    deploy(alice_org, name="one")
    with pytest.raises(ValidationError):
        deploy(alice_org, name="two")


def test_ports_are_unique_per_host_and_a_race_retries_the_next_port(
    alice_org, alice_plan, monkeypatch
):
    first = deploy(alice_org, name="one").instance
    # Simulate a concurrent placement that listed ports before `one` was saved: the first
    # candidate is already taken, the database refuses it, placement moves on.
    real = placement.free_ports

    def stale(host):
        yield first.host_port
        yield from real(host)

    monkeypatch.setattr(placement, "free_ports", stale)
    second = deploy(alice_org, name="two").instance
    assert second.host_port != first.host_port
    assert second.host_id == first.host_id


def test_a_deleted_instance_keeps_its_port_and_a_purged_one_frees_its_name(alice_org, alice_plan):
    instance = running_instance(alice_org)
    Instance.objects.filter(pk=instance.pk).update(status="deleted")
    with pytest.raises(ValidationError):
        deploy(alice_org, name="bot")
    Instance.objects.filter(pk=instance.pk).update(status="purged", host_port=None)
    op = deploy(alice_org, name="bot")
    assert op.instance.pk != instance.pk


# --- selectors and tenancy ----------------------------------------------------------------------


def test_charlie_never_sees_alices_instances_operations_or_events(
    alice, alice_org, alice_plan, charlie, charlie_org
):
    from instances.handlers import event

    instance = running_instance(alice_org)
    event(instance, "restarted", "test")
    assert list(selectors.instances_for(organization=alice_org)) == [instance]
    assert not selectors.instances_for(organization=charlie_org).exists()
    assert not selectors.operations_for(organization=charlie_org).exists()
    assert not selectors.operations_for(organization=charlie_org, instance=instance).exists()
    assert not selectors.events_for(organization=charlie_org).exists()
    assert not selectors.events_for(organization=charlie_org, instance=instance).exists()
    with pytest.raises(Instance.DoesNotExist):
        selectors.instance_for(organization=charlie_org, pk=instance.pk)
    assert selectors.events_for(organization=alice_org, instance=instance).count() == 1


def test_purged_instances_are_hidden_by_default(alice_org, alice_plan):
    instance = running_instance(alice_org)
    Instance.objects.filter(pk=instance.pk).update(status="purged", host_port=None)
    assert not selectors.instances_for(organization=alice_org).exists()
    assert selectors.instances_for(organization=alice_org, include_purged=True).count() == 1


@pytest.mark.parametrize("action", ["start", "restart", "resume", "upgrade"])
def test_an_instance_of_an_organization_without_a_plan_does_not_start_again(
    alice_org, alice_plan, action
):
    """A canceled subscription keeps its instances stopped: start, restart, resume and upgrade
    are refused with a message naming the plan, and nothing is queued."""
    from billing.models import Subscription
    from tests.factories import InstanceFactory

    status = {"start": "stopped", "restart": "running", "resume": "paused", "upgrade": "stopped"}
    instance = InstanceFactory(organization=alice_org, status=status[action])
    Subscription.objects.filter(organization=alice_org).update(status="canceled")
    call = {
        "start": lambda: services.instance_start(actor=SYSTEM, instance=instance),
        "restart": lambda: services.instance_restart(actor=SYSTEM, instance=instance),
        "resume": lambda: services.instance_resume(actor=SYSTEM, instance=instance),
        "upgrade": lambda: services.instance_upgrade(
            actor=SYSTEM, instance=instance, version="2026.9.5"
        ),
    }[action]
    with pytest.raises(ValidationError) as excinfo:
        call()
    assert "no active plan" in errors_of(excinfo)["plan"][0]
    assert not Operation.objects.exists()
