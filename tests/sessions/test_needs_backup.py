"""The one rule of "which instances need a backup" (sessions_mgmt.selectors.needs_backup)."""

from datetime import timedelta

from django.utils import timezone

from instances.models import Instance
from sessions_mgmt.selectors import needs_backup
from tests.factories import BackupFactory, HostFactory, InstanceFactory

S = Instance.Status


def _instance(name, *, age=timedelta(days=3), **kwargs):
    kwargs.setdefault("host", HostFactory(name="backup-host"))
    instance = InstanceFactory(name=name, **kwargs)
    Instance.objects.filter(pk=instance.pk).update(created_at=timezone.now() - age)
    return instance


def _backup(instance, *, age=timedelta(hours=1), **kwargs):
    return BackupFactory(instance=instance, finished_at=timezone.now() - age, **kwargs)


def _names(qs):
    return set(qs.values_list("name", flat=True))


def test_an_instance_needs_a_backup_when_its_newest_good_backup_is_older_than_26_hours(db):
    fresh = _instance("fresh")
    _backup(fresh)
    stale = _instance("stale")
    _backup(stale, age=timedelta(hours=27))
    _backup(stale, state="failed")  # a failed backup does not count
    never = _instance("never")

    assert _names(needs_backup(Instance.objects.all())) == {stale.name, never.name}


def test_a_new_instance_does_not_need_one_until_the_nightly_run_has_had_its_chance(db):
    _instance("newborn", age=timedelta(hours=1))
    old = _instance("old", age=timedelta(hours=27))

    assert _names(needs_backup(Instance.objects.all())) == {old.name}


def test_stopped_and_paused_instances_need_backups_too_but_undeployed_and_deleted_ones_do_not(db):
    for status in (S.STOPPED, S.PAUSED, S.CRASH_LOOPING, S.STARTING):
        _instance(f"is-{status}", status=status)
    for status in (S.PENDING, S.DEPLOYING, S.DELETED, S.PURGED):
        _instance(f"is-{status}", status=status)
    _instance("hostless", host=None)

    assert _names(needs_backup(Instance.objects.all())) == {
        "is-stopped",
        "is-paused",
        "is-crash_looping",
        "is-starting",
    }


def test_it_filters_the_queryset_it_is_given_and_answers_for_the_time_it_is_asked(db):
    a = _instance("a")
    _backup(a, age=timedelta(hours=2))
    _instance("b")
    later = timezone.now() + timedelta(hours=25)

    assert _names(needs_backup(Instance.objects.filter(name="a"))) == set()
    assert _names(needs_backup(Instance.objects.filter(name="a"), now=later)) == {"a"}
    assert _names(needs_backup(Instance.objects.exclude(name="b"), now=later)) == {"a"}


def test_the_freshness_alert_and_the_nightly_run_follow_the_same_rule(db, monkeypatch):
    from sessions_mgmt import services, tasks
    from sessions_mgmt.selectors import BACKUP_MAX_AGE

    assert timedelta(hours=services.FRESHNESS_HOURS) == BACKUP_MAX_AGE
    stopped = _instance("stopped-stale", status=S.STOPPED)  # the nightly run backs it up cold
    _backup(stopped, age=timedelta(hours=30))
    running = _instance("running-fresh")
    _backup(running)
    _instance("newborn", age=timedelta(hours=1))
    _instance("deploying", status=S.DEPLOYING)

    assert [i.name for i in services.check_backup_freshness()] == ["stopped-stale"]

    fanned = []
    monkeypatch.setattr(tasks, "fan_out", lambda task, ids, *args: fanned.extend(ids) or len(ids))
    monkeypatch.setattr(services, "remove_expired_prerestore_volumes", lambda: 0)
    tasks.nightly_backups("2026-11-25")
    names = set(Instance.objects.filter(pk__in=fanned).values_list("name", flat=True))
    assert names == {"stopped-stale", "running-fresh", "newborn"}
