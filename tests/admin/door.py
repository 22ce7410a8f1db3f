"""Signing staff in the way the staff door wants (fleet/admin.py): through allauth's login view
with a password, then the TOTP code of an enrolled authenticator. Other test packages that open
admin pages use `sign_in_staff` too (a force_login session never used a second factor, so the
door sends it to confirm one)."""

from __future__ import annotations

import time

from allauth.mfa import app_settings
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import TOTP, format_hotp_value, generate_totp_secret, hotp_value
from django.urls import reverse

from tests.factories import verified

PASSWORD = "correct-horse-battery"  # what tests.factories.UserFactory sets


def enrol_totp(user) -> str:
    """Give `user` a TOTP authenticator (as the enrolment page would); returns its secret."""
    secret = generate_totp_secret()
    Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).delete()
    TOTP.activate(user, secret)
    return secret


def totp_code(secret: str) -> str:
    """The code an authenticator app shows now (never one about to expire: a code read in the
    last second of its period would be checked in the next one)."""
    period = app_settings.TOTP_PERIOD
    left = period - time.time() % period
    if left < 1.5:
        time.sleep(left + 0.05)
    return format_hotp_value(hotp_value(secret, int(time.time()) // period))


def sign_in(client, user, *, password: str = PASSWORD, **extra):
    """POST the email and password to allauth's login view; returns its response."""
    return client.post(
        reverse("account_login"), {"login": user.email, "password": password}, **extra
    )


def sign_in_staff(client, user, *, secret: str | None = None) -> str:
    """A staff member signed in with password and TOTP, as at the real door. Enrols TOTP first
    when `secret` is None; returns the secret."""
    verified(user)
    secret = secret or enrol_totp(user)
    response = sign_in(client, user)
    assert response.status_code == 302, response.content[:500]
    assert response["Location"] == reverse("mfa_authenticate"), response["Location"]
    response = client.post(reverse("mfa_authenticate"), {"code": totp_code(secret)})
    assert response.status_code == 302, response.content[:500]
    return secret
