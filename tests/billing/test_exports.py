"""Chargeback exports (GET /api/v1/usage/export, the costs page's download): grouped by client,
instance, session, model and channel, CSV and JSON, totals equal to the usage endpoint's to the
cent, bad input a 400 with a message, another organization's costs never in it, and a 100,000-
session export streamed (the process memory is printed, not asserted)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
from collections import defaultdict
from decimal import Decimal

import pytest
from django.utils import timezone

from billing.models import ModelPrice, SessionUsageDay, UsageDay
from billing.services import usage
from instances import state
from instances.models import InstanceEvent
from mockllm import completion_tokens_for, prompt_tokens_for

from .factories import InstanceFactory, PlanFactory, SessionFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db

EXPORT = "/api/v1/usage/export"
USAGE = "/api/v1/usage"
DAY = dt.date(2026, 11, 10)
GROUPS = ["client", "instance", "session", "model", "channel"]


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt.UTC)


def transition_at(instance, to, when, **kwargs):
    assert state.transition(instance, to, **kwargs)
    latest = InstanceEvent.objects.filter(instance=instance, kind=state.TRANSITION_EVENT)
    InstanceEvent.objects.filter(pk=latest.order_by("-id").values("pk")[:1]).update(created_at=when)


def _conversation_tokens(turns: int) -> tuple[int, int]:
    """What the mock LLM reports for `turns` user messages of a known text (its documented
    token rule), summed as OpenClaw's session counters sum them."""
    prompt = completion = 0
    history: list[dict] = []
    for n in range(turns):
        history.append({"role": "user", "content": f"Hello number {n}, how are you today?"})
        reply = f"mock reply {n} with a few words"
        prompt += prompt_tokens_for(history)
        completion += completion_tokens_for(reply)
        history.append({"role": "assistant", "content": reply})
    return prompt, completion


@pytest.fixture
def period(alice_org, charlie_org):
    """Alice's agency: two instances for client Acme, one for Beta, one of her own (no client),
    sessions on two channels over two days with the mock LLM's token counts and a price; charlie
    has costs too (never in alice's export)."""
    SubscriptionFactory(organization=alice_org, plan=PlanFactory(compute_cents_per_hour="1.0"))
    ModelPrice.objects.create(
        provider="custom",
        model="mock-1",
        input_per_mtok=Decimal("3"),
        output_per_mtok=Decimal("15"),
        effective_from=dt.date(2026, 1, 1),
    )
    bots = {
        "acme-a": "Acme Ltd",
        "acme-b": "Acme Ltd",
        "beta-1": "Beta GmbH",
        "own": "",
    }
    instances = {}
    for name, client in bots.items():
        bot = InstanceFactory(
            organization=alice_org,
            name=name,
            client_name=client,
            status="pending",
            desired_state="running",
            created_at=at(DAY, 1),
        )
        transition_at(bot, "deploying", at(DAY, 8), reason="deploy")
        transition_at(bot, "running", at(DAY, 8, 1), reason="deploy")
        instances[name] = bot
    turns = {"acme-a": 3, "acme-b": 5, "beta-1": 2, "own": 1}
    for i, (name, bot) in enumerate(instances.items()):
        for k, channel in enumerate(("telegram", "webchat")):
            prompt, completion = _conversation_tokens(turns[name] + k)
            SessionFactory(
                instance=bot,
                channel=channel,
                model="mock-1",
                session_key=f"agent:main:{channel}:{name}:{k}",
                input_tokens=prompt,
                output_tokens=completion,
                last_activity_at=at(DAY, 10 + i),
            )
    charlies = InstanceFactory(organization=charlie_org, name="charlie-bot", client_name="Acme Ltd")
    usage.rollup_usage(day=DAY, now=at(DAY + dt.timedelta(days=2), 0))
    nxt = DAY + dt.timedelta(days=1)
    usage.rollup_usage(day=nxt, now=at(DAY + dt.timedelta(days=2), 0))
    UsageDay.objects.create(
        instance=charlies, organization=charlie_org, day=DAY, llm_cost_usd=Decimal("99")
    )
    assert UsageDay.objects.filter(organization=alice_org, day=DAY).count() == 4
    assert SessionUsageDay.objects.filter(organization=alice_org).count() == 8
    return {"from": DAY, "to": nxt, "instances": instances}


