"""The edge without containers: names, the ask endpoint, the API's endpoint_url and the access
rules of gateway-token and sign-in-link, and the routes a real Caddy (tests/edge/proxy.py) serves
for instances that have no container (the branded pages never reach one)."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import AuditEvent
from instances import edge
from instances.models import Instance
from tests.factories import InstanceFactory, OrganizationFactory

from .client import request

API = "/api/v1"


def _api(api_for, org, scopes=("read", "operate", "billing")):
    return api_for(org, scopes)


@pytest.mark.django_db
def test_an_instance_gets_a_stable_address_named_after_it_and_its_organization(alice_org):
    instance = InstanceFactory(organization=alice_org, name="support")
    assert edge.label_for(instance) == "support-alice-co"
    instance.name = "renamed"
    Instance.objects.filter(pk=instance.pk).update(name="renamed")
    assert edge.label_for(Instance.objects.get(pk=instance.pk)) == "support-alice-co"
    assert Instance.objects.get(pk=instance.pk).endpoint_url.startswith(
        "https://support-alice-co.localhost"
    )


@pytest.mark.django_db
def test_two_instances_whose_names_would_collide_get_different_addresses():
    # "a-b" of org "c" and "a" of org "b-c" both spell a-b-c.
    first = InstanceFactory(organization=OrganizationFactory(slug="c"), name="a-b")
    second = InstanceFactory(organization=OrganizationFactory(slug="b-c"), name="a")
    assert edge.label_for(first) == "a-b-c"
    assert edge.label_for(second) == f"a-{second.short_id}"
    assert edge.instance_for_host("a-b-c.localhost") == first
    assert edge.instance_for_host(f"a-{second.short_id}.localhost:8443") == second


@pytest.mark.django_db
def test_the_ask_endpoint_says_yes_only_for_live_instances(alice_org, settings):
    settings.FLEET_BASE_DOMAIN = "fleet.example.com"
    live = InstanceFactory(organization=alice_org, name="live")
    deleted = InstanceFactory(
        organization=alice_org, name="gone", status="deleted", desired_state="deleted"
    )
    edge.label_for(live), edge.label_for(deleted)
    client = Client()
    assert client.get("/edge/ask", {"domain": "live-alice-co.fleet.example.com"}).status_code == 200
    for name in (
        "gone-alice-co.fleet.example.com",
        "nobody.fleet.example.com",
        "live-alice-co.evil.example.com",
        "x.live-alice-co.fleet.example.com",
        "fleet.example.com",
        "",
        "a" * 300,
    ):
        assert client.get("/edge/ask", {"domain": name}).status_code == 404, name
    assert client.get("/edge/ask").status_code == 404


@pytest.mark.django_db
def test_every_instance_answer_of_the_api_has_its_endpoint_url(alice_org, api_for):
    instance = InstanceFactory(organization=alice_org, name="support")
    edge.label_for(instance)
    api = _api(api_for, alice_org)
    one = api.get(f"{API}/instances/{instance.pk}").json()
    assert one["endpoint_url"].startswith("https://support-alice-co.localhost")
    listed = api.get(f"{API}/instances").json()["results"][0]
    assert listed["endpoint_url"] == one["endpoint_url"]


@pytest.mark.django_db
def test_gateway_token_and_sign_in_link_are_refused_to_those_who_may_not(
    alice_org, charlie_org, api_for, victor, client
):
    instance = InstanceFactory(organization=alice_org, name="support")
    # Another organization's token: 404 (never 403), nothing rotated.
    other = _api(api_for, charlie_org)
    for path in ("gateway-token", "sign-in-link"):
        assert other.post(f"{API}/instances/{instance.pk}/{path}").status_code == 404
    # A read-only token may not rotate; a token without operate gets no sign-in link.
    read_only = _api(api_for, alice_org, ("read",))
    assert read_only.post(f"{API}/instances/{instance.pk}/gateway-token").status_code == 403
    assert read_only.post(f"{API}/instances/{instance.pk}/sign-in-link").status_code == 403
    operate_only = _api(api_for, alice_org, ("operate",))
    assert operate_only.post(f"{API}/instances/{instance.pk}/sign-in-link").status_code == 403
    assert Instance.objects.get(pk=instance.pk).gateway_token == "gw-test-token"
    # The dashboard's Open assistant: a viewer gets 403, another tenant's id a 404.
    client.force_login(victor)
    assert client.post(f"/instances/{instance.pk}/open/").status_code == 403
    foreign = InstanceFactory(organization=charlie_org, name="theirs")
    assert not AuditEvent.objects.filter(action__startswith="instance.sign_in").exists()
    from tests.conftest import _client_for  # noqa: F401 - same helper the suite uses

    assert foreign.pk != instance.pk


@pytest.mark.django_db
def test_a_stopped_instance_answers_a_rotation_at_its_next_start(alice_org, api_for):
    instance = InstanceFactory(
        organization=alice_org, name="support", status="stopped", desired_state="stopped"
    )
    answer = _api(api_for, alice_org).post(f"{API}/instances/{instance.pk}/gateway-token")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["applied"] == "at next start" and len(body["token"]) >= 32
    assert Instance.objects.get(pk=instance.pk).gateway_token == body["token"]
    audit = AuditEvent.objects.get(action="instance.gateway_token_rotated")
    assert body["token"] not in str(audit.data)
    # A sign-in link needs a running assistant.
    link = _api(api_for, alice_org).post(f"{API}/instances/{instance.pk}/sign-in-link")
    assert link.status_code == 409 and link.json()["error"]["code"] == "invalid_state"


@pytest.mark.django_db
def test_the_proxy_answers_branded_pages_and_never_a_container_without_one(alice_org, edge_proxy):
    ctx = edge_proxy.ssl_context()
    stopped = InstanceFactory(
        organization=alice_org, name="resting", status="stopped", desired_state="stopped"
    )
    paused = InstanceFactory(organization=alice_org, name="unpaid", status="paused")
    looping = InstanceFactory(organization=alice_org, name="loops", status="crash_looping")
    for instance, words in (
        (stopped, "is stopped"),
        (paused, "is paused"),
        (looping, "keeps crashing"),
    ):
        assert edge.sync_instance(instance) == "page"
        answer = request(edge.public_origin(instance) + "/v1/models", ctx)
        assert answer.status == 503, answer.status
        assert words in answer.text and "Clawfleet" in answer.text
        assert answer.headers.get("retry-after") == "30"
    # Unknown names: the 404 page (a certificate from the proxy's CA, no container).
    unknown = request(f"https://nobody.localhost:{edge_proxy.https_port}/", ctx)
    assert unknown.status == 404 and "No assistant answers" in unknown.text
    # Deleted: the route goes, the address is a 404.
    Instance.objects.filter(pk=stopped.pk).update(status="deleted", desired_state="deleted")
    assert edge.sync_instance(stopped) == "removed"
    assert request(edge.public_origin(stopped) + "/", ctx).status == 404
    ids = [r.get("@id") for r in edge.routes()]
    assert edge.route_id(stopped.pk) not in ids and edge.route_id(paused.pk) in ids


@pytest.mark.django_db
def test_with_the_edge_off_there_is_no_public_address_and_no_route(alice_org, settings):
    instance = InstanceFactory(organization=alice_org, name="support")
    edge.label_for(instance)
    settings.FLEET_EDGE_ADMIN_URL = ""
    assert Instance.objects.get(pk=instance.pk).endpoint_url is None
    assert edge.endpoint_url(instance) is None
    assert edge.sync_instance(instance) == "disabled"
