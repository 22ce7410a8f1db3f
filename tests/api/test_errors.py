"""One JSON error shape for every error: {"error": {"code", "message", "fields"?}}."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from instances.models import Instance

from .conftest import API, token_client


def error_of(response, status, code):
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


def test_a_request_without_credentials_is_a_401_in_the_error_shape(db):
    error = error_of(APIClient().get(f"{API}/instances"), 401, "unauthenticated")
    assert "credentials" in error["message"].lower()


def test_a_401_names_the_bearer_scheme_in_www_authenticate(db):
    response = APIClient().get(f"{API}/instances")
    assert response["WWW-Authenticate"] == "Bearer"


def test_an_unknown_token_is_a_401(db):
    error_of(token_client("cf_live_nope").get(f"{API}/instances"), 401, "unauthenticated")


def test_a_malformed_authorization_header_is_a_401_that_says_how(db):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Token abc def")
    error = error_of(api.get(f"{API}/instances"), 401, "unauthenticated")
    assert "Bearer" in error["message"]


def test_an_expired_token_is_a_401(alice_org, make_token):
    from datetime import timedelta

    from django.utils import timezone

    from accounts.models import ApiToken

    token, secret = make_token(alice_org, ("read",))
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    error_of(token_client(secret).get(f"{API}/instances"), 401, "unauthenticated")


def test_a_missing_scope_is_a_403(world):
    error = error_of(
        token_client(world.alice_read_secret).post(f"{API}/instances/{world.running.pk}/stop"),
        403,
        "forbidden",
    )
    assert "scopes" in error["message"]


def test_another_organizations_object_is_a_404_not_a_403(world):
    error_of(
        token_client(world.charlie_secret).get(f"{API}/instances/{world.running.pk}"),
        404,
        "not_found",
    )


def test_a_malformed_id_is_a_404(world):
    error_of(token_client(world.alice_secret).get(f"{API}/instances/not-a-uuid"), 404, "not_found")


def test_an_unsupported_method_is_a_405_with_allow(world):
    response = token_client(world.alice_secret).put(
        f"{API}/instances/{world.running.pk}", {"name": "x"}, format="json"
    )
    error_of(response, 405, "method_not_allowed")
    assert "PATCH" in response["Allow"]


def test_invalid_input_is_a_400_with_messages_per_field(world):
    response = token_client(world.alice_secret).post(
        f"{API}/instances", {"name": "Not A Slug!", "provider": "nope"}, format="json"
    )
    error = error_of(response, 400, "invalid")
    assert {"name", "provider", "model_name"} <= set(error["fields"])
    assert all(isinstance(v, list) and v for v in error["fields"].values())
    assert error["message"].startswith(next(iter(error["fields"])))


def test_a_service_validation_error_is_a_400_with_fields(world, settings):
    # The plan allows 8 CPUs: the serializer lets 9 through and the service refuses it.
    response = token_client(world.alice_secret).post(
        f"{API}/instances",
        {"name": "big", "provider": "openai", "model_name": "m", "api_key": "k", "cpus": 9},
        format="json",
    )
    error = error_of(response, 400, "invalid")
    assert "cpus" in error["fields"]


def test_json_that_does_not_parse_is_a_400(world):
    response = token_client(world.alice_secret).post(
        f"{API}/instances", "{not json", content_type="application/json"
    )
    error_of(response, 400, "invalid")


def test_a_form_body_is_a_415(world):
    response = token_client(world.alice_secret).post(
        f"{API}/instances", "name=x", content_type="application/x-www-form-urlencoded"
    )
    error_of(response, 415, "unsupported_media_type")


def test_a_second_action_while_one_is_in_progress_is_a_409_operation_in_progress(world):
    api = token_client(world.alice_secret)
    assert api.post(f"{API}/instances/{world.running.pk}/restart").status_code == 202
    error = error_of(
        api.post(f"{API}/instances/{world.running.pk}/stop"), 409, "operation_in_progress"
    )
    assert "restart" in error["message"]


def test_an_action_the_state_does_not_allow_is_a_409_invalid_state(world):
    error = error_of(
        token_client(world.alice_secret).post(f"{API}/instances/{world.running.pk}/start"),
        409,
        "invalid_state",
    )
    assert "running" in error["message"]


def test_an_upgrade_to_an_unknown_version_is_a_400_on_the_version_field(world):
    response = token_client(world.alice_secret).post(
        f"{API}/instances/{world.running.pk}/upgrade", {"version": "0.0.1"}, format="json"
    )
    assert "version" in error_of(response, 400, "invalid")["fields"]


@pytest.mark.parametrize("path", ["/instances", "/sessions", "/organization"])
def test_successful_answers_carry_the_rate_limit_headers(world, path):
    response = token_client(world.alice_secret).get(API + path)
    assert response.status_code == 200
    limit = int(response["X-RateLimit-Limit"])
    assert limit == 1200
    assert 0 <= int(response["X-RateLimit-Remaining"]) < limit
    assert response["X-RateLimit-Window"] == "60"


def test_the_remaining_count_goes_down_per_organization(world, make_token):
    api = token_client(world.alice_secret)
    first = int(api.get(f"{API}/instances")["X-RateLimit-Remaining"])
    _, other_secret = make_token(world.alice_org, ("read",))
    second = int(token_client(other_secret).get(f"{API}/instances")["X-RateLimit-Remaining"])
    assert second == first - 1  # one bucket for the organization, whichever token
    charlie = int(
        token_client(world.charlie_secret).get(f"{API}/instances")["X-RateLimit-Remaining"]
    )
    assert charlie > second


def test_over_the_rate_limit_is_a_429_with_retry_after(world, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"organization": "3/min"},
    }
    from rest_framework.settings import api_settings

    api_settings.reload()
    try:
        from fleet.api import OrganizationRateThrottle

        OrganizationRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
        api = token_client(world.alice_secret)
        remaining = [int(api.get(f"{API}/instances")["X-RateLimit-Remaining"]) for _ in range(3)]
        assert remaining == [2, 1, 0]
        response = api.get(f"{API}/instances")
        error = error_of(response, 429, "rate_limited")
        assert 0 < int(response["Retry-After"]) <= 60
        assert response["X-RateLimit-Remaining"] == "0"
        assert "throttled" in error["message"].lower()
    finally:
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {"organization": "1200/min"},
        }
        api_settings.reload()
        OrganizationRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES


def test_a_purged_instance_is_gone_from_the_list_and_the_detail(world):
    Instance.objects.filter(pk=world.stopped.pk).update(status=Instance.Status.PURGED)
    api = token_client(world.alice_secret)
    names = [i["name"] for i in api.get(f"{API}/instances").json()["results"]]
    assert names == ["alice-bot"]
    error_of(api.get(f"{API}/instances/{world.stopped.pk}"), 404, "not_found")


def test_the_exception_handler_turns_unknown_api_paths_into_json(rf):
    from fleet.api import api_not_found

    response = api_not_found(rf.get("/api/v1/nope"))
    assert response.status_code == 404
    assert b'"not_found"' in response.content
