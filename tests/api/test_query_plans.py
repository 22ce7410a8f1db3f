"""Every filter and ordering the list endpoints document is served by an index at fleet scale.

One module-wide world, committed once (seconds, not minutes): 1,000 instances in 41
organizations, 100,000 sessions and 90 days of usage rows per instance (90,000), inserted with
INSERT ... SELECT generate_series and ANALYZEd. Each test makes a real request with the measured
organization's token, captures the SQL the view ran, and asks PostgreSQL for its plan: no
sequential scan of the sessions table (the session list), of the instances table (the instance
list) or of the usage days (usage), and the default orderings need no sort at all (the index
hands out the rows in order, so a page reads ~50 index entries).
"""

from __future__ import annotations

import datetime as dt
import json
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import ApiToken, AuditEvent, Organization
from accounts.services import SYSTEM, api_token_create
from billing.models import UsageDay
from instances.models import Instance
from sessions_mgmt.models import Session

from .conftest import token_client

OTHER_ORGS = 40
BIG_ORG_INSTANCES = 200
OTHER_INSTANCES = 20  # each: 40 × 20 + 200 = 1,000 instances
BIG_ORG_SESSIONS = 50_000
OTHER_SESSIONS = 50_000  # spread over the 800 other instances: 100,000 sessions in all
USAGE_DAYS = 90  # one usage row per instance per day: 90,000
SESSIONS = "sessions_mgmt_session"
INSTANCES = "instances_instance"
USAGE = "billing_usageday"


def _insert_sessions(org_ids: list[int], instance_ids: list[str], count: int) -> None:
    """`count` sessions spread evenly over `instance_ids`, in one statement. Channels, statuses
    and agents are skewed the way a fleet's are: a rare value is the case an index must serve."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO sessions_mgmt_session (
                session_key, session_id, agent_id, channel, model, status, started_at,
                last_activity_at, message_count, input_tokens, output_tokens, cache_read_tokens,
                cache_write_tokens, openclaw_cost_usd, cost_usd, first_seen_at, synced_at,
                pruned_at, instance_id, organization_id, provider, openclaw_updated_ms
            )
            SELECT
                'agent:main:telegram:dm:' || g,
                '',
                CASE WHEN g %% 20 = 0 THEN 'support' ELSE 'main' END,
                CASE WHEN g %% 1000 = 7 THEN 'discord'
                     WHEN g %% 10 < 6 THEN 'telegram'
                     WHEN g %% 10 < 9 THEN 'slack'
                     ELSE 'webchat' END,
                'gpt-4o-mini',
                CASE WHEN g %% 100 = 3 THEN 'pruned' WHEN g %% 50 = 1 THEN 'archived'
                     ELSE 'live' END,
                now() - (g %% 86400) * interval '1 minute' - interval '30 minutes',
                CASE WHEN g %% 50 = 9 THEN NULL
                     ELSE now() - ((g * 7919) %% 86400) * interval '1 minute' END,
                g %% 200,
                (g * 31) %% 100000,
                (g * 17) %% 20000,
                0,
                0,
                0,
                ((g * 7907) %% 500000) / 1000000.0,
                now() - (g %% 86400) * interval '1 minute',
                now(),
                NULL,
                (%s::uuid[])[1 + g %% %s],
                (%s::bigint[])[1 + g %% %s],
                'openai',
                0
            FROM generate_series(1, %s) AS g
            """,
            [instance_ids, len(instance_ids), org_ids, len(org_ids), count],
        )


