"""The instance state machine: the one writer of Instance.status."""

import re
from pathlib import Path

import pytest

from instances import state
from instances.models import Instance, InstanceEvent

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
S = Instance.Status


@pytest.fixture
def instance(alice_org):
    return Instance.objects.create(
        organization=alice_org, name="bot", openclaw_version="2026.9.6", gateway_token="t"
    )


def test_an_illegal_transition_is_an_error(instance, settings):
    settings.FLEET_STATE_STRICT = True
    with pytest.raises(state.IllegalTransition):
        state.transition(instance, S.RUNNING, reason="skipping the deploy")
    instance.refresh_from_db()
    assert instance.status == S.PENDING
    assert not InstanceEvent.objects.filter(instance=instance).exists()


def test_outside_strict_mode_an_illegal_transition_is_logged_and_applied(
    instance, settings, caplog
):
    settings.FLEET_STATE_STRICT = False
    state.transition(instance, S.RUNNING, reason="operator fixed it by hand")
    instance.refresh_from_db()
    assert instance.status == S.RUNNING
    assert "illegal transition pending -> running" in caplog.text


def test_running_sets_health_and_running_since_and_leaving_clears_them(instance):
    state.transition(instance, S.DEPLOYING)
    state.transition(instance, S.RUNNING)
    instance.refresh_from_db()
    assert instance.health == Instance.Health.HEALTHY
    assert instance.running_since is not None and instance.last_ready_at is not None
    state.transition(instance, S.STOPPED)
    instance.refresh_from_db()
    assert (instance.health, instance.running_since) == (Instance.Health.UNKNOWN, None)


def test_each_change_is_an_event_and_a_repeat_is_not(instance):
    assert state.transition(instance, S.DEPLOYING, reason="deploy")
    assert not state.transition(instance, S.DEPLOYING, reason="deploy again")
    events = InstanceEvent.objects.filter(instance=instance, kind=state.TRANSITION_EVENT)
    assert [(e.data["from"], e.data["to"], e.data["reason"]) for e in events] == [
        ("pending", "deploying", "deploy")
    ]


def test_every_status_has_a_row_in_the_table_and_purged_is_final():
    assert set(state.TRANSITIONS) == set(S.values)
    assert state.TRANSITIONS[S.PURGED] == frozenset()
    for targets in state.TRANSITIONS.values():
        assert targets <= set(S.values)


def test_running_seconds_come_from_the_transitions(instance):
    from datetime import timedelta

    from django.utils import timezone

    t0 = timezone.now().replace(microsecond=0) - timedelta(hours=3)
    for minutes, to in [(0, S.DEPLOYING), (1, S.RUNNING), (61, S.CRASH_LOOPING)]:
        state.transition(instance, to)
        InstanceEvent.objects.filter(instance=instance, data__to=to).update(
            created_at=t0 + timedelta(minutes=minutes)
        )
    seconds = state.running_seconds([instance.pk], t0, t0 + timedelta(hours=3))
    assert seconds == {str(instance.pk): 3600}


def test_no_code_outside_the_state_module_assigns_an_instance_status():
    """The grep the issue asks for: an instance status written (`status=S.X`,
    `status=Instance.Status.X` outside a filter, or `instance.status = ...`) appears only in
    instances/state.py."""
    written = re.compile(r"\bstatus=(S|Instance\.Status)\.[A-Z_]+|\binstance\w*\.status\s*=[^=]")
    reading = re.compile(r"\b(filter|exclude|get|Q|count|exists)\(|__")
    offenders = []
    for path in ROOT.glob("*/**/*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith((".venv/", "tests/", "bench/")) or "/migrations/" in rel:
            continue
        if rel == "instances/state.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if written.search(line) and not reading.search(line):
                offenders.append(f"{rel}:{number}: {line.strip()}")
    assert offenders == []


def test_the_diagram_in_the_docs_is_the_one_generated_from_the_table():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    assert state.mermaid() in doc, (
        "regenerate with: manage.py shell -c 'from instances import state; print(state.mermaid())'"
    )


def test_instances_from_before_the_state_machine_get_a_baseline_and_are_billed(alice_org):
    """The data migration gives every existing instance one baseline transition, so an
    instance running since before it is billed from its running_since (not 0 s)."""
    import importlib
    from datetime import timedelta

    from django.apps import apps
    from django.utils import timezone

    migration = importlib.import_module("instances.migrations.0003_baseline_transitions")
    since = timezone.now() - timedelta(hours=5)
    old = Instance.objects.create(
        organization=alice_org,
        name="old",
        openclaw_version="2026.9.6",
        gateway_token="t",
        status=S.RUNNING,
        running_since=since,
    )
    migration.record_baseline(apps, None)
    migration.record_baseline(apps, None)  # twice: still one baseline
    assert InstanceEvent.objects.filter(instance=old, kind=state.TRANSITION_EVENT).count() == 1
    start = timezone.now() - timedelta(hours=2)
    seconds = state.running_seconds([old.pk], start, start + timedelta(hours=1))
    assert seconds == {str(old.pk): 3600}
