"""Query-count baselines (netbox's habit): every changelist runs the same number of queries for
3 rows as for 30, so a column that would query per row (an N+1) fails here."""

from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEvent, Membership, Role
from accounts.services import SYSTEM, audit
from tests.factories import UserFactory

from .conftest import (
    make_backup,
    make_instance,
    make_operation,
    make_org,
    make_session,
    make_usage,
)


def _rich_instance(plan, host):
    org = make_org(plan)
    instance = make_instance(org, host)
    make_usage(instance)
    make_backup(instance)
    make_session(instance)
    make_operation(instance)
    return instance


def add_instances(n, plan, host):
    for _ in range(n):
        _rich_instance(plan, host)


def add_sessions(n, plan, host):
    instance = make_instance(make_org(plan), host)
    for _ in range(n):
        make_session(make_instance(instance.organization, host) if _ % 2 else instance)


def add_operations(n, plan, host):
    for _ in range(n):
        make_operation(make_instance(make_org(plan), host))


def add_backups(n, plan, host):
    for _ in range(n):
        make_backup(make_instance(make_org(plan), host))


def add_audit_events(n, plan, host):
    for _ in range(n):
        org = make_org(plan)
        audit(actor=SYSTEM, action="organization.created", organization=org, target=org)


def add_organizations(n, plan, host):
    for i in range(n):
        org = make_org(plan if i % 2 else None)
        make_instance(org, host)
        Membership.objects.create(user=UserFactory(), organization=org, role=Role.MEMBER)


def add_users(n, plan, host):
    for _ in range(n):
        UserFactory()


def add_events(n, plan, host):
    from instances.models import InstanceEvent

    for _ in range(n):
        instance = make_instance(make_org(plan), host)
        InstanceEvent.objects.create(instance=instance, kind="restarted", message="crashed")


CASES = [
    ("admin:instances_instance_changelist", add_instances),
    ("admin:sessions_mgmt_session_changelist", add_sessions),
    ("admin:instances_operation_changelist", add_operations),
    ("admin:sessions_mgmt_backup_changelist", add_backups),
    ("admin:accounts_auditevent_changelist", add_audit_events),
    ("admin:accounts_organization_changelist", add_organizations),
    ("admin:accounts_user_changelist", add_users),
    ("admin:instances_instanceevent_changelist", add_events),
    ("admin:instances_host_changelist", add_instances),
]


def count_queries(client, url) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize(("url_name", "add_rows"), CASES, ids=[c[0].split(":")[1] for c in CASES])
def test_a_changelist_runs_as_many_queries_for_30_rows_as_for_3(
    admin_client_, plan, host, url_name, add_rows
):
    url = reverse(url_name)
    add_rows(3, plan, host)
    few = count_queries(admin_client_, url)

    add_rows(27, plan, host)
    many = count_queries(admin_client_, url)

    assert many == few, f"{url_name}: {few} queries for 3 rows, {many} for 30"


@pytest.mark.parametrize(
    "query",
    [
        "backup_overdue=yes",
        "crash_looping=yes",
        "q=acme",
        "o=8",  # by cost this month
        "o=-9",  # by last good backup
    ],
)
def test_the_instance_changelist_filters_and_orderings_stay_flat(admin_client_, plan, host, query):
    url = reverse("admin:instances_instance_changelist") + "?" + query
    add_instances(3, plan, host)
    few = count_queries(admin_client_, url)
    add_instances(27, plan, host)
    assert count_queries(admin_client_, url) == few


def test_support_staff_sessions_changelist_is_flat_too(support_client, plan, host):
    url = reverse("admin:sessions_mgmt_session_changelist")
    add_sessions(3, plan, host)
    few = count_queries(support_client, url)
    add_sessions(27, plan, host)
    assert count_queries(support_client, url) == few


def test_the_audit_log_is_flat_with_a_date_filter(admin_client_, plan, host):
    since = (timezone.now() - timedelta(days=1)).isoformat()
    url = (
        reverse("admin:accounts_auditevent_changelist")
        + "?"
        + urlencode({"created_at__gte": since})
    )
    add_audit_events(3, plan, host)
    few = count_queries(admin_client_, url)
    add_audit_events(27, plan, host)
    assert count_queries(admin_client_, url) == few
    assert AuditEvent.objects.count() >= 30
