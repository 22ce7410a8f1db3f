"""The usage rollup, the cost ledger, selectors, LLM overage meter events and budgets."""

import datetime as dt
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from billing import selectors
from billing.models import BillingPause, Budget, MeterReport, SessionUsageDay, UsageDay
from billing.services import budgets, overage, usage
from instances import state
from instances.models import Instance, InstanceEvent, Operation

from .factories import (
    BudgetFactory,
    InstanceFactory,
    PlanFactory,
    SessionFactory,
    SubscriptionFactory,
)

pytestmark = pytest.mark.django_db

DAY = dt.date(2026, 11, 10)


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt.UTC)


def _op(instance, kind, *, state="succeeded", started=None, finished=None):
    return Operation.objects.create(
        instance=instance,
        organization=instance.organization,
        kind=kind,
        state=state,
        created_at=started or finished,
        started_at=started,
        finished_at=finished,
    )


def transition_at(instance, to, when, **kwargs):
    """Drive the status through the state machine, then date its event row at `when` (the
    transition happened then; the clock of the test is today)."""
    assert state.transition(instance, to, **kwargs)
    latest = InstanceEvent.objects.filter(instance=instance, kind=state.TRANSITION_EVENT)
    InstanceEvent.objects.filter(pk=latest.order_by("-id").values("pk")[:1]).update(created_at=when)


@pytest.fixture
def commit(django_capture_on_commit_callbacks):
    """commit(execute=True): run the block's on_commit callbacks (emails) as a commit would."""
    return django_capture_on_commit_callbacks


@pytest.fixture
def org(alice_org):
    SubscriptionFactory(organization=alice_org, plan=PlanFactory(compute_cents_per_hour="1.0"))
    return alice_org


def test_running_time_comes_from_the_recorded_transitions(org):
    bot = InstanceFactory(
        organization=org, status="pending", desired_state="stopped", created_at=at(DAY, 9)
    )
    transition_at(bot, "deploying", at(DAY, 9, 55), reason="deploy")
    transition_at(bot, "running", at(DAY, 10), reason="deploy")
    transition_at(bot, "stopping", at(DAY, 14), reason="stop")
    transition_at(bot, "stopped", at(DAY, 14, 1), reason="stop")
    transition_at(bot, "starting", at(DAY, 22), reason="start")
    transition_at(bot, "running", at(DAY, 22, 1), reason="start")
    _op(bot, "backup", started=at(DAY, 23), finished=at(DAY, 23, 5))  # not a transition
    usage.rollup_usage(day=DAY, now=at(DAY + dt.timedelta(days=3), 0))
    row = UsageDay.objects.get(instance=bot, day=DAY)
    assert row.running_seconds == 4 * 3600 + 2 * 3600  # 10-14h, then 22-24h
    assert row.compute_cost_usd == Decimal("0.060000")  # 6 h at 1 cent


def test_a_crash_loop_found_by_the_reconcile_loop_stops_the_compute_clock(org):
    """Deployed at 10:00, crash-looping from 11:00 (the reconcile loop found it: no Operation):
    the day costs one hour of compute, not the fourteen up to midnight."""
    bot = InstanceFactory(
        organization=org, status="pending", desired_state="running", created_at=at(DAY, 9)
    )
    deploy = _op(bot, "deploy", started=at(DAY, 9, 55), finished=at(DAY, 10))
    transition_at(bot, "deploying", at(DAY, 9, 55), reason="deploy", operation=deploy)
    transition_at(bot, "running", at(DAY, 10), reason="deploy", operation=deploy)
    transition_at(bot, "crash_looping", at(DAY, 11), reason="reconcile: restarting in a loop")
    usage.rollup_usage(day=DAY, now=at(DAY + dt.timedelta(days=1), 3))
    row = UsageDay.objects.get(instance=bot, day=DAY)
    assert row.running_seconds == 3600
    assert row.compute_cost_usd == Decimal("0.010000")  # 1 h at 1 cent


def test_an_instance_running_since_before_the_day_counts_the_whole_day(org):
    bot = InstanceFactory(
        organization=org, status="pending", created_at=at(DAY, 0) - dt.timedelta(days=90)
    )
    since = at(DAY, 0) - dt.timedelta(days=40)
    transition_at(bot, "deploying", since - dt.timedelta(minutes=1), reason="deploy")
    transition_at(bot, "running", since, reason="deploy")
    usage.rollup_usage(day=DAY, now=at(DAY + dt.timedelta(days=1), 6))
    assert UsageDay.objects.get(instance=bot, day=DAY).running_seconds == 86400
    # Today only counts up to now.
    usage.rollup_usage(day=DAY + dt.timedelta(days=1), now=at(DAY + dt.timedelta(days=1), 6))
    assert UsageDay.objects.get(instance=bot, day=DAY + dt.timedelta(days=1)).running_seconds == (
        6 * 3600
    )


