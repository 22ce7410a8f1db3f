"""manage.py create_api_token: the token on the last line, working at once."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.models import ApiToken, Organization, User

from .conftest import API, token_client


def run(*args) -> list[str]:
    out = StringIO()
    call_command("create_api_token", *args, stdout=out)
    return out.getvalue().strip().splitlines()


def test_it_creates_owner_and_organization_and_prints_a_working_token_last(db):
    lines = run("--org", "acme", "--name", "ci", "--scopes", "read,operate", "--owner", "O@X.io")
    secret = lines[-1]
    assert secret.startswith("cf_live_") and " " not in secret
    user = User.objects.get(email="o@x.io")
    assert not user.has_usable_password()
    assert user.emailaddress_set.get().verified
    org = Organization.objects.get(slug="acme")
    assert org.memberships.get().user == user and org.memberships.get().role == "owner"
    token = ApiToken.objects.get(organization=org)
    assert token.scopes == ["operate", "read"] and token.created_by == user
    response = token_client(secret).get(f"{API}/organization")
    assert response.status_code == 200 and response.json()["slug"] == "acme"


def test_it_mints_a_token_for_an_existing_organization(alice_org):
    secret = run("--org", "alice-co", "--name", "ci", "--scopes", "billing")[-1]
    assert token_client(secret).get(f"{API}/usage").status_code == 200


def test_a_second_run_reuses_the_owner_and_the_organization(db):
    run("--org", "acme", "--name", "a", "--scopes", "read", "--owner", "o@x.io")
    run("--org", "acme", "--name", "b", "--scopes", "read", "--owner", "o@x.io")
    assert ApiToken.objects.filter(organization__slug="acme").count() == 2


@pytest.mark.parametrize(
    "args,message",
    [
        (["--org", "nope", "--name", "x", "--scopes", "read"], "Pass --owner"),
        (["--org", "acme", "--name", "x", "--scopes", "root"], "Unknown scope(s): root"),
        (["--org", "acme", "--name", "x", "--scopes", ","], "Choose one or more"),
        (["--org", "acme", "--name", "x", "--scopes", "read", "--owner", "bad"], "not a valid"),
        (["--org", "Not Slug", "--name", "x", "--scopes", "read", "--owner", "o@x.io"], "slug"),
        (["--org", "alice-co", "--name", " ", "--scopes", "read"], "name"),
        (["--org", "alice-co", "--name", "x", "--scopes", "read", "--owner", "z@x.io"], "member"),
        (["--org", "alice-co", "--name", "x", "--scopes", "read", "--expires-days", "0"], "1 or"),
    ],
)
def test_bad_input_is_a_clear_command_error(alice_org, args, message):
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(*args)
    assert not ApiToken.objects.exists()
