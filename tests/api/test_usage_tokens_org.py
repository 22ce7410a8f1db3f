"""Usage, API tokens, the organization, members and the audit log."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.utils import timezone

from accounts.models import ApiToken
from billing.models import UsageDay

from .conftest import API, make_instance, token_client


def test_usage_gives_every_day_and_every_instance_with_totals(world):
    today = timezone.localdate()
    other = make_instance(world.alice_org, "other")
    UsageDay.objects.create(
        instance=other,
        organization=world.alice_org,
        day=today - dt.timedelta(days=1),
        running_seconds=7200,
        output_tokens=500,
        compute_cost_usd=Decimal("0.5"),
        llm_cost_usd=Decimal("1"),
    )
    start = (today - dt.timedelta(days=2)).isoformat()
    body = token_client(world.alice_secret).get(f"{API}/usage?from={start}&to={today}").json()
    assert [d["day"] for d in body["days"]] == [
        (today - dt.timedelta(days=n)).isoformat() for n in (2, 1, 0)
    ]
    assert body["days"][0]["total_usd"] == "0.000000"
    assert body["totals"]["total_usd"] == "1.530000"
    assert body["totals"]["tokens"] == 1500
    assert [i["instance_name"] for i in body["instances"]] == ["other", "alice-bot"]
    assert body["instances"][0]["running_hours"] == "2.00"


def test_usage_for_one_instance(world):
    body = token_client(world.alice_secret).get(f"{API}/usage?instance={world.running.pk}").json()
    assert body["instance"] == str(world.running.pk)
    assert [i["instance_name"] for i in body["instances"]] == ["alice-bot"]


def test_usage_refuses_a_backwards_or_too_long_range(world):
    api = token_client(world.alice_secret)
    backwards = api.get(f"{API}/usage?from=2026-02-01&to=2026-01-01")
    assert backwards.status_code == 400 and "from" in backwards.json()["error"]["fields"]
    too_long = api.get(f"{API}/usage?from=2020-01-01&to=2026-01-01")
    assert too_long.status_code == 400


def test_usage_needs_the_billing_scope_but_every_member_may_see_costs(world, victor, client):
    assert token_client(world.alice_read_secret).get(f"{API}/usage").status_code == 403
    client.force_login(victor)
    assert client.get(f"{API}/usage").status_code == 200


def test_a_created_token_is_shown_once_and_works(world):
    api = token_client(world.alice_secret)
    created = api.post(f"{API}/tokens", {"name": "ci", "scopes": ["read"]}, format="json")
    assert created.status_code == 201
    secret = created.json()["secret"]
    listed = api.get(f"{API}/tokens").content.decode()
    assert secret not in listed and '"secret"' not in listed
    new = token_client(secret)
    assert new.get(f"{API}/instances").status_code == 200
    assert new.post(f"{API}/instances/{world.running.pk}/stop").status_code == 403


def test_a_token_without_every_scope_cannot_manage_tokens(world, make_token):
    _, secret = make_token(world.alice_org, ("read", "operate"))
    response = token_client(secret).post(
        f"{API}/tokens", {"name": "x", "scopes": ["read", "operate", "billing"]}, format="json"
    )
    assert response.status_code == 403


def test_revoking_a_token_makes_it_a_401_at_once(world, make_token):
    token, secret = make_token(world.alice_org, ("read",))
    api = token_client(world.alice_secret)
    assert api.post(f"{API}/tokens/{token.pk}/revoke").json()["is_active"] is False
    assert token_client(secret).get(f"{API}/instances").status_code == 401
    other, _ = make_token(world.alice_org, ("read",))
    assert api.delete(f"{API}/tokens/{other.pk}").status_code == 204
    assert ApiToken.objects.get(pk=other.pk).revoked_at is not None


def test_token_create_validates_scopes(world):
    response = token_client(world.alice_secret).post(
        f"{API}/tokens", {"name": "x", "scopes": ["root"]}, format="json"
    )
    assert response.status_code == 400 and "scopes" in response.json()["error"]["fields"]


def test_tokens_need_owner_or_admin_when_signed_in(world, bob, alice, client):
    client.force_login(bob)
    assert client.get(f"{API}/tokens").status_code == 403
    client.force_login(alice)
    assert client.get(f"{API}/tokens").status_code == 200


def test_the_organization_and_its_members(world, bob):
    api = token_client(world.alice_secret)
    assert api.get(f"{API}/organization").json()["slug"] == "alice-co"
    members = api.get(f"{API}/members").json()["results"]
    assert [(m["email"], m["role"]) for m in members] == [
        ("alice@example.com", "owner"),
        ("bob@example.com", "member"),
    ]
    assert [m["email"] for m in api.get(f"{API}/members?role=member").json()["results"]] == [
        "bob@example.com"
    ]


def test_the_audit_log_lists_api_actions_newest_first_with_the_token(world):
    api = token_client(world.alice_secret)
    api.post(f"{API}/instances/{world.running.pk}/restart")
    events = api.get(f"{API}/audit-events").json()["results"]
    assert events[0]["action"] == "instance.restarted"
    assert events[0]["actor"] == "token alice-full"
    assert (
        api.get(f"{API}/audit-events?action=instance.restarted").json()["results"][0]["id"]
        == (events[0]["id"])
    )