def test_tokens_are_attributed_to_the_day_they_were_used(org):
    bot = InstanceFactory(organization=org, status="stopped", created_at=at(DAY, 0))
    session = SessionFactory(
        instance=bot,
        input_tokens=100_000,
        output_tokens=10_000,
        cache_read_tokens=50_000,
        cache_write_tokens=1_000,
        last_activity_at=at(DAY, 15),
    )
    usage.rollup_usage(day=DAY, now=at(DAY, 16))
    first = UsageDay.objects.get(instance=bot, day=DAY)
    assert (first.input_tokens, first.output_tokens) == (100_000, 10_000)
    # mock-1: 100000*3 + 10000*15 + 50000*0.3 + 1000*3.75 = 468750 per million
    assert first.llm_cost_usd == Decimal("0.468750")

    # The conversation goes on the next day: only the new tokens belong to that day.
    session.input_tokens, session.output_tokens = 300_000, 20_000
    session.last_activity_at = at(DAY + dt.timedelta(days=1), 9)
    session.save()
    nxt = DAY + dt.timedelta(days=1)
    usage.rollup_usage(day=DAY, now=at(nxt, 10))  # yesterday again: unchanged
    usage.rollup_usage(day=nxt, now=at(nxt, 10))
    assert UsageDay.objects.get(instance=bot, day=DAY).input_tokens == 100_000
    second = UsageDay.objects.get(instance=bot, day=nxt)
    assert (second.input_tokens, second.output_tokens, second.cache_read_tokens) == (
        200_000,
        10_000,
        0,
    )
    assert second.llm_cost_usd == Decimal("0.750000")  # 200000*3 + 10000*15
    assert SessionUsageDay.objects.filter(session=session).count() == 2


def test_the_rollup_is_idempotent(org):
    bot = InstanceFactory(organization=org, status="pending", created_at=at(DAY, 0))
    transition_at(bot, "deploying", at(DAY, 7, 59), reason="deploy")
    transition_at(bot, "running", at(DAY, 8), reason="deploy")
    SessionFactory(instance=bot, input_tokens=5000, output_tokens=700, last_activity_at=at(DAY, 9))
    now = at(DAY + dt.timedelta(days=1), 3)
    usage.rollup_usage(day=DAY, now=now)
    snapshot = list(UsageDay.objects.values())
    usage.rollup_usage(day=DAY, now=now)
    again = list(UsageDay.objects.values())
    strip = [{k: v for k, v in r.items() if k != "updated_at"} for r in snapshot]
    assert strip == [{k: v for k, v in r.items() if k != "updated_at"} for r in again]
    assert UsageDay.objects.count() == 1


def test_month_to_date_and_daily_selectors_are_scoped_to_the_organization(org, charlie_org):
    bot = InstanceFactory(organization=org, name="alpha")
    other = InstanceFactory(organization=charlie_org, name="charlies")
    for d, llm in ((dt.date(2026, 10, 31), "9"), (dt.date(2026, 11, 1), "1.5"), (DAY, "2.25")):
        UsageDay.objects.create(
            instance=bot,
            organization=org,
            day=d,
            llm_cost_usd=Decimal(llm),
            compute_cost_usd=Decimal("0.24"),
            running_seconds=86400,
            input_tokens=10,
        )
    UsageDay.objects.create(
        instance=other, organization=charlie_org, day=DAY, llm_cost_usd=Decimal("100")
    )
    totals = selectors.month_to_date_for_organization(organization=org, today=DAY)
    assert totals["llm_usd"] == Decimal("3.75")
    assert totals["total_usd"] == Decimal("4.23")
    assert totals["tokens"] == 20
    assert selectors.month_to_date_for_instance(instance=bot, today=DAY)["total_usd"] == Decimal(
        "4.23"
    )
    rows = list(selectors.month_to_date_by_instance(organization=org, today=DAY))
    assert [r["instance__name"] for r in rows] == ["alpha"]
    daily = selectors.daily_costs(organization=org, start=dt.date(2026, 11, 1), end=DAY)
    assert len(daily) == 10
    assert daily[0]["total_usd"] == Decimal("1.74") and daily[1]["total_usd"] == 0
    assert (
        selectors.daily_costs(organization=org, instance=other, start=DAY, end=DAY)[0]["total_usd"]
        == 0
    )


