"""Property-based tests of every operation against the generated OpenAPI schema, both ways
(schemathesis, in-process through the WSGI app, with a real organization token):

- positive cases (what the schema allows) and negative cases (what it forbids) alike;
- every check schemathesis has: no 5xx, documented status codes, content types, response bodies
  and headers, schema-valid requests accepted, schema-violating requests rejected, missing
  required headers, unsupported methods and Allow, ignored auth, use after free, resource
  availability, object-level authorization.

The schema must therefore say exactly what the code accepts (the pagination bounds, the ordering
choices, no empty typed filter, no NUL character in a string). The few rules it can only state in
words (a token's expiry in the future, unique names and external ids, at most 366 days of
usage, a custom endpoint the egress firewall allows) are applied to positive cases by
`within_business_rules` below; negative cases are sent as generated.

Actions that would start containers only record an Operation: its task is enqueued with
transaction.on_commit, which never fires inside the test's transaction (and the `no_enqueue`
fixture fails the test if anything tries).
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import schemathesis
from django.utils import timezone
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS

from billing.models import Subscription
from instances.models import Host, Instance

MAX_USAGE_DAYS = 366
CHOSEN_PROVIDERS = set(Instance.Provider.values) - {"custom"}


@pytest.fixture(autouse=True)
def _keep_the_test_connection(db):
    """Requests go through the WSGI app in-process. Like Django's test client, keep the test's
    database connection open across them (the request_started/finished signals would otherwise
    close it and lose the test's transaction)."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def roomy_host(db):
    """A host with room for every deploy the run makes (its engine is never called: operations
    are only recorded), so that "no host has room right now" does not stand in for a verdict."""
    return Host.objects.create(
        name="schemathesis-roomy",
        base_url="tcp://engine.invalid:2376",
        memory_mb=2_000_000_000,
        max_instances=1_000_000,
        port_range_start=20000,
        port_range_end=29999,
    )


@pytest.fixture
def auth_headers(world, transcript_stub, roomy_host):
    return {"Authorization": f"Bearer {world.alice_secret}"}


def _load_schema():
    from fleet.wsgi import application

    # The schema as the app serves it (no database needed to generate it).
    return schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)


schema = _load_schema().include(path_regex=r"^/api/v1/")


def every_check():
    """All of schemathesis' checks, so that a new release's checks are run too."""
    return [CHECKS.get_one(name) for name in CHECKS.get_all_names()]


def _date(value):
    try:
        return dt.date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else None
    except ValueError:
        return None


def _text(value) -> bool:
    """A string the schema allows (the rules only ever replace otherwise valid values)."""
    return isinstance(value, str) and "\x00" not in value


def within_business_rules(case, organization) -> None:
    """In a positive case, values the schema allows but a documented rule refuses are replaced
    by allowed ones. A negative case is left alone: a rule's 400 is what it expects anyway."""
    if case.meta is not None and case.meta.generation.mode.is_negative:
        return
    label = f"{case.method.upper()} {case.path}"
    body = case.body if isinstance(case.body, dict) else None
    if label == "POST /api/v1/tokens" and body is not None:
        # "expires_at: must be in the future"
        try:
            expires = dt.datetime.fromisoformat(str(body.get("expires_at")).replace("Z", "+00:00"))
        except ValueError:
            expires = None
        if expires is not None and expires.tzinfo and expires <= timezone.now():
            body["expires_at"] = (timezone.now() + dt.timedelta(days=30)).isoformat()
    if label == "POST /api/v1/instances" and body is not None:
        # "api_key: required except for provider custom"; "model_base_url: required for custom";
        # a custom endpoint must be one the egress firewall lets a tenant reach.
        # "channel_token: checked with Telegram first" (no Telegram here: tests/channels has
        # the peer and the tests of that rule).
        body.pop("channel_token", None)
        if body.get("provider") == "custom":
            body["model_base_url"] = "https://llm.example.com/v1"
        elif _text(body.get("model_base_url")) and not str(body["model_base_url"]).startswith(
            ("http://", "https://")
        ):
            # "an http(s) URL": the schema's uri format also allows other schemes
            body["model_base_url"] = "https://llm.example.com/v1"
        elif body.get("provider") in CHOSEN_PROVIDERS and body.get("api_key") in (None, ""):
            body["api_key"] = "sk-schemathesis"
    if label in ("POST /api/v1/instances", "PATCH /api/v1/instances/{id}") and body is not None:
        # "within your plan" (the plan's memory and CPU limits)
        plan = Subscription.objects.get(organization=organization).plan
        for key, most in (("memory_mb", plan.max_memory_mb), ("cpus", float(plan.max_cpus))):
            if isinstance(body.get(key), int | float) and body[key] > most:
                body[key] = most
        # "unique in the organization" (name and external_id)
        taken = Instance.objects.filter(organization=organization)
        if _text(body.get("name")) and taken.filter(name=body["name"]).exists():
            body["name"] = f"n{uuid.uuid4().hex[:12]}"
        external_id = body.get("external_id")
        if _text(external_id) and taken.filter(external_id=external_id).exists():
            body["external_id"] = uuid.uuid4().hex
    webhook = label in ("POST /api/v1/webhooks", "PATCH /api/v1/webhooks/{id}")
    if webhook and body is not None and _text(body.get("url")):
        # "your own server on the internet": the egress rule refuses private/reserved addresses
        body["url"] = "https://hooks.example.com/clawfleet"
    if label in ("GET /api/v1/usage", "GET /api/v1/usage/export") and isinstance(case.query, dict):
        # "from on or before to, at most 366 days at a time"
        start, end = _date(case.query.get("from")), _date(case.query.get("to"))
        end_or_today = end or timezone.localdate()
        if start is not None and not dt.timedelta(0) <= end_or_today - start < dt.timedelta(
            days=MAX_USAGE_DAYS
        ):
            case.query["from"] = end_or_today.replace(day=1).isoformat()


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_every_operation_conforms_to_the_schema_and_never_fails(case, auth_headers, world):
    within_business_rules(case, world.alice_org)
    case.call_and_validate(headers=auth_headers, checks=every_check())


def test_the_run_covers_every_api_operation_in_both_generation_modes():
    operations = [op.ok() for op in schema.get_all_operations()]
    assert len(operations) >= 28
    modes = {mode.value for mode in schema.config.generation.modes}
    assert modes == {"positive", "negative"}
    names = set(CHECKS.get_all_names())
    assert {"negative_data_rejection", "positive_data_acceptance", "not_a_server_error"} <= names
