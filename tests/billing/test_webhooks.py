"""Stripe webhooks: verified, stored by id, processed once, order-independent."""

import json
import time

import pytest
from django.core import mail

from accounts.models import AuditEvent
from billing import stripe_api, tasks
from billing.models import StripeEvent, Subscription

from .conftest import live_subscription, make_event, sign
from .factories import PlanFactory

pytestmark = pytest.mark.django_db


def _sub_obj(sub_id, customer, *, status, org=None, price="", created=None):
    return {
        "id": sub_id,
        "object": "subscription",
        "customer": customer,
        "status": status,
        "cancel_at_period_end": False,
        "metadata": {"organization_id": str(org.pk)} if org else {},
        "items": {
            "object": "list",
            "data": [{"id": "si_1", "price": {"id": price}, "current_period_end": 1893456000}],
        },
        "created": created or int(time.time()),
    }


def test_a_bad_signature_is_a_400_and_nothing_is_stored(client, enqueued):
    event = make_event("invoice.paid", {"id": "in_1", "object": "invoice"})
    payload = json.dumps(event)
    for header in (
        sign(payload, secret="whsec_someone_else"),
        sign(payload + " "),  # signed another body
        "",
        "garbage",
        sign(payload, timestamp=int(time.time()) - 3600),  # replayed: outside the tolerance
    ):
        response = client.post(
            "/billing/webhook/",
            data=payload,
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE=header,
        )
        assert response.status_code == 400
    assert StripeEvent.objects.count() == 0
    assert enqueued["process_stripe_event"] == []


def test_a_tampered_body_with_a_valid_old_signature_is_refused(client):
    event = make_event("invoice.paid", {"id": "in_1", "object": "invoice"})
    payload = json.dumps(event)
    header = sign(payload)
    tampered = payload.replace("in_1", "in_2")
    response = client.post(
        "/billing/webhook/",
        data=tampered,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=header,
    )
    assert response.status_code == 400
    assert not StripeEvent.objects.exists()


def test_the_webhook_only_accepts_post(client):
    assert client.get("/billing/webhook/").status_code == 405


def test_the_same_event_twice_is_stored_once_and_processed_once(
    post_event, enqueued, django_capture_on_commit_callbacks, alice_org
):
    plan = PlanFactory()
    live = live_subscription(alice_org, plan)
    event = make_event("customer.subscription.updated", live)
    with django_capture_on_commit_callbacks(execute=True):
        first = post_event(event)
    with django_capture_on_commit_callbacks(execute=True):
        second = post_event(event)
    assert first.status_code == 200 and second.status_code == 200
    assert StripeEvent.objects.filter(event_id=event["id"]).count() == 1
    stored = StripeEvent.objects.get(event_id=event["id"])
    assert enqueued["process_stripe_event"] == [stored.pk]

    # A redelivered task (or two workers at once) applies it once.
    assert tasks.process_stripe_event(stored.pk) == "processed"
    assert tasks.process_stripe_event(stored.pk) == "already"
    stored.refresh_from_db()
    assert stored.state == StripeEvent.State.PROCESSED and stored.processed_at
    assert AuditEvent.objects.filter(action="subscription.changed").count() == 1
    sub = Subscription.objects.get(organization=alice_org)
    assert sub.stripe_subscription_id == live["id"]
    assert sub.status == Subscription.Status.ACTIVE


def test_an_event_of_a_type_we_do_not_handle_is_stored_and_ignored(post_event, enqueued):
    event = make_event("customer.created", {"id": "cus_x", "object": "customer"})
    assert post_event(event).status_code == 200
    stored = StripeEvent.objects.get(event_id=event["id"])
    assert tasks.process_stripe_event(stored.pk) == "ignored"
    stored.refresh_from_db()
    assert stored.state == StripeEvent.State.IGNORED


@pytest.mark.parametrize("same_second", [True, False])
def test_subscription_deleted_arriving_before_created_ends_canceled(
    post_event, enqueued, alice_org, same_second
):
    """Stripe does not know this subscription (404 on re-fetch): payloads and `created` decide."""
    plan = PlanFactory()
    now = int(time.time())
    created_at, deleted_at = (now, now) if same_second else (now - 60, now)
    obj = _sub_obj(
        "sub_order", "cus_order", status="active", org=alice_org, price=plan.stripe_price_id
    )
    created = make_event("customer.subscription.created", obj, created=created_at)
    deleted = make_event(
        "customer.subscription.deleted", {**obj, "status": "canceled"}, created=deleted_at
    )
    post_event(deleted)
    post_event(created)
    for event in (deleted, created):  # processed in arrival order: deleted first
        tasks.process_stripe_event(StripeEvent.objects.get(event_id=event["id"]).pk)
    sub = Subscription.objects.get(organization=alice_org)
    assert sub.status == Subscription.Status.CANCELED
    assert sub.stripe_subscription_id == "sub_order"
    assert sub.plan == plan
    assert sub.stripe_event_created == deleted_at


