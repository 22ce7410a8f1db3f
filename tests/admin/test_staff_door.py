"""The staff door (fleet/admin.py, issue 12): /admin/ signs in through allauth, so its rate limits
and MFA apply; a staff member without TOTP is sent to enrol before any admin page renders; a
session that did not use the second factor confirms a code first. Only DEBUG may relax it."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.urls import reverse

from tests.factories import UserFactory, verified

from .conftest import make_instance
from .door import enrol_totp, sign_in, totp_code

ROOT = Path(__file__).resolve().parents[2]
CUSTOMER_DATA = "acme-secret-bot"  # an instance name only an admin page would show

ADMIN_PAGES = [
    "admin:index",
    "admin:fleet_overview",
    "admin:instances_instance_changelist",
    "admin:sessions_mgmt_session_changelist",
    "admin:accounts_auditevent_changelist",
    "admin:billing_subscription_changelist",
]


@pytest.fixture
def staff(db):
    return verified(UserFactory(email="ops@clawfleet.test", is_staff=True, is_superuser=True))


@pytest.fixture
def customer_instance(org, host):
    return make_instance(org, host, name=CUSTOMER_DATA)


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_the_admins_own_login_form_is_not_reachable(client, staff):
    page = client.get(reverse("admin:index"), follow=True)

    assert page.redirect_chain[-1][0].startswith(reverse("account_login"))
    assert page.status_code == 200
    assert b'name="login"' in page.content  # allauth's form, not the admin's "username"
    assert b'name="username"' not in page.content

    # Posting the admin's form signs nobody in: it only points to allauth's.
    posted = client.post(
        reverse("admin:login"), {"username": staff.email, "password": "correct-horse-battery"}
    )
    assert posted.status_code == 302
    assert posted["Location"].startswith(reverse("account_login"))
    assert not signed_in(client)


def test_a_staff_password_login_without_totp_reaches_no_admin_page_only_the_enrolment(
    client, staff, customer_instance
):
    response = sign_in(client, staff)
    assert response.status_code == 302
    assert signed_in(client)  # the password was right: allauth signed the user in

    enrol = reverse("mfa_activate_totp")
    pages = [reverse(name) for name in ADMIN_PAGES]
    pages += [reverse("admin:instances_instance_change", args=[customer_instance.pk])]
    for url in pages:
        page = client.get(url)
        assert (page.status_code, page["Location"]) == (302, enrol), url

    # Actions are behind the door too: nothing ran.
    run = reverse("admin:instances_instance_run", args=[customer_instance.pk, "restart"])
    assert client.post(run)["Location"] == enrol
    assert not customer_instance.operations.exists()


def test_a_new_staff_member_enrols_totp_then_confirms_a_code_and_gets_in(
    client, staff, customer_instance
):
    sign_in(client, staff)
    # allauth asks for the password again before an authenticator is added.
    page = client.get(reverse("admin:index"), follow=True)
    assert page.redirect_chain[-1][0].startswith(reverse("account_reauthenticate"))
    assert CUSTOMER_DATA.encode() not in page.content
    page = client.post(
        page.redirect_chain[-1][0], {"password": "correct-horse-battery"}, follow=True
    )
    assert page.redirect_chain[-1][0] == reverse("mfa_activate_totp")
    assert page.status_code == 200
    assert CUSTOMER_DATA.encode() not in page.content

    secret = client.session["mfa.totp.secret"]  # what the QR code on the page holds
    client.post(reverse("mfa_activate_totp"), {"code": totp_code(secret)})
    assert staff.authenticator_set.filter(type="totp").exists()

    # Enrolled, but this session has not used the code yet: the door asks for one.
    page = client.get(reverse("admin:index"))
    assert page["Location"].startswith(reverse("mfa_reauthenticate"))
    back = client.post(page["Location"], {"code": totp_code(secret)})
    assert back["Location"] == reverse("admin:index")
    index = client.get(reverse("admin:index"))
    assert index.status_code == 200
    assert b"Fleet administration" in index.content


def test_with_totp_enrolled_and_the_code_given_the_admin_opens(client, staff, customer_instance):
    secret = enrol_totp(staff)

    response = sign_in(client, staff)
    assert response["Location"] == reverse("mfa_authenticate")
    assert not signed_in(client)  # the password alone is not enough
    assert client.get(reverse("admin:index"))["Location"].startswith(reverse("admin:login"))

    wrong = client.post(reverse("mfa_authenticate"), {"code": "000000"})
    assert wrong.status_code == 200 and not signed_in(client)
    client.post(reverse("mfa_authenticate"), {"code": totp_code(secret)})
    assert signed_in(client)

    index = client.get(reverse("admin:index"))
    assert index.status_code == 200
    assert b"Fleet administration" in index.content
    listing = client.get(reverse("admin:instances_instance_changelist"))
    assert CUSTOMER_DATA.encode() in listing.content
    # The admin's password form is allauth's too.
    password = client.get(reverse("admin:password_change"))
    assert password["Location"] == reverse("account_change_password")


def test_a_session_that_skipped_the_second_factor_confirms_a_code_first(client, staff):
    secret = enrol_totp(staff)
    client.force_login(staff)  # a session from a path that never asked for the code

    page = client.get(reverse("admin:instances_instance_changelist"))

    confirm = reverse("mfa_reauthenticate")
    assert page.status_code == 302
    assert page["Location"].startswith(confirm)
    done = client.post(page["Location"], {"code": totp_code(secret)})
    assert done["Location"] == reverse("admin:instances_instance_changelist")
    assert client.get(done["Location"]).status_code == 200


def test_twenty_wrong_passwords_are_rate_limited(client, staff):
    enrol_totp(staff)
    for _ in range(20):
        last = sign_in(client, staff, password="not-the-password")
        assert not signed_in(client)

    assert b"Too many failed login attempts" in last.content
    # Even the right password is refused now.
    right = sign_in(client, staff)
    assert b"Too many failed login attempts" in right.content
    assert right.get("Location") != reverse("mfa_authenticate")
    assert not signed_in(client)


def test_logout_stays_reachable_behind_the_door(client, staff):
    sign_in(client, staff)
    assert signed_in(client)

    response = client.post(reverse("admin:logout"))

    assert response.status_code in (200, 302)
    assert not signed_in(client)


def test_signed_in_customers_get_no_admin_login_loop(client, db):
    customer = verified(UserFactory(email="customer@example.com"))
    client.force_login(customer)

    page = client.get(reverse("admin:index"), follow=True)

    assert page.status_code == 403
    assert len(page.redirect_chain) == 1


def test_only_a_debug_machine_may_let_staff_in_without_totp(client, staff, settings):
    client.force_login(staff)
    settings.FLEET_STAFF_MFA_REQUIRED = False

    settings.DEBUG = False
    assert client.get(reverse("admin:index"))["Location"] == reverse("mfa_activate_totp")

    settings.DEBUG = True
    assert client.get(reverse("admin:index")).status_code == 200


def production_env(**overrides: str) -> dict[str, str]:
    """A production process's environment (as tests/accounts/test_settings.py builds it)."""
    required = ("SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "BACKUP_ENCRYPTION_KEY")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_VERSION", *required)}
    env.update(
        DEBUG="false",
        DJANGO_SETTINGS_MODULE="fleet.settings",
        ALLOWED_HOSTS="clawfleet.example",
        SECRET_KEY=secrets.token_urlsafe(64),
        FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        BACKUP_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        STRIPE_WEBHOOK_SECRET="whsec_" + secrets.token_hex(16),
        FLEET_BACKUP_S3_BUCKET="clawfleet-backups",
    )
    env.update(overrides)
    return env


def settings_load(env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_process_refuses_to_relax_the_door_with_debug_off():
    refused = settings_load(production_env(FLEET_STAFF_MFA_REQUIRED="false"))
    assert refused.returncode != 0
    assert "FLEET_STAFF_MFA_REQUIRED" in refused.stderr

    assert settings_load(production_env()).returncode == 0, settings_load(production_env()).stderr
    relaxed_in_development = production_env(DEBUG="true", FLEET_STAFF_MFA_REQUIRED="false")
    assert settings_load(relaxed_in_development).returncode == 0
