"""Production-safe settings (fleet/settings.py) and the client address behind a trusted proxy.

The settings tests start a real process (`manage.py check`) with DEBUG off: the suite itself runs
as development (pytest exports PYTEST_VERSION, which the settings read as "DEBUG unless set").
"""

from __future__ import annotations

import ast
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory
from rest_framework.test import APIClient

from accounts import services
from accounts.adapters import AccountAdapter
from accounts.client_ip import client_ip
from accounts.models import ApiToken, AuditEvent
from fleet.api import OrganizationRateThrottle

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = ("SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "BACKUP_ENCRYPTION_KEY", "STRIPE_WEBHOOK_SECRET")


def production_env(**overrides: str) -> dict[str, str]:
    """The environment of a production process: DEBUG off, not under pytest, every secret set."""
    # Not inherited: what pytest and the browser tests' Playwright set for themselves
    # (DJANGO_ALLOW_ASYNC_UNSAFE would be a deploy-check error a production process never has).
    test_only = ("PYTEST_VERSION", "DJANGO_ALLOW_ASYNC_UNSAFE")
    env = {k: v for k, v in os.environ.items() if k not in (*test_only, *REQUIRED)}
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


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("missing", REQUIRED)
def test_with_debug_off_a_missing_secret_stops_the_process_naming_it(missing):
    # An empty value also hides one a developer's .env file might hold.
    result = manage("check", env=production_env(**{missing: ""}))
    assert result.returncode != 0
    assert f"{missing} is not set" in result.stderr
    assert "Traceback" not in result.stderr
    for other in set(REQUIRED) - {missing}:
        assert f"{other} is not set" not in result.stderr


def test_with_debug_unset_outside_the_test_runner_debug_is_off():
    env = production_env(SECRET_KEY="")
    del env["DEBUG"]
    result = manage("check", env=env)
    assert result.returncode != 0 and "SECRET_KEY is not set" in result.stderr


def test_with_debug_off_keys_derived_from_the_secret_key_or_shared_are_refused():
    secret_key = secrets.token_urlsafe(64)
    # What development derives: refused in production.
    derived = manage(
        "shell",
        "-c",
        "from django.conf import settings; print(settings.FIELD_ENCRYPTION_KEYS[0])",
        env=production_env(SECRET_KEY=secret_key, FIELD_ENCRYPTION_KEYS="", DEBUG="true"),
    ).stdout.split()[-1]
    assert derived
    result = manage(
        "check", env=production_env(SECRET_KEY=secret_key, FIELD_ENCRYPTION_KEYS=derived)
    )
    assert result.returncode != 0
    assert "FIELD_ENCRYPTION_KEYS must not be derived from SECRET_KEY" in result.stderr

    shared = Fernet.generate_key().decode()
    result = manage(
        "check", env=production_env(FIELD_ENCRYPTION_KEYS=shared, BACKUP_ENCRYPTION_KEY=shared)
    )
    assert result.returncode != 0 and "BACKUP_ENCRYPTION_KEY must differ" in result.stderr

    result = manage("check", env=production_env(FIELD_ENCRYPTION_KEYS="not-a-key"))
    assert result.returncode != 0 and "is not a Fernet key" in result.stderr

    result = manage("check", env=production_env(SECRET_KEY="short"))
    assert result.returncode != 0 and "SECRET_KEY must be your own" in result.stderr


def test_with_debug_off_and_every_secret_set_check_deploy_is_clean():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


def _is_environ(node) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ"


def env_reads(tree):
    """(line, how) for every os.getenv, os.environ.<method> and os.environ[...] in a module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "getenv":
            yield node.lineno, "getenv"
        elif isinstance(node, ast.Attribute) and _is_environ(node.value):
            yield node.lineno, node.attr
        elif isinstance(node, ast.Subscript) and _is_environ(node.value):
            yield node.lineno, "[]"


def test_settings_are_read_from_the_environment_only_in_fleet_settings():
    """os.environ / os.getenv reads anywhere else are refused (the bench is exempt). Allowed:
    DJANGO_SETTINGS_MODULE defaults (setdefault), and deploy_instance's --api-key-env, an input the
    operator names so that a provider key stays off the command line, not a setting."""
    allowed = {("instances/management/commands/deploy_instance.py", "get")}
    found = []
    for folder in ("accounts", "billing", "instances", "sessions_mgmt", "fleet", "mockllm"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel == "fleet/settings.py" or "migrations" in path.parts:
                continue
            for line, how in env_reads(ast.parse(path.read_text(), filename=rel)):
                if how != "setdefault" and (rel, how) not in allowed:
                    found.append(f"{rel}:{line} {how}")
    assert found == []


def test_the_environment_check_sees_a_read():
    tree = ast.parse("import os\nx = os.environ.get('A')\ny = os.environ['B']\nz = os.getenv('C')")
    assert sorted(how for _, how in env_reads(tree)) == ["[]", "get", "getenv"]


# --- the client address ---------------------------------------------------------------------

rf = RequestFactory()


def test_without_a_trusted_proxy_x_forwarded_for_is_ignored(settings):
    settings.TRUSTED_PROXY_COUNT, settings.TRUSTED_CLIENT_IP_HEADER = 0, ""
    request = rf.get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.66")
    assert client_ip(request) == "127.0.0.1"


def test_behind_trusted_proxies_the_address_is_read_from_the_right(settings):
    settings.TRUSTED_CLIENT_IP_HEADER = ""
    spoofed = "198.51.100.1, 203.0.113.7, 10.0.0.2"  # the client wrote the first entry
    settings.TRUSTED_PROXY_COUNT = 1
    assert client_ip(rf.get("/", HTTP_X_FORWARDED_FOR=spoofed)) == "10.0.0.2"
    settings.TRUSTED_PROXY_COUNT = 2
    assert client_ip(rf.get("/", HTTP_X_FORWARDED_FOR=spoofed)) == "203.0.113.7"
    # Fewer entries than proxies: all were written by ours, the first is the client.
    assert client_ip(rf.get("/", HTTP_X_FORWARDED_FOR="203.0.113.9")) == "203.0.113.9"
    # Garbage falls back to the peer.
    assert client_ip(rf.get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="x")) == "127.0.0.1"


def test_a_trusted_client_ip_header_wins_over_x_forwarded_for(settings):
    settings.TRUSTED_PROXY_COUNT, settings.TRUSTED_CLIENT_IP_HEADER = 1, "X-Real-IP"
    request = rf.get("/", HTTP_X_REAL_IP="203.0.113.5", HTTP_X_FORWARDED_FOR="198.51.100.1")
    assert client_ip(request) == "203.0.113.5"
    assert client_ip(rf.get("/", REMOTE_ADDR="127.0.0.1")) == "127.0.0.1"


def test_allauth_and_the_api_throttle_use_the_same_address(settings):
    settings.TRUSTED_PROXY_COUNT, settings.TRUSTED_CLIENT_IP_HEADER = 1, ""
    request = rf.get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.8")
    assert AccountAdapter(request).get_client_ip(request) == "203.0.113.8"
    assert OrganizationRateThrottle().get_ident(request) == "203.0.113.8"


@pytest.mark.django_db
def test_audit_rows_and_token_last_use_record_the_client_behind_the_proxy(
    settings, alice_org, make_token
):
    settings.TRUSTED_PROXY_COUNT, settings.TRUSTED_CLIENT_IP_HEADER = 1, ""
    token, secret = make_token(alice_org, ("read", "operate", "billing"))
    api = APIClient(REMOTE_ADDR="127.0.0.1")
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    forwarded = {"HTTP_X_FORWARDED_FOR": "198.51.100.1, 203.0.113.20"}
    assert api.get("/api/v1/tokens", **forwarded).status_code == 200
    assert ApiToken.objects.get(pk=token.pk).last_used_ip == "203.0.113.20"
    other, _ = make_token(alice_org, ("read",), name="other")
    assert api.post(f"/api/v1/tokens/{other.pk}/revoke", **forwarded).status_code == 200
    event = AuditEvent.objects.get(action="api_token.revoked", target_id=str(other.pk))
    assert event.ip == "203.0.113.20"
    request = rf.get("/", **forwarded)
    request.user = AnonymousUser()
    assert services.Actor.from_request(request).ip == "203.0.113.20"


def test_with_debug_off_backups_on_the_local_disk_must_be_asked_for():
    result = manage("check", env=production_env(FLEET_BACKUP_S3_BUCKET=""))
    assert result.returncode != 0 and "FLEET_BACKUP_S3_BUCKET is not set" in result.stderr
    meant = production_env(FLEET_BACKUP_S3_BUCKET="", FLEET_BACKUP_LOCAL_IN_PRODUCTION="true")
    assert manage("check", env=meant).returncode == 0
