"""List endpoints cost the same number of queries for 3 rows as for 30 (no N+1)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import AuditEvent, Membership
from tests.factories import UserFactory

from .conftest import FULL, make_backup, make_instance, make_operation, make_session, token_client

LISTS = [
    "/api/v1/instances",
    "/api/v1/operations",
    "/api/v1/sessions",
    "/api/v1/backups",
    "/api/v1/members",
    "/api/v1/tokens",
    "/api/v1/audit-events",
    "/api/v1/usage",
]


def _seed(org, n, make_token, start):
    from billing.models import UsageDay

    for i in range(start, start + n):
        instance = make_instance(org, f"bot-{i}", external_id=f"ext-{i}")
        make_operation(instance)
        make_session(instance, f"key-{i}")
        make_backup(instance)
        UsageDay.objects.create(instance=instance, organization=org, day="2026-11-01")
        Membership.objects.create(user=UserFactory(), organization=org, role="member")
        make_token(org, ("read",), name=f"t{i}")
        AuditEvent.objects.create(organization=org, action="test.event", target_repr=str(i))


def _count(api, path):
    with CaptureQueriesContext(connection) as ctx:
        response = api.get(path + ("?from=2026-11-01&to=2026-11-30" if "usage" in path else ""))
    assert response.status_code == 200, response.content[:300]
    return len(ctx.captured_queries)


@pytest.mark.parametrize("path", LISTS)
def test_a_list_costs_the_same_queries_for_3_and_30_rows(path, alice_org, plan, make_token):
    _, secret = make_token(alice_org, FULL)
    api = token_client(secret)
    _seed(alice_org, 3, make_token, 0)
    api.get(path)  # warm up (content types, last_used_at write)
    small = _count(api, path)
    _seed(alice_org, 27, make_token, 3)
    large = _count(api, path)
    assert small == large, f"{path}: {small} queries for 3 rows, {large} for 30"
    assert large <= 6