@pytest.fixture(scope="module")
def fleet(django_db_setup, django_db_blocker):
    """The measured organization (`big`), its token and instances; committed for the module."""
    with django_db_blocker.unblock():
        big = Organization.objects.create(name="Big Agency", slug="plans-big", kind="agency")
        others = Organization.objects.bulk_create(
            [
                Organization(name=f"Agency {i}", slug=f"plans-{i:02d}", kind="agency")
                for i in range(OTHER_ORGS)
            ]
        )
        statuses = ["running"] * 7 + ["stopped", "failed", "crash_looping"]
        now = timezone.now()

        def instances(org, n):
            return [
                Instance(
                    organization=org,
                    name=f"client-{j:03d}",
                    external_id=f"ext-{org.pk}-{j}",
                    client_name=f"Client {j % 37}",
                    openclaw_version="2026.9.6" if j % 5 else "2026.9.5",
                    status=statuses[j % len(statuses)],
                    created_at=now - dt.timedelta(hours=j),
                    gateway_token="gw-plans",
                )
                for j in range(n)
            ]

        big_instances = Instance.objects.bulk_create(instances(big, BIG_ORG_INSTANCES))
        other_instances = Instance.objects.bulk_create(
            [i for org in others for i in instances(org, OTHER_INSTANCES)], batch_size=1000
        )
        _insert_sessions([big.pk], [str(i.pk) for i in big_instances], BIG_ORG_SESSIONS)
        # Each other instance's sessions belong to its own organization: one statement per org.
        per_org = OTHER_SESSIONS // OTHER_ORGS
        for org in others:
            ids = [str(i.pk) for i in other_instances if i.organization_id == org.pk]
            _insert_sessions([org.pk], ids, per_org)
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO billing_usageday (
                    instance_id, organization_id, day, running_seconds, input_tokens,
                    output_tokens, cache_read_tokens, cache_write_tokens, compute_cost_usd,
                    llm_cost_usd, updated_at
                )
                SELECT i.id, i.organization_id, current_date - d, 86400, 1000 * d, 100 * d, 0, 0,
                       0.48, d / 1000.0, now()
                FROM instances_instance i, generate_series(0, %s - 1) AS d
                WHERE i.organization_id = ANY(%s)
                """,
                [USAGE_DAYS, [big.pk, *(o.pk for o in others)]],
            )
            cursor.execute(f"ANALYZE {SESSIONS}")
            cursor.execute(f"ANALYZE {INSTANCES}")
            cursor.execute(f"ANALYZE {USAGE}")
        _, secret = api_token_create(
            actor=SYSTEM, organization=big, name="plans", scopes=["read", "billing"]
        )
        assert Session.objects.count() >= 100_000 and Instance.objects.count() >= 1_000
    yield {"secret": secret, "instance": big_instances[17], "org": big}
    with django_db_blocker.unblock():
        orgs = [big, *others]
        Session.objects.filter(organization__in=orgs)._raw_delete(connection.alias)
        UsageDay.objects.filter(organization__in=orgs)._raw_delete(connection.alias)
        Instance.objects.filter(organization__in=orgs)._raw_delete(connection.alias)
        AuditEvent.objects.filter(organization__in=orgs).delete()
        ApiToken.objects.filter(organization__in=orgs).delete()
        Organization.objects.filter(pk__in=[o.pk for o in orgs]).delete()


def _plans(api, path: str, table: str) -> list[dict]:
    """The plans of the queries a GET of `path` ran against `table` (at least one)."""
    with CaptureQueriesContext(connection) as ctx:
        response = api.get(path)
    assert response.status_code == 200, response.content[:300]
    plans = []
    with connection.cursor() as cursor:
        for query in ctx.captured_queries:
            if f'"{table}"' not in query["sql"]:
                continue
            cursor.execute("EXPLAIN (FORMAT JSON) " + query["sql"])
            raw = cursor.fetchone()[0]
            plans.append((query["sql"], (json.loads(raw) if isinstance(raw, str) else raw)[0]))
    assert plans, f"{path} ran no query on {table}"
    return response, plans


def _nodes(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def _assert_indexed(path, plans, table, *, no_sort=False):
    for sql, plan in plans:
        nodes = list(_nodes(plan["Plan"]))
        seq = [n for n in nodes if n["Node Type"] == "Seq Scan" and n["Relation Name"] == table]
        assert not seq, f"{path}: sequential scan of {table}\n{sql}\n{json.dumps(plan, indent=1)}"
        if no_sort and "LIMIT" in sql:
            sorts = [n for n in nodes if "Sort" in n["Node Type"]]
            assert not sorts, f"{path}: sorts its rows\n{sql}\n{json.dumps(plan, indent=1)}"


SESSION_ORDERINGS = ["-recency", "recency", "-cost", "cost", "-id", "id"]
SESSION_FILTERS = [
    "channel=telegram",
    "channel=discord",  # rare: 0.1 %
    "status=archived",
    "status=pruned",
    "status=live",
    "status=live&status=archived",
    "agent_id=support",
    "agent_id=nobody",
    "from=2026-01-01",
    "to=2026-01-01",
    "from={week_ago}",
    "from={week_ago}&to={yesterday}",
    "instance={instance}",
    "instance={instance}&channel=slack",
]


def _fill(query: str, fleet) -> str:
    today = timezone.now().date()
    return query.format(
        instance=fleet["instance"].pk,
        week_ago=(today - dt.timedelta(days=7)).isoformat(),
        yesterday=(today - dt.timedelta(days=1)).isoformat(),
        quarter_ago=(today - dt.timedelta(days=85)).isoformat(),
    )


@pytest.mark.parametrize("ordering", [None, *SESSION_ORDERINGS])
def test_every_session_ordering_reads_an_index_in_order(db, fleet, ordering):
    api = token_client(fleet["secret"])
    path = "/api/v1/sessions" + (f"?ordering={ordering}" if ordering else "")
    response, plans = _plans(api, path, SESSIONS)
    _assert_indexed(path, plans, SESSIONS, no_sort=True)
    assert len(response.json()["results"]) == 50
    # The next page is a keyset page, as cheap as the first.
    next_url = urlsplit(response.json()["next"])
    next_path = f"{next_url.path}?{next_url.query}"
    response, plans = _plans(api, next_path, SESSIONS)
    _assert_indexed(next_path, plans, SESSIONS, no_sort=True)
    assert len(response.json()["results"]) == 50


@pytest.mark.parametrize("ordering", [None, "-cost", "id"])
@pytest.mark.parametrize("query", SESSION_FILTERS)
def test_every_session_filter_is_served_by_an_index(db, fleet, query, ordering):
    api = token_client(fleet["secret"])
    path = f"/api/v1/sessions?{_fill(query, fleet)}" + (f"&ordering={ordering}" if ordering else "")
    _, plans = _plans(api, path, SESSIONS)
    _assert_indexed(path, plans, SESSIONS)


def test_the_measured_organization_sees_only_its_own_sessions(db, fleet):
    """The world is what the plans were asked about: the big organization's rows only."""
    api = token_client(fleet["secret"])
    body = api.get(f"/api/v1/sessions?instance={fleet['instance'].pk}&limit=200").json()
    assert len(body["results"]) == 200
    assert {row["instance"] for row in body["results"]} == {str(fleet["instance"].pk)}
    other = Instance.objects.exclude(organization=fleet["org"]).first()
    assert api.get(f"/api/v1/sessions?instance={other.pk}").json()["results"] == []