def test_deleted_before_created_with_stripe_refetch_ends_canceled(post_event, enqueued, alice_org):
    """The subscription exists in (local)Stripe: both handlers re-fetch it, Stripe's state wins."""
    plan = PlanFactory()
    c = stripe_api.client()
    live = live_subscription(alice_org, plan)
    canceled = c.v1.subscriptions.cancel(live["id"]).to_dict()
    # The created event is newer here than the deleted one: only the re-fetch gets it right.
    deleted = make_event("customer.subscription.deleted", canceled, created=int(time.time()) - 5)
    created = make_event("customer.subscription.created", live, created=int(time.time()))
    post_event(deleted)
    post_event(created)
    for event in (deleted, created):
        tasks.process_stripe_event(StripeEvent.objects.get(event_id=event["id"]).pk)
    sub = Subscription.objects.get(organization=alice_org)
    assert sub.status == Subscription.Status.CANCELED
    assert sub.plan == plan


def test_a_subscription_stripe_does_not_know_never_grants_a_plan(post_event, enqueued, alice_org):
    """A forged or unknown subscription id: whatever the event says (active, paid checkout,
    our organization's id in its metadata), Stripe answers 404 and nothing is granted."""
    plan = PlanFactory()
    forged = _sub_obj(
        "sub_forged", "cus_forged", status="active", org=alice_org, price=plan.stripe_price_id
    )
    checkout = {
        "id": "cs_forged",
        "object": "checkout.session",
        "mode": "subscription",
        "client_reference_id": str(alice_org.pk),
        "customer": "cus_forged",
        "subscription": "sub_forged_too",
        "payment_status": "paid",
        "metadata": {"organization_id": str(alice_org.pk), "plan": plan.slug},
    }
    for event in (
        make_event("customer.subscription.created", forged),
        make_event("customer.subscription.updated", forged),
        make_event("checkout.session.completed", checkout),
    ):
        post_event(event)
        tasks.process_stripe_event(StripeEvent.objects.get(event_id=event["id"]).pk)
    sub = Subscription.objects.filter(organization=alice_org).first()
    assert sub is None or (not sub.is_entitled and sub.stripe_subscription_id == "")
    assert not AuditEvent.objects.filter(action="subscription.changed").exists()


def test_another_customers_real_subscription_pays_for_nothing_here(
    post_event, enqueued, alice_org, charlie_org
):
    plan = PlanFactory()
    charlies = live_subscription(charlie_org, plan)
    from billing.services import subscriptions

    subscriptions.customer_ensure(organization=alice_org)
    # An event naming alice's organization but carrying charlie's (real) subscription.
    event = make_event(
        "customer.subscription.updated",
        {**charlies, "metadata": {"organization_id": str(alice_org.pk)}, "customer": "cus_x"},
    )
    post_event(event)
    tasks.process_stripe_event(StripeEvent.objects.get(event_id=event["id"]).pk)
    alices = Subscription.objects.get(organization=alice_org)
    assert not alices.is_entitled and alices.stripe_subscription_id == ""


def test_checkout_completed_links_the_customer_and_subscription_and_uses_up_the_first_month(
    post_event, enqueued, alice_org, alice
):
    from billing.models import FirstMonthClaim
    from billing.rules import first_month_offered

    plan = PlanFactory()
    assert first_month_offered(organization=alice_org, user=alice)
    live = live_subscription(alice_org, plan)
    session = {
        "id": "cs_1",
        "object": "checkout.session",
        "mode": "subscription",
        "client_reference_id": str(alice_org.pk),
        "customer": live["customer"],
        "subscription": live["id"],
        "payment_status": "paid",
        "metadata": {
            "organization_id": str(alice_org.pk),
            "plan": plan.slug,
            "first_month": "1",
            "user_id": str(alice.pk),
        },
    }
    event = make_event("checkout.session.completed", session)
    post_event(event)
    tasks.process_stripe_event(StripeEvent.objects.get(event_id=event["id"]).pk)
    sub = Subscription.objects.get(organization=alice_org)
    assert sub.stripe_customer_id == live["customer"]
    assert sub.stripe_subscription_id == live["id"]
    assert sub.status == Subscription.Status.ACTIVE and sub.plan == plan
    claim = FirstMonthClaim.objects.get(user=alice)
    assert claim.organization == alice_org and claim.stripe_checkout_session == "cs_1"
    assert not first_month_offered(organization=alice_org, user=alice)


