"""/api/v1/usage: a foreign or unknown instance is a 404 like every other endpoint, an empty
filter is a 400 that says what to send, and a deleted instance's past costs stay readable."""

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from django.utils import timezone

from billing.models import UsageDay

from .factories import InstanceFactory

pytestmark = pytest.mark.django_db

USAGE = "/api/v1/usage"


def _error(response) -> dict:
    return response.json()["error"]


def test_another_organizations_instance_is_a_404_and_shows_nothing_of_it(
    api_for, alice_org, charlie_org
):
    charlies = InstanceFactory(organization=charlie_org, name="charlies-bot")
    UsageDay.objects.create(
        instance=charlies,
        organization=charlie_org,
        day=timezone.localdate(),
        llm_cost_usd=Decimal("7.77"),
    )
    response = api_for(alice_org).get(f"{USAGE}?instance={charlies.pk}")
    assert response.status_code == 404
    assert _error(response)["code"] == "not_found"
    assert "charlies-bot" not in response.content.decode()
    assert "7.77" not in response.content.decode()


def test_an_unknown_instance_is_a_404(api_for, alice_org):
    response = api_for(alice_org).get(f"{USAGE}?instance={uuid.uuid4()}")
    assert response.status_code == 404
    assert _error(response) == {"code": "not_found", "message": "No such instance."}


def test_an_own_deleted_instance_still_shows_its_past_costs(api_for, alice_org):
    gone = InstanceFactory(organization=alice_org, name="gone-bot", status="deleted")
    day = timezone.localdate()
    UsageDay.objects.create(
        instance=gone, organization=alice_org, day=day, llm_cost_usd=Decimal("2")
    )
    response = api_for(alice_org).get(f"{USAGE}?instance={gone.pk}&from={day}&to={day}")
    assert response.status_code == 200
    assert response.json()["totals"]["llm_usd"] == "2.000000"


@pytest.mark.parametrize(
    "query,field,message",
    [
        ("from=", "from", "Enter a date as YYYY-MM-DD, or leave the parameter out."),
        ("to=", "to", "Enter a date as YYYY-MM-DD, or leave the parameter out."),
        ("from=2026-11-01&to=", "to", "Enter a date as YYYY-MM-DD, or leave the parameter out."),
        ("instance=", "instance", "Enter an instance id, or leave the parameter out."),
    ],
)
def test_an_empty_filter_is_a_400_that_says_what_to_send(api_for, alice_org, query, field, message):
    response = api_for(alice_org).get(f"{USAGE}?{query}")
    assert response.status_code == 400
    error = _error(response)
    assert error["code"] == "invalid"
    assert error["fields"] == {field: [message]}


def test_leaving_the_filters_out_gives_this_month_up_to_today(api_for, alice_org):
    body = api_for(alice_org).get(USAGE).json()
    today = timezone.localdate()
    assert (body["from"], body["to"]) == (today.replace(day=1).isoformat(), today.isoformat())
    assert len(body["days"]) == (today - today.replace(day=1)).days + 1


def test_the_range_rules_come_from_billing_rules(api_for, alice_org):
    from billing import rules

    api = api_for(alice_org)
    start = dt.date(2026, 1, 1)
    longest = start + dt.timedelta(days=rules.USAGE_MAX_RANGE_DAYS - 1)
    assert api.get(f"{USAGE}?from={start}&to={longest}").status_code == 200
    too_long = api.get(f"{USAGE}?from={start}&to={longest + dt.timedelta(days=1)}")
    assert too_long.status_code == 400
    assert _error(too_long)["fields"] == {"from": [rules.USAGE_RANGE_MESSAGE]}