INSTANCE_QUERIES = [
    "",
    "ordering=name",
    "ordering=-name",
    "ordering=created_at",
    "ordering=-created_at",
    "ordering=status",
    "ordering=-status",
    "status=running",
    "status=failed&status=stopped",
    "external_id=ext-{org}-7",
    "name=client-01",
    "client_name=client 3",
    "openclaw_version=2026.9.5",
    "offset=150",
]


@pytest.mark.parametrize("query", INSTANCE_QUERIES)
def test_every_instance_filter_and_ordering_is_served_by_an_index(db, fleet, query):
    api = token_client(fleet["secret"])
    path = "/api/v1/instances?" + query.format(org=fleet["org"].pk)
    response, plans = _plans(api, path, INSTANCES)
    _assert_indexed(path, plans, INSTANCES)
    if not query:
        assert response.json()["count"] == BIG_ORG_INSTANCES


USAGE_QUERIES = [
    "",
    "from={week_ago}&to={yesterday}",
    "from={quarter_ago}",
    "instance={instance}",
    "instance={instance}&from={quarter_ago}",
]


@pytest.mark.parametrize("query", USAGE_QUERIES)
def test_usage_reads_the_organizations_days_by_index(db, fleet, query):
    api = token_client(fleet["secret"])
    path = "/api/v1/usage?" + _fill(query, fleet)
    response, plans = _plans(api, path, USAGE)
    _assert_indexed(path, plans, USAGE)
    assert response.json()["instances"], "the measured organization has usage"