def _csv(response) -> list[dict]:
    assert response["Content-Type"].startswith("text/csv")
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def _export(api, period, group_by, fmt="csv"):
    response = api.get(
        f"{EXPORT}?from={period['from']}&to={period['to']}&group_by={group_by}&format={fmt}"
    )
    assert response.status_code == 200, response.content
    return response


def _usage(api, period) -> dict:
    return api.get(f"{USAGE}?from={period['from']}&to={period['to']}").json()


def test_the_per_client_csv_totals_equal_the_usage_api_to_the_cent(api_for, alice_org, period):
    api = api_for(alice_org, ["billing"])
    rows = _csv(_export(api, period, "client"))
    by_client = {r["client"]: r for r in rows}
    assert set(by_client) == {"Acme Ltd", "Beta GmbH", ""}

    expected: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for r in _usage(api, period)["instances"]:
        for key in ("compute_usd", "llm_usd", "total_usd"):
            expected[r["client_name"]][key] += Decimal(r[key])
    for client, sums in expected.items():
        for key, value in sums.items():
            assert Decimal(by_client[client][key]) == value, (client, key)
    # Compute and LLM are separate columns, both non-zero here.
    acme = by_client["Acme Ltd"]
    assert Decimal(acme["compute_usd"]) > 0 and Decimal(acme["llm_usd"]) > 0
    assert Decimal(acme["total_usd"]) == Decimal(acme["compute_usd"]) + Decimal(acme["llm_usd"])


def test_a_session_costs_its_mock_llm_tokens_times_the_price(api_for, alice_org, period):
    rows = _csv(_export(api_for(alice_org, ["billing"]), period, "session"))
    row = next(r for r in rows if r["session_key"] == "agent:main:telegram:acme-b:0")
    prompt, completion = _conversation_tokens(5)
    assert (int(row["input_tokens"]), int(row["output_tokens"])) == (prompt, completion)
    expected = (Decimal(prompt) * 3 + Decimal(completion) * 15) / 1_000_000
    assert Decimal(row["llm_usd"]) == expected.quantize(Decimal("0.000001"))
    assert (row["kind"], row["client"], row["channel"], row["model"]) == (
        "llm",
        "Acme Ltd",
        "telegram",
        "mock-1",
    )


@pytest.mark.parametrize("group_by", GROUPS)
@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_every_grouping_sums_to_the_usage_totals(api_for, alice_org, period, group_by, fmt):
    api = api_for(alice_org, ["billing"])
    totals = _usage(api, period)["totals"]
    response = _export(api, period, group_by, fmt)
    assert f"by-{group_by}.{fmt}" in response["Content-Disposition"]
    if fmt == "csv":
        rows = _csv(response)
    else:
        body = json.loads(b"".join(response.streaming_content))
        rows = body["rows"]
        assert body["columns"][-3:] == ["compute_usd", "llm_usd", "total_usd"]
        assert (body["from"], body["to"], body["group_by"]) == (
            period["from"].isoformat(),
            period["to"].isoformat(),
            group_by,
        )
        for key in ("compute_usd", "llm_usd", "total_usd"):
            assert Decimal(body["totals"][key]) == Decimal(totals[key])
    for key in ("compute_usd", "llm_usd", "total_usd"):
        assert sum(Decimal(r[key]) for r in rows) == Decimal(totals[key]), key
    assert (
        sum(
            int(r[k])
            for r in rows
            for k in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
        )
        == totals["tokens"]
    )
    assert "charlie-bot" not in json.dumps(rows)


def test_grouped_by_channel_each_channel_has_its_llm_and_compute_has_its_own_row(
    api_for, alice_org, period
):
    rows = _csv(_export(api_for(alice_org, ["billing"]), period, "channel"))
    assert [(r["kind"], r["channel"]) for r in rows] == [
        ("llm", "telegram"),
        ("llm", "webchat"),
        ("compute", ""),
    ]
    assert Decimal(rows[2]["llm_usd"]) == 0 and Decimal(rows[2]["compute_usd"]) > 0


def test_to_before_from_is_a_400_with_a_message(api_for, alice_org):
    response = api_for(alice_org, ["billing"]).get(f"{EXPORT}?from=2026-11-10&to=2026-11-01")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["error"]["fields"] == {"from": ["Must be on or before `to`."]}


