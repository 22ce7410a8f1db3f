"""Dashboard: plans, checkout (never trusting the form), portal, costs, budgets; tenancy."""

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from billing.models import Budget, Plan, Subscription, UsageDay

from .factories import BudgetFactory, InstanceFactory, PlanFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def pro():
    plan = Plan.objects.get(slug="pro")
    plan.stripe_price_id = "price_pro_monthly"
    plan.save()
    return plan


def _posts(recorded, path):
    return [r for r in recorded if r["method"] == "POST" and r["path"] == path]


def test_the_plans_page_offers_each_plan_for_1_dollar(alice_client):
    response = alice_client.get("/billing/")
    assert response.status_code == 200
    body = response.content.decode()
    assert body.count("Start for $1") >= 3
    assert 'name="plan" value="pro"' in body
    assert "$49" in body


def test_checkout_uses_our_price_and_a_first_month_coupon(
    alice_client, alice_org, pro, recording_stripe
):
    response = alice_client.post("/billing/checkout/", {"plan": "pro"})
    assert response.status_code == 302
    assert response["Location"] == "https://checkout.stripe.test/c/pay/cs_test_recorded"

    coupon = _posts(recording_stripe, "/v1/coupons")[0]["params"]
    assert coupon == {
        "id": "clawfleet-pro-first-month-4800",
        "amount_off": "4800",
        "currency": "usd",
        "duration": "once",
        "metadata[plan]": "pro",
    }
    session = _posts(recording_stripe, "/v1/checkout/sessions")[0]
    p = session["params"]
    assert p["mode"] == "subscription"
    assert p["line_items[0][price]"] == "price_pro_monthly"
    assert p["line_items[0][quantity]"] == "1"
    assert p["discounts[0][coupon]"] == "clawfleet-pro-first-month-4800"
    assert p["client_reference_id"] == str(alice_org.pk)
    assert p["customer"] == "cus_recorded"
    assert p["subscription_data[metadata][organization_id]"] == str(alice_org.pk)
    assert p["success_url"].endswith("/billing/checkout/success/?session_id={CHECKOUT_SESSION_ID}")
    assert session["stripe_version"] == "2026-10-28.endive"
    # The customer is remembered; the subscription starts only with Stripe's webhook.
    sub = Subscription.objects.get(organization=alice_org)
    assert sub.stripe_customer_id == "cus_recorded"
    assert sub.status == Subscription.Status.NONE and sub.plan is None


def test_a_tampered_checkout_form_cannot_choose_the_price(alice_client, pro, recording_stripe):
    alice_client.post(
        "/billing/checkout/",
        {
            "plan": "pro",
            "price": "price_evil",
            "stripe_price_id": "price_evil",
            "line_items[0][price]": "price_evil",
            "amount": "1",
            "coupon": "FREE_FOREVER",
            "discounts[0][coupon]": "FREE_FOREVER",
        },
    )
    everything = " ".join(r["raw"] for r in recording_stripe)
    assert "price_evil" not in everything and "FREE_FOREVER" not in everything
    p = _posts(recording_stripe, "/v1/checkout/sessions")[0]["params"]
    assert p["line_items[0][price]"] == "price_pro_monthly"


@pytest.mark.parametrize("slug", ["", "nope", "retired"])
def test_an_unknown_or_retired_plan_is_refused_without_calling_stripe(
    alice_client, recording_stripe, slug
):
    PlanFactory(slug="retired", is_active=False)
    response = alice_client.post("/billing/checkout/", {"plan": slug}, follow=True)
    assert response.redirect_chain[-1][0] == "/billing/"
    assert "Choose one of the plans" in response.content.decode()
    assert recording_stripe == []


def test_a_plan_without_a_stripe_price_is_not_on_sale_yet(alice_client, recording_stripe):
    Plan.objects.filter(slug="starter").update(stripe_price_id="")
    response = alice_client.post("/billing/checkout/", {"plan": "starter"}, follow=True)
    assert "not on sale yet" in response.content.decode()
    assert _posts(recording_stripe, "/v1/checkout/sessions") == []


def test_members_and_viewers_cannot_start_checkout(client, bob, victor, pro, recording_stripe):
    for user in (bob, victor):
        client.force_login(user)
        assert client.post("/billing/checkout/", {"plan": "pro"}).status_code == 403
        assert client.post("/billing/portal/").status_code == 403
        assert client.get("/billing/budgets/").status_code == 403
    assert recording_stripe == []


def test_an_organization_with_a_plan_changes_it_in_the_portal(
    alice_client, alice_org, pro, recording_stripe
):
    SubscriptionFactory(organization=alice_org, plan=pro, stripe_customer_id="cus_alice")
    response = alice_client.post("/billing/checkout/", {"plan": "pro"}, follow=True)
    assert "billing portal" in response.content.decode()
    assert _posts(recording_stripe, "/v1/checkout/sessions") == []

    response = alice_client.post("/billing/portal/")
    assert response["Location"] == "https://billing.stripe.test/p/session/recorded"
    portal = _posts(recording_stripe, "/v1/billing_portal/sessions")[0]["params"]
    assert portal == {"customer": "cus_alice", "return_url": "http://testserver/billing/"}