def test_a_handler_crash_marks_the_event_failed_without_applying_half(
    post_event, enqueued, alice_org, monkeypatch
):
    from billing.services import stripe_events

    def boom(event, obj):
        raise KeyError("items")

    monkeypatch.setitem(stripe_events.HANDLERS, "customer.subscription.updated", boom)
    event = make_event("customer.subscription.updated", {"id": "sub_x"})
    post_event(event)
    stored = StripeEvent.objects.get(event_id=event["id"])
    assert tasks.process_stripe_event(stored.pk) == "failed"
    stored.refresh_from_db()
    assert stored.state == StripeEvent.State.FAILED
    assert "KeyError" in stored.error


@pytest.mark.django_db(transaction=True)
def test_a_real_subscription_flow_from_localstripe_reaches_our_endpoint(
    live_server, localstripe, enqueued, settings
):
    """localstripe sends signed webhooks to the live server; the tasks then apply them."""
    import urllib.parse
    import urllib.request

    from accounts.models import Organization

    org = Organization.objects.create(name="Live Co", slug="live-co", billing_email="l@example.com")
    plan = PlanFactory()
    body = urllib.parse.urlencode(
        {"url": f"{live_server.url}/billing/webhook/", "secret": settings.STRIPE_WEBHOOK_SECRET}
    ).encode()
    urllib.request.urlopen(f"{localstripe}/_config/webhooks/clawfleet", data=body).read()

    live = live_subscription(org, plan)

    def wait_for(type_, **lookup):
        # Only this test's objects: localstripe may still deliver other tests' events.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            found = StripeEvent.objects.filter(type=type_, **lookup).first()
            if found:
                return found
            time.sleep(0.2)
        raise AssertionError(f"no {type_} webhook arrived")

    created = wait_for("customer.subscription.created", payload__data__object__id=live["id"])
    paid = wait_for("invoice.payment_succeeded", payload__data__object__subscription=live["id"])
    assert created.pk in enqueued["process_stripe_event"]
    assert tasks.process_stripe_event(created.pk) == "processed"
    assert tasks.process_stripe_event(paid.pk) == "processed"
    sub = Subscription.objects.get(organization=org)
    assert sub.status == Subscription.Status.ACTIVE
    assert sub.plan == plan
    assert sub.stripe_subscription_id == live["id"]
    assert sub.current_period_end is not None

    stripe_api.client().v1.subscriptions.cancel(live["id"])
    deleted = wait_for("customer.subscription.deleted", payload__data__object__id=live["id"])
    assert tasks.process_stripe_event(deleted.pk) == "processed"
    sub.refresh_from_db()
    assert sub.status == Subscription.Status.CANCELED
    # Delivered again (Stripe retries): stored once, applied once.
    assert StripeEvent.objects.filter(event_id=deleted.event_id).count() == 1
    assert tasks.process_stripe_event(deleted.pk) == "already"


def test_a_subscription_canceled_in_stripe_announces_the_pause_of_every_running_instance(
    post_event, enqueued, alice_org, django_capture_on_commit_callbacks
):
    from billing.models import BillingPause

    from .factories import InstanceFactory

    alice_org.billing_email = "billing@alice.example"
    alice_org.save()
    plan = PlanFactory()
    live = live_subscription(alice_org, plan)
    bot = InstanceFactory(organization=alice_org, name="bot")
    created = make_event("customer.subscription.created", live, created=int(time.time()) - 5)
    post_event(created)
    tasks.process_stripe_event(StripeEvent.objects.get(event_id=created["id"]).pk)
    assert Subscription.objects.get(organization=alice_org).is_entitled

    canceled = stripe_api.client().v1.subscriptions.cancel(live["id"]).to_dict()
    deleted = make_event("customer.subscription.deleted", canceled)
    post_event(deleted)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.process_stripe_event(StripeEvent.objects.get(event_id=deleted["id"]).pk)
    sub = Subscription.objects.get(organization=alice_org)
    assert sub.status == Subscription.Status.CANCELED and sub.ended_at is not None
    pause = BillingPause.objects.get(instance_id=bot.pk, reason="ended")
    assert pause.paused_at is None and pause.due_at > sub.ended_at
    assert any("plan has ended" in m.subject for m in mail.outbox)