@pytest.mark.parametrize(
    "query,field",
    [
        ("group_by=tenant", "group_by"),
        ("format=xml", "format"),
        ("format=", "format"),
        ("group_by=", "group_by"),
        ("from=2026-13-01", "from"),
        ("from=2024-01-01&to=2026-01-01", "from"),
    ],
)
def test_bad_export_parameters_are_a_400_naming_the_field(api_for, alice_org, query, field):
    response = api_for(alice_org, ["billing"]).get(f"{EXPORT}?{query}")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid" and list(error["fields"]) == [field]


def test_a_token_without_the_billing_scope_may_not_export(api_for, alice_org):
    assert api_for(alice_org, ["read"]).get(EXPORT).status_code == 403


def test_another_organization_exports_only_its_own_costs(api_for, charlie_org, period):
    rows = _csv(_export(api_for(charlie_org, ["billing"]), period, "instance"))
    assert [r["instance_name"] for r in rows] == ["charlie-bot"]


def test_the_costs_page_offers_the_download_and_serves_it(alice_client, period):
    page = alice_client.get("/billing/costs/")
    assert b'id="costs-export"' in page.content
    response = alice_client.get(
        f"/billing/costs/export/?from={period['from']}&to={period['to']}&group_by=instance"
        "&format=csv"
    )
    assert response.status_code == 200
    names = sorted(r["instance_name"] for r in _csv(response))
    assert names == ["acme-a", "acme-b", "beta-1", "own"]


def test_a_bad_dashboard_export_goes_back_to_the_costs_page_with_the_message(alice_client):
    response = alice_client.get("/billing/costs/export/?from=2026-11-10&to=2026-11-01", follow=True)
    assert response.redirect_chain[-1][0].endswith("/billing/costs/")
    assert "Must be on or before" in response.content.decode()


def _rss_kb() -> int:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_a_year_of_100000_sessions_streams_with_flat_memory(api_for, alice_org):
    """The rows are written in bulk straight into the ledger tables (the rollup is tested
    above); the export of 100,000 sessions streams, and the memory of the process serving it is
    printed at the start, along the way and at the end (not asserted: it depends on the
    machine)."""
    from django.db import connection

    from sessions_mgmt.models import Session

    bot = InstanceFactory(organization=alice_org, name="busy", client_name="Big Client")
    start = dt.date(2025, 12, 1)
    now = timezone.now()
    n = 100_000
    Session.objects.bulk_create(
        (
            Session(
                instance=bot,
                organization=alice_org,
                session_key=f"agent:main:telegram:dm:{i}",
                channel="telegram",
                model="mock-1",
                input_tokens=100,
                output_tokens=10,
                last_activity_at=now,
            )
            for i in range(n)
        ),
        batch_size=5000,
    )
    ids = list(Session.objects.filter(instance=bot).values_list("pk", flat=True))
    SessionUsageDay.objects.bulk_create(
        (
            SessionUsageDay(
                session_id=pk,
                instance=bot,
                organization=alice_org,
                day=start + dt.timedelta(days=i % 365),
                input_tokens=100,
                output_tokens=10,
                llm_cost_usd=Decimal("0.000450"),
            )
            for i, pk in enumerate(ids)
        ),
        batch_size=5000,
    )
    del ids
    UsageDay.objects.bulk_create(
        UsageDay(
            instance=bot,
            organization=alice_org,
            day=start + dt.timedelta(days=d),
            running_seconds=86400,
            compute_cost_usd=Decimal("0.240000"),
            llm_cost_usd=Decimal("0"),  # not used by the session export's LLM rows
        )
        for d in range(365)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE billing_sessionusageday")
    end = start + dt.timedelta(days=364)
    response = api_for(alice_org, ["billing"]).get(
        f"{EXPORT}?from={start}&to={end}&group_by=session&format=csv"
    )
    assert response.status_code == 200
    assert response.streaming
    before = _rss_kb()
    lines = 0
    samples = []
    llm = Decimal(0)
    for chunk in response.streaming_content:
        lines += chunk.count(b"\n")
        if lines and lines % 20_000 == 0:
            samples.append(_rss_kb())
        if chunk.startswith(b"llm,"):
            llm += Decimal(chunk.rsplit(b",", 2)[1].decode())
    after = _rss_kb()
    print(
        f"\n100,000-session export: {lines} lines; RSS of the serving process "
        f"{before / 1024:.1f} MB before, {[f'{s / 1024:.1f}' for s in samples]} MB along, "
        f"{after / 1024:.1f} MB after"
    )
    assert lines == 1 + n + 1  # header, one row per session, one compute row
    assert llm == Decimal("0.000450") * n