def test_the_success_page_does_not_activate_anything(alice_client, alice_org):
    response = alice_client.get("/billing/checkout/success/?session_id=cs_forged")
    assert response.status_code == 200
    assert "confirming" in response.content.decode()
    assert not Subscription.objects.filter(organization=alice_org, status="active").exists()
    assert alice_client.get("/billing/checkout/cancel/").status_code == 200


def test_the_costs_page_shows_this_month_and_a_local_chart(alice_client, alice_org, charlie_org):
    today = timezone.localdate()
    mine = InstanceFactory(organization=alice_org, name="alice-bot")
    theirs = InstanceFactory(organization=charlie_org, name="charlie-secret-bot")
    UsageDay.objects.create(
        instance=mine,
        organization=alice_org,
        day=today,
        llm_cost_usd=Decimal("1.25"),
        compute_cost_usd=Decimal("0.24"),
        running_seconds=86400,
    )
    UsageDay.objects.create(
        instance=theirs, organization=charlie_org, day=today, llm_cost_usd=Decimal("99")
    )
    body = alice_client.get("/billing/costs/").content.decode()
    assert "alice-bot" in body and "$1.49" in body
    assert "charlie-secret-bot" not in body and "99.00" not in body
    assert "/static/js/chart-4.6.1.umd.min.js" in body
    assert "cdn" not in body.lower()


def test_the_costs_page_is_empty_before_any_usage(alice_client):
    body = alice_client.get("/billing/costs/").content.decode()
    assert "No usage yet" in body and "chart-4.6.1" not in body


def test_budget_form_shows_errors_inline_and_saves(alice_client, alice_org, charlie_org):
    mine = InstanceFactory(organization=alice_org, name="alice-bot")
    theirs = InstanceFactory(organization=charlie_org)
    response = alice_client.post(
        "/billing/budgets/", {"monthly_cap_usd": "0", "action": "pause", "instance": ""}
    )
    assert response.status_code == 200
    assert 'class="field field-error"' in response.content.decode()
    assert not Budget.objects.exists()

    response = alice_client.post(
        "/billing/budgets/", {"monthly_cap_usd": "20", "action": "pause", "instance": theirs.pk}
    )
    assert response.status_code == 200 and not Budget.objects.exists()

    response = alice_client.post(
        "/billing/budgets/", {"monthly_cap_usd": "20", "action": "pause", "instance": mine.pk}
    )
    assert response.status_code == 302
    budget = Budget.objects.get()
    assert (budget.organization, budget.instance, budget.monthly_cap_usd) == (
        alice_org,
        mine,
        Decimal("20"),
    )


def test_nobody_removes_another_organizations_budget(alice_client, charlie_org):
    budget = BudgetFactory(organization=charlie_org)
    assert alice_client.post(f"/billing/budgets/{budget.pk}/delete/").status_code == 404
    assert Budget.objects.filter(pk=budget.pk).exists()


def test_staff_admin_pages_for_billing_load(client, alice_org):
    from accounts.models import User
    from tests.admin.door import sign_in_staff

    admin = User.objects.create_superuser("staff@example.com", "correct-horse-battery")
    sign_in_staff(client, admin)  # through the staff door: allauth login and TOTP
    SubscriptionFactory(organization=alice_org)
    UsageDay.objects.create(
        instance=InstanceFactory(organization=alice_org),
        organization=alice_org,
        day=dt.date(2026, 11, 1),
    )
    for model in (
        "plan",
        "subscription",
        "stripeevent",
        "usageday",
        "modelprice",
        "budget",
        "meterreport",
        "billingpause",
        "sessionusageday",
    ):
        assert client.get(f"/admin/billing/{model}/").status_code == 200, model
    assert client.get("/admin/billing/subscription/add/").status_code == 403


def test_the_first_month_is_once_per_person_not_per_organization(
    alice_client, alice, alice_org, pro, recording_stripe
):
    """alice had the $1 month in her first organization; in a second one she makes, the plans
    page offers no $1 month and the checkout we ask Stripe for carries no discount."""
    from accounts.models import Membership, Organization, Role
    from billing.models import FirstMonthClaim

    FirstMonthClaim.objects.create(user=alice, organization=alice_org, plan=pro)
    second = Organization.objects.create(name="Alice Two", slug="alice-two")
    Membership.objects.create(user=alice, organization=second, role=Role.OWNER)
    session = alice_client.session
    session["current_org_id"] = second.pk
    session.save()

    body = alice_client.get("/billing/").content.decode()
    assert "Start for $1</button>" not in body and "$1 the first month" not in body
    assert "Subscribe</button>" in body and "once per person" in body
    response = alice_client.post("/billing/checkout/", {"plan": "pro"})
    assert response.status_code == 302
    p = _posts(recording_stripe, "/v1/checkout/sessions")[-1]["params"]
    assert p["client_reference_id"] == str(second.pk)
    assert not any(key.startswith("discounts") for key in p)
    assert "metadata[first_month]" not in p
    assert not _posts(recording_stripe, "/v1/coupons")
