"""Staff edits of plans and prices: the admin saves and deletes through billing.services.catalog,
which validates the row and writes an audit row naming who changed which field, from what to
what."""

import datetime as dt
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db.models import ProtectedError

from accounts.models import AuditEvent
from accounts.services import SYSTEM
from billing.models import ModelPrice, Plan
from billing.services import catalog
from tests.admin.door import sign_in_staff
from tests.factories import UserFactory

from .factories import ModelPriceFactory, PlanFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    user = UserFactory(email="root@clawfleet.test", is_staff=True, is_superuser=True)
    sign_in_staff(client, user)  # through the staff door: allauth login and TOTP
    return user


def _plan_form(plan: Plan, **changes) -> dict:
    data = {
        f: getattr(plan, f)
        for f in (
            "name",
            "slug",
            "description",
            "sort_order",
            "monthly_price_cents",
            "first_month_price_cents",
            "stripe_price_id",
            "stripe_first_month_coupon_id",
            "max_instances",
            "max_memory_mb",
            "max_cpus",
            "session_idle_days",
            "session_max_count",
            "backup_daily_retention",
            "backup_weekly_retention",
            "included_llm_credit_cents",
            "compute_cents_per_hour",
        )
    }
    data["is_active"] = "on" if plan.is_active else ""
    data.update(changes)
    return {k: v for k, v in data.items() if v != ""}


def test_a_staff_price_change_in_the_admin_is_audited_with_old_and_new_value(client, staff):
    plan = PlanFactory(slug="audited", monthly_price_cents=1900)
    response = client.post(
        f"/admin/billing/plan/{plan.pk}/change/", _plan_form(plan, monthly_price_cents=2900)
    )
    assert response.status_code == 302, response.content[:2000]
    plan.refresh_from_db()
    assert plan.monthly_price_cents == 2900
    event = AuditEvent.objects.get(action="plan.changed")
    assert event.actor == staff
    assert (event.target_type, event.target_id) == ("Plan", str(plan.pk))
    assert event.data == {"via": "admin", "changes": {"monthly_price_cents": [1900, 2900]}}
    assert event.ip == "127.0.0.1"


def test_a_plan_added_and_deleted_in_the_admin_is_audited(client, staff):
    template = Plan(
        name="Team",
        slug="team",
        monthly_price_cents=9900,
        max_instances=5,
        max_memory_mb=4096,
        max_cpus=Decimal("2"),
    )
    response = client.post("/admin/billing/plan/add/", _plan_form(template))
    assert response.status_code == 302, response.content[:2000]
    plan = Plan.objects.get(slug="team")
    created = AuditEvent.objects.get(action="plan.created")
    assert created.actor == staff
    assert created.data["changes"]["monthly_price_cents"] == [None, 9900]
    assert created.data["changes"]["max_cpus"] == [None, "2.00"]

    response = client.post(f"/admin/billing/plan/{plan.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Plan.objects.filter(pk=plan.pk).exists()
    deleted = AuditEvent.objects.get(action="plan.deleted")
    assert deleted.actor == staff and deleted.target_id == str(plan.pk)
    assert deleted.data["values"]["slug"] == "team"


def test_the_changelist_edit_of_a_plan_is_audited_too(client, staff):
    plan = PlanFactory(slug="listed", is_active=True, sort_order=3)
    data = {
        "form-TOTAL_FORMS": "1",
        "form-INITIAL_FORMS": "1",
        "form-0-id": str(plan.pk),
        "form-0-sort_order": "7",
        "_save": "Save",
    }  # is_active left out: unchecked
    response = client.post("/admin/billing/plan/?q=listed", data)
    assert response.status_code == 302, response.content[:2000]
    event = AuditEvent.objects.get(action="plan.changed")
    assert event.data["changes"] == {"is_active": [True, False], "sort_order": [3, 7]}


def test_a_model_price_edit_is_audited(client, staff):
    price = ModelPriceFactory(
        model="gpt-x", input_per_mtok=Decimal("1.00"), effective_from=dt.date(2026, 1, 1)
    )
    response = client.post(
        f"/admin/billing/modelprice/{price.pk}/change/",
        {
            "provider": price.provider,
            "model": price.model,
            "input_per_mtok": "1.5",
            "output_per_mtok": price.output_per_mtok,
            "cache_read_per_mtok": price.cache_read_per_mtok,
            "cache_write_per_mtok": price.cache_write_per_mtok,
            "effective_from": price.effective_from.isoformat(),
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    event = AuditEvent.objects.get(action="model_price.changed")
    assert event.actor == staff
    assert event.data["changes"] == {"input_per_mtok": ["1.0000", "1.5000"]}


def test_a_bulk_delete_of_prices_audits_each_row(client, staff):
    prices = [ModelPriceFactory(), ModelPriceFactory()]
    response = client.post(
        "/admin/billing/modelprice/",
        {
            "action": "delete_selected",
            "_selected_action": [p.pk for p in prices],
            "post": "yes",
        },
    )
    assert response.status_code == 302
    assert not ModelPrice.objects.filter(pk__in=[p.pk for p in prices]).exists()
    assert sorted(
        AuditEvent.objects.filter(action="model_price.deleted").values_list("target_id", flat=True)
    ) == sorted(str(p.pk) for p in prices)


def test_saving_without_a_change_writes_no_audit_row():
    plan = PlanFactory(slug="same")
    assert catalog.plan_save(actor=SYSTEM, plan=Plan.objects.get(pk=plan.pk)) == {}
    assert not AuditEvent.objects.filter(action__startswith="plan.").exists()


def test_the_service_validates_like_the_form():
    plan = PlanFactory(slug="valid")
    plan.max_cpus = Decimal("123.456")
    with pytest.raises(ValidationError) as exc:
        catalog.plan_save(actor=SYSTEM, plan=plan)
    assert "max_cpus" in exc.value.message_dict
    assert not AuditEvent.objects.exists()
    twin = ModelPrice(
        provider="custom",
        model="mock-1",
        input_per_mtok=1,
        output_per_mtok=1,
        effective_from=ModelPrice.objects.get(provider="custom", model="mock-1").effective_from,
    )
    with pytest.raises(ValidationError):
        catalog.model_price_save(actor=SYSTEM, price=twin)


def test_a_subscribed_plan_cannot_be_deleted_and_nothing_is_audited(alice_org):
    plan = PlanFactory(slug="held")
    SubscriptionFactory(organization=alice_org, plan=plan)
    with pytest.raises(ProtectedError):
        catalog.plan_delete(actor=SYSTEM, plan=plan)
    assert Plan.objects.filter(pk=plan.pk).exists()
    assert not AuditEvent.objects.filter(action="plan.deleted").exists()


def test_dates_are_recorded_as_text():
    price = ModelPriceFactory(effective_from=dt.date(2026, 1, 1))
    price.effective_from = dt.date(2026, 2, 1)
    changes = catalog.model_price_save(actor=SYSTEM, price=price)
    assert changes == {"effective_from": ["2026-01-01", "2026-02-01"]}