def test_llm_usage_beyond_the_credit_is_reported_once_per_org_and_day(org, recording_stripe):
    sub = org.subscription
    sub.plan.included_llm_credit_cents = 500
    sub.plan.save()
    bot = InstanceFactory(organization=org)
    UsageDay.objects.create(
        instance=bot,
        organization=org,
        day=DAY - dt.timedelta(days=1),
        llm_cost_usd=Decimal("4.00"),
    )
    UsageDay.objects.create(instance=bot, organization=org, day=DAY, llm_cost_usd=Decimal("3.004"))
    assert overage.overage_cents(organization_id=org.pk, credit_cents=500, day=DAY) == 200
    assert overage.report_overage(day=DAY) == 1
    report = MeterReport.objects.get()
    assert report.identifier == f"clawfleet-llm-{org.pk}-2026-11-10"
    assert report.value_cents == 200 and report.reported_at is not None
    sent = [r for r in recording_stripe if r["path"] == "/v1/billing/meter_events"]
    assert len(sent) == 1
    assert sent[0]["params"] == {
        "event_name": "clawfleet_llm_overage_cents",
        "identifier": report.identifier,
        "payload[stripe_customer_id]": sub.stripe_customer_id,
        "payload[value]": "200",
    }
    assert sent[0]["idempotency_key"] == report.identifier
    # Again: nothing new is sent.
    assert overage.report_overage(day=DAY) == 0
    assert len([r for r in recording_stripe if r["path"] == "/v1/billing/meter_events"]) == 1


def test_a_budget_alerts_at_80_percent_once_a_month(org, commit):
    org.billing_email = "money@alice.example"
    org.save()
    bot = InstanceFactory(organization=org)
    BudgetFactory(organization=org, monthly_cap_usd=Decimal("10"))
    UsageDay.objects.create(instance=bot, organization=org, day=DAY, llm_cost_usd=Decimal("8.5"))
    with commit(execute=True):
        assert budgets.check_budgets(day=DAY)["alerted_80"] == 1
    with commit(execute=True):
        assert budgets.check_budgets(day=DAY)["alerted_80"] == 0
    assert len(mail.outbox) == 1 and "80 %" in mail.outbox[0].subject
    assert mail.outbox[0].to == ["money@alice.example"]


def test_a_notify_budget_at_100_percent_emails_and_stops_nothing(org, commit):
    org.billing_email = "money@alice.example"
    org.save()
    bot = InstanceFactory(organization=org)
    BudgetFactory(organization=org, instance=bot, monthly_cap_usd=Decimal("5"))
    UsageDay.objects.create(instance=bot, organization=org, day=DAY, llm_cost_usd=Decimal("5"))
    with commit(execute=True):
        assert budgets.check_budgets(day=DAY)["alerted_100"] == 1
    assert len(mail.outbox) == 1 and "Budget reached" in mail.outbox[0].subject
    assert not Operation.objects.exists()


def test_a_pause_budget_pauses_the_instance_after_a_backup_once_a_month(org, commit):
    bot = InstanceFactory(organization=org, name="spender")
    calm = InstanceFactory(organization=org, name="calm")
    budget = BudgetFactory(
        organization=org, instance=bot, monthly_cap_usd=Decimal("5"), action=Budget.Action.PAUSE
    )
    UsageDay.objects.create(instance=bot, organization=org, day=DAY, llm_cost_usd=Decimal("6"))
    with commit(execute=True):
        result = budgets.check_budgets(day=DAY)
    assert result["paused"] == 1
    op = Operation.objects.get()
    assert (op.instance, op.kind) == (bot, Operation.Kind.PAUSE)
    assert "budget" in op.params["reason"].lower()
    assert BillingPause.objects.get(instance=bot).month == "2026-11"
    assert not Operation.objects.filter(instance=calm).exists()
    # Someone resumes it the same month: the budget does not pause it a second time.
    Operation.objects.update(state="succeeded")
    Instance.objects.filter(pk=bot.pk).update(status="running", desired_state="running")
    Budget.objects.filter(pk=budget.pk).update(alerted_100_month="")
    with commit(execute=True):
        assert budgets.check_budgets(day=DAY)["paused"] == 0
    assert Operation.objects.count() == 1


def test_the_hourly_task_rolls_up_yesterday_and_today(org, monkeypatch):
    from billing import tasks

    seen = []
    monkeypatch.setattr(usage, "rollup_usage", lambda *, day: seen.append(day) or 0)
    tasks.rollup_usage()
    today = timezone.localdate()
    assert seen == [today - dt.timedelta(days=1), today]
