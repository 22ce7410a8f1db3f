"""Staff end a complimentary plan from the admin; the organization's instances are announced
for a pause after the notice (billing/services/enforcement.py), audited with the staff user."""

from __future__ import annotations

import pytest

from accounts.models import AuditEvent
from billing.models import BillingPause, Subscription
from tests.factories import InstanceFactory
from tests.fleet_fixtures import make_entitled

pytestmark = pytest.mark.django_db


def test_staff_end_a_comp_and_a_paid_subscription_is_refused(admin_client_, alice_org, charlie_org):
    make_entitled(alice_org)
    bot = InstanceFactory(organization=alice_org, name="bot", local=True)
    paid = Subscription.objects.create(organization=charlie_org, status="active")
    url = "/admin/billing/subscription/"
    ids = [Subscription.objects.get(organization=alice_org).pk, paid.pk]
    response = admin_client_.post(url, {"action": "end_comp", "_selected_action": ids}, follow=True)
    body = response.content.decode()
    assert "1 comp(s) ended." in body and "no complimentary plan to end" in body
    assert Subscription.objects.get(organization=alice_org).status == "canceled"
    assert BillingPause.objects.filter(instance_id=bot.pk, reason="ended").exists()
    row = AuditEvent.objects.get(action="subscription.comp_ended")
    assert row.actor.email == "root@clawfleet.test"
    assert Subscription.objects.get(pk=paid.pk).status == "active"
