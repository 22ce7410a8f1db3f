from decimal import Decimal

import pytest

from instances.models import Instance
from sessions_mgmt import services
from sessions_mgmt.models import Session


def test_first_sync_creates_one_row_per_session_with_tokens_and_both_costs(
    alice_instance, fake_openclaw, price
):
    oc = fake_openclaw(alice_instance)
    oc.add("agent:main:a", input=1230, output=20, cost="0.004")
    oc.add("agent:main:b", input=10, output=5)
    result = services.sync_instance_sessions(instance=alice_instance)
    assert (result.created, result.updated, result.unchanged, result.pruned) == (2, 0, 0, 0)
    a = Session.objects.get(instance=alice_instance, session_key="agent:main:a")
    assert (a.input_tokens, a.output_tokens, a.message_count) == (1230, 20, 2)
    # Ours: 1230 * 3 / 1e6 + 20 * 15 / 1e6
    assert a.cost_usd == Decimal("0.003990")
    assert a.openclaw_cost_usd == Decimal("0.004000")
    assert a.organization_id == alice_instance.organization_id
    assert a.model == "mock-model" and a.provider == "custom"
    alice_instance.refresh_from_db()
    assert alice_instance.sessions_cursor == max(s["updated_ms"] for s in oc.sessions.values())
    assert alice_instance.sessions_synced_at is not None


def test_sync_twice_changes_nothing_and_asks_for_no_usage(alice_instance, fake_openclaw, price):
    oc = fake_openclaw(alice_instance)
    for i in range(5):
        oc.add(f"agent:main:s{i}")
    services.sync_instance_sessions(instance=alice_instance)
    before = list(Session.objects.order_by("pk").values())
    oc.usage_calls.clear()
    result = services.sync_instance_sessions(instance=alice_instance)
    assert (result.created, result.updated, result.pruned) == (0, 0, 0)
    assert result.unchanged == 5
    assert oc.usage_calls == []
    after = list(Session.objects.order_by("pk").values())
    assert [(r["pk"] if "pk" in r else r["id"], r["input_tokens"]) for r in before] == [
        (r["id"], r["input_tokens"]) for r in after
    ]


def test_incremental_sync_updates_only_the_changed_session(alice_instance, fake_openclaw, price):
    oc = fake_openclaw(alice_instance)
    oc.add("agent:main:old", age_days=3)
    oc.add("agent:main:busy")
    services.sync_instance_sessions(instance=alice_instance)
    oc.touch("agent:main:busy", input=500, output=50)
    result = services.sync_instance_sessions(instance=alice_instance)
    assert result.updated == 1 and result.created == 0
    assert oc.usage_calls[-1] == ["agent:main:busy"]
    busy = Session.objects.get(session_key="agent:main:busy")
    assert busy.input_tokens == 500
    assert Session.objects.count() == 2


def test_sessions_missing_from_openclaw_are_marked_pruned_and_come_back_live(
    alice_instance, fake_openclaw, price
):
    oc = fake_openclaw(alice_instance)
    oc.add("agent:main:keep")
    oc.add("agent:main:gone")
    services.sync_instance_sessions(instance=alice_instance)
    saved = oc.sessions.pop("agent:main:gone")
    result = services.sync_instance_sessions(instance=alice_instance)
    assert result.pruned == 1
    gone = Session.objects.get(session_key="agent:main:gone")
    assert gone.status == Session.Status.PRUNED and gone.pruned_at is not None
    assert gone.input_tokens == 100  # costs stay for the ledger
    oc.sessions["agent:main:gone"] = saved  # e.g. a restore brought it back
    services.sync_instance_sessions(instance=alice_instance, full=True)
    gone.refresh_from_db()
    assert gone.status == Session.Status.LIVE and gone.pruned_at is None


def test_archived_sessions_are_mirrored_as_archived(alice_instance, fake_openclaw, price):
    oc = fake_openclaw(alice_instance)
    oc.add("agent:main:a", archived=True)
    services.sync_instance_sessions(instance=alice_instance)
    assert Session.objects.get().status == Session.Status.ARCHIVED


@pytest.mark.parametrize(
    "status", [Instance.Status.STOPPED, Instance.Status.DEPLOYING, Instance.Status.PAUSED]
)
def test_an_instance_that_is_not_running_is_skipped_quietly(alice_instance, fake_openclaw, status):
    Instance.objects.filter(pk=alice_instance.pk).update(status=status)
    alice_instance.refresh_from_db()
    result = services.sync_instance_sessions(instance=alice_instance)
    assert result.skipped
    assert fake_openclaw(alice_instance).calls == []


def test_a_model_without_our_price_costs_zero_but_keeps_openclaws_estimate(
    alice_instance, fake_openclaw
):
    oc = fake_openclaw(alice_instance)
    oc.add("agent:main:a", model="unknown-model", cost="0.5")
    services.sync_instance_sessions(instance=alice_instance)
    s = Session.objects.get()
    assert s.cost_usd == Decimal("0") and s.openclaw_cost_usd == Decimal("0.5")


def test_sync_all_sessions_fans_out_one_task_per_running_instance(
    alice_instance, charlie_instance, monkeypatch
):
    from sessions_mgmt import tasks

    Instance.objects.filter(pk=charlie_instance.pk).update(status=Instance.Status.STOPPED)
    sent = []
    monkeypatch.setattr(tasks.sync_instance_sessions_task, "delay", lambda i: sent.append(i))
    assert tasks.sync_all_sessions() == 1
    assert sent == [str(alice_instance.pk)]


def test_an_instance_ready_after_an_operation_gets_a_full_sync_queued_after_commit(
    alice_instance, monkeypatch, django_capture_on_commit_callbacks
):
    from fleet import hooks
    from sessions_mgmt import tasks

    sent = []
    monkeypatch.setattr(
        tasks.sync_instance_sessions_task, "delay", lambda i, **kw: sent.append((i, kw))
    )
    with django_capture_on_commit_callbacks(execute=True):
        hooks.run("instance.ready", instance=alice_instance, operation=None)
        assert sent == []  # not before the operation's transaction commits
    assert sent == [(str(alice_instance.pk), {"full": True})]


def test_a_broker_that_refuses_the_queued_sync_never_fails_the_operation(
    alice_instance, monkeypatch, django_capture_on_commit_callbacks
):
    from fleet import hooks
    from sessions_mgmt import tasks

    def down(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.sync_instance_sessions_task, "delay", down)
    with django_capture_on_commit_callbacks(execute=True):
        hooks.run("instance.ready", instance=alice_instance, operation=None)


def test_the_sync_task_does_a_full_listing_when_asked(alice_instance, fake_openclaw, price):
    from sessions_mgmt import tasks

    oc = fake_openclaw(alice_instance)
    oc.add("agent:main:a")
    tasks.sync_instance_sessions_task(str(alice_instance.pk))
    tasks.sync_instance_sessions_task(str(alice_instance.pk))  # incremental: from the cursor
    oc.calls.clear()
    tasks.sync_instance_sessions_task(str(alice_instance.pk), full=True)
    assert oc.calls[0] == "list:0"
    assert Session.objects.filter(instance=alice_instance).count() == 1
