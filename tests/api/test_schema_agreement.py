"""The schema and the code agree, both ways: what the schema forbids is a 400, what it allows is
accepted (the cases schemathesis found, pinned down as plain tests)."""

from __future__ import annotations

import pytest
from django.test import Client

from fleet.api import NO_NUL_PATTERN, NON_BLANK_PATTERN
from instances.models import Instance

from .conftest import API, token_client


@pytest.fixture(scope="module")
def openapi(django_db_blocker):
    with django_db_blocker.unblock():
        return Client().get("/api/schema/?format=json").json()


def parameter(openapi, path, name, method="get"):
    (found,) = [p for p in openapi["paths"][path][method]["parameters"] if p["name"] == name]
    return found["schema"]


@pytest.mark.parametrize(
    "query",
    ["limit=null", "limit=2.5", "limit=0", "limit=201", "limit=", "offset=-1", "offset=x"],
)
def test_pagination_parameters_are_whole_numbers_within_their_bounds(world, query):
    response = token_client(world.alice_secret).get(f"{API}/instances?{query}")
    assert response.status_code == 400
    assert response.json()["error"]["fields"].keys() <= {"limit", "offset"}


def test_pagination_bounds_are_in_the_schema_and_valid_values_work(world, openapi):
    assert parameter(openapi, "/api/v1/instances", "limit") == {
        "type": "integer",
        "minimum": 1,
        "maximum": 200,
    }
    assert parameter(openapi, "/api/v1/instances", "offset")["minimum"] == 0
    assert parameter(openapi, "/api/v1/sessions", "limit")["maximum"] == 200
    api = token_client(world.alice_secret)
    body = api.get(f"{API}/instances?limit=1&offset=1").json()
    assert body["count"] == 2 and len(body["results"]) == 1
    assert api.get(f"{API}/sessions?limit=null").status_code == 400
    assert api.get(f"{API}/sessions?limit=1").status_code == 200


@pytest.mark.parametrize(
    "query", ["to=", "from=", "instance=", "status=", "from=11/01/2026", "to=2026-11-01T10:00"]
)
def test_an_empty_or_malformed_typed_filter_is_a_400(world, query):
    response = token_client(world.alice_secret).get(f"{API}/sessions?{query}")
    assert response.status_code == 400


@pytest.mark.parametrize(
    "query",
    [
        "channel=",  # a text filter's empty value is a value
        "from=2026-11-01",
        "to=2026-11-01T10:00:00Z",
        "to=2026-11-01t10:00:00.123456789%2B05:30",
        "from=0001-01-01T00:00:00%2B23:59",  # before year 1 in UTC: the earliest time
        "to=9999-12-31T23:59:59-23:59",  # after 9999 in UTC: the latest time
    ],
)
def test_valid_filters_are_accepted(world, query):
    assert token_client(world.alice_secret).get(f"{API}/sessions?{query}").status_code == 200


def test_date_filters_say_date_or_date_time(openapi):
    assert parameter(openapi, "/api/v1/sessions", "from") == {
        "anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}]
    }


def test_a_nul_character_is_refused_and_the_schema_says_so(world, openapi):
    api = token_client(world.alice_secret)
    assert api.get(f"{API}/sessions?channel=tele%00gram").status_code == 400
    assert api.get(f"{API}/audit-events?action=a%00").status_code == 400
    assert parameter(openapi, "/api/v1/sessions", "channel")["pattern"] == NO_NUL_PATTERN
    client_name = openapi["components"]["schemas"]["InstanceCreateRequest"]["properties"][
        "client_name"
    ]
    assert client_name["pattern"] == NO_NUL_PATTERN


def test_ordering_is_one_listed_field_or_its_reverse(world, openapi):
    api = token_client(world.alice_secret)
    names = [i["name"] for i in api.get(f"{API}/instances?ordering=-name").json()["results"]]
    assert names == ["alice-stopped", "alice-bot"]
    for bad in ("secret_field", "name,-status", "", "na\x00me"):
        assert api.get(f"{API}/instances", {"ordering": bad}).status_code == 400, bad
    assert parameter(openapi, "/api/v1/instances", "ordering")["enum"] == [
        "name",
        "-name",
        "created_at",
        "-created_at",
        "status",
        "-status",
    ]


def test_a_boolean_filter_is_true_or_false(world):
    api = token_client(world.alice_secret)
    active = api.get(f"{API}/tokens?active=true").json()["results"]
    assert active and all(t["is_active"] for t in active)
    assert api.get(f"{API}/tokens?active=null").status_code == 400
    assert api.get(f"{API}/tokens?active=1").status_code == 400


def test_a_transcript_page_number_is_a_whole_number(world, transcript_stub):
    api = token_client(world.alice_secret)
    assert api.get(f"{API}/sessions/{world.session.pk}?before=").status_code == 400
    assert api.get(f"{API}/sessions/{world.session.pk}?before=-1").status_code == 400
    assert api.get(f"{API}/sessions/{world.session.pk}?before=3").status_code == 200


def test_a_required_text_of_only_spaces_is_refused_and_the_schema_says_so(world, openapi):
    api = token_client(world.alice_secret)
    response = api.post(f"{API}/tokens", {"name": "   ", "scopes": ["read"]}, format="json")
    assert response.status_code == 400 and "name" in response.json()["error"]["fields"]
    name = openapi["components"]["schemas"]["ApiTokenCreateRequest"]["properties"]["name"]
    assert name["pattern"] == NON_BLANK_PATTERN


def test_any_cpu_count_in_range_is_kept_to_two_decimals(world):
    api = token_client(world.alice_secret)
    response = api.post(
        f"{API}/instances",
        {
            "name": "thirds",
            "provider": "openai",
            "model_name": "gpt-4o-mini",
            "api_key": "sk-x",
            "cpus": 0.3333333,
        },
        format="json",
    )
    assert response.status_code == 202
    assert str(Instance.objects.get(name="thirds").cpus) == "0.33"
    too_many = api.post(
        f"{API}/instances",
        {"name": "huge", "provider": "openai", "model_name": "m", "api_key": "k", "cpus": 1e308},
        format="json",
    )
    assert too_many.status_code == 400 and "cpus" in too_many.json()["error"]["fields"]


def test_backing_up_an_unknown_instance_is_a_404(world):
    response = token_client(world.alice_secret).post(
        f"{API}/backups", {"instance": "5d0c2f0e-8a4b-4c3e-9b8e-2f1d7c6a9e10"}, format="json"
    )
    assert response.status_code == 404
