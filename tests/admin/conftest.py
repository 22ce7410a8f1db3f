"""Fixtures for the staff admin tests: a superuser, a support person, a staff member without the
transcript permission, and instances built directly as rows (nothing here starts a container).

Staff clients sign in as at the real door (tests/admin/door.py): allauth's login with a password,
then a TOTP code.

These tests are non-transactional: a service queues its task with transaction.on_commit, which
never fires inside the test's transaction, so an admin action records its Operation and audit row
and nothing runs. We assert on those rows.
"""

import itertools
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, Permission
from django.utils import timezone

from accounts.models import Membership, Role
from billing.models import Plan, Subscription, UsageDay
from instances.models import Host, Instance, Operation
from sessions_mgmt.models import Backup
from tests.factories import (
    BackupFactory,
    InstanceFactory,
    OperationFactory,
    OrganizationFactory,
    SessionFactory,
    UserFactory,
)

from .door import sign_in_staff

_seq = itertools.count(1)


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    """Factories set a password on every user; the query-count tests make dozens of users."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def superuser(db):
    return UserFactory(email="root@clawfleet.test", is_staff=True, is_superuser=True)


@pytest.fixture
def admin_client_(client, superuser):
    sign_in_staff(client, superuser)
    return client


@pytest.fixture
def support_user(db):
    """Staff in the Support group (created by accounts/migrations/0002_staff_support_group)."""
    user = UserFactory(email="sam.support@clawfleet.test", is_staff=True)
    user.groups.add(Group.objects.get(name="Support"))
    return user


@pytest.fixture
def support_client(client, support_user):
    sign_in_staff(client, support_user)
    return client


@pytest.fixture
def viewer_staff(db):
    """Staff who may look at instances and sessions but may not read transcripts."""
    user = UserFactory(email="vera.viewer@clawfleet.test", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["view_instance", "view_session", "view_backup", "view_operation"]
        )
    )
    return user


@pytest.fixture
def host(db):
    return Host.objects.create(
        name="engine-1", base_url="unix:///nonexistent/docker.sock", memory_mb=8192
    )


@pytest.fixture
def plan(db):
    return Plan.objects.create(
        slug="admin-test-pro", name="Admin Test Pro", monthly_price_cents=2900, max_instances=50
    )


def make_org(plan=None, **kwargs):
    org = OrganizationFactory(**kwargs)
    if plan is not None:
        Subscription.objects.create(organization=org, plan=plan, status=Subscription.Status.ACTIVE)
    owner = UserFactory()
    Membership.objects.create(user=owner, organization=org, role=Role.OWNER)
    return org


# Presets of the admin suite (secrets its pages must never show); rows come from the shared
# factories in tests/factories.py.
def make_instance(org, host, *, status=Instance.Status.RUNNING, **kwargs):
    n = next(_seq)
    presets = {
        "name": f"bot-{n}",
        "openclaw_version": "2026.9.5",
        "host_port": 19100 + n,
        "gateway_token": f"gw-secret-{n}-do-not-show",
        "provider_api_key": f"sk-secret-{n}-do-not-show",
        "channel_token": f"chan-secret-{n}-do-not-show",
        "memory_mb": 1024,
        "provider": "openai",
        "model_name": "gpt-4o-mini",
        "health": "unknown",
        "running_since": None,
    }
    return InstanceFactory(organization=org, host=host, status=status, **{**presets, **kwargs})


def make_backup(instance, *, state=Backup.State.SUCCEEDED, age=timedelta(hours=2), **kwargs):
    finished = timezone.now() - age
    presets = {
        "kind": Backup.Kind.NIGHTLY,
        "storage_name": f"backups/{instance.pk}/{next(_seq)}.tar.gz.enc",
        "size_bytes": 1024 * 1024,
        "session_count": 3,
        "sha256": "",
        "created_at": finished - timedelta(minutes=1),
        "finished_at": finished if state == Backup.State.SUCCEEDED else None,
    }
    return BackupFactory(instance=instance, state=state, **{**presets, **kwargs})


def make_session(instance, *, cost="0.5", **kwargs):
    n = next(_seq)
    presets = {
        "session_key": f"agent:main:telegram:direct:{n}",
        "model": "gpt-4o-mini",
        "last_activity_at": timezone.now() - timedelta(minutes=n),
        "started_at": None,
        "message_count": 10,
        "input_tokens": 1000,
        "output_tokens": 500,
        "cost_usd": Decimal(cost),
    }
    return SessionFactory(instance=instance, **{**presets, **kwargs})


def make_usage(instance, *, usd="3.5", day=None):
    return UsageDay.objects.create(
        instance=instance,
        organization=instance.organization,
        day=day or timezone.localdate(),
        running_seconds=3600,
        compute_cost_usd=Decimal("0.5"),
        llm_cost_usd=Decimal(usd) - Decimal("0.5"),
    )


def make_operation(instance, *, state=Operation.State.SUCCEEDED, **kwargs):
    presets = {"kind": Operation.Kind.RESTART, "started_at": None, "finished_at": None}
    return OperationFactory(instance=instance, state=state, **{**presets, **kwargs})


@pytest.fixture
def org(plan):
    return make_org(plan, name="Acme Agency", slug="acme")


@pytest.fixture
def instance(org, host):
    return make_instance(org, host)
