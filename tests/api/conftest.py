"""Fixtures for the REST API tests: plans, instances, sessions, backups and a small world.

Nothing here starts a container: services record an Operation and enqueue its task with
transaction.on_commit, which never fires inside a test's (rolled back) transaction. The
`no_enqueue` fixture (autouse) makes sure of it: enqueueing fails the test.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.models import AuditEvent
from accounts.services import SYSTEM
from billing.models import Plan, Subscription, UsageDay
from instances.models import Instance, Operation
from sessions_mgmt.models import Backup, Session
from tests.factories import BackupFactory, InstanceFactory, OperationFactory, SessionFactory

API = "/api/v1"
FULL = ("read", "operate", "billing")
SECRET_KEY_VALUE = "sk-alice-very-secret-provider-key"
GATEWAY_TOKEN_VALUE = "gw-alice-very-secret-gateway-token"
CHANNEL_TOKEN_VALUE = "tg-alice-very-secret-channel-token"


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    """The cast's passwords are hashed once per test; the default hasher costs ~0.3 s each."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session")
def _telegram_peer():
    """The local Telegram Bot API peer (tests/channels): a deploy's channel_token is checked
    with getMe; it knows the token test_instances.DEPLOY carries."""
    from tests.channels.telegram_peer import TelegramPeer

    peer = TelegramPeer(["127.0.0.1"]).start()
    peer.add_bot("acme_api_bot", token="700123456:AAacmeTelegramTokenForTheApiTests0123")
    yield peer
    peer.stop()


@pytest.fixture(autouse=True)
def _telegram_at_the_peer(_telegram_peer, settings):
    settings.FLEET_TELEGRAM_API_ROOT = _telegram_peer.url_for("127.0.0.1")


@pytest.fixture(autouse=True)
def no_enqueue(monkeypatch):
    """Fail loudly if anything tries to enqueue an operation (that would start a container)."""
    from instances import operations

    def refuse(op_id):  # pragma: no cover - only runs on a regression
        raise AssertionError(f"operation {op_id} was enqueued during an API test")

    monkeypatch.setattr(operations, "enqueue_operation", refuse)


@pytest.fixture
def plan(db):
    plan, _ = Plan.objects.update_or_create(
        slug="api-tests",
        defaults={
            "name": "API tests",
            "monthly_price_cents": 9900,
            "max_instances": 100,
            "max_memory_mb": 16384,
            "max_cpus": Decimal("8"),
        },
    )
    return plan


def subscribe(org, plan):
    Subscription.objects.update_or_create(
        organization=org, defaults={"plan": plan, "status": Subscription.Status.ACTIVE}
    )


def make_instance(org, name, **kwargs) -> Instance:
    """The API suite's presets (the secrets no answer may carry) over tests/factories.py."""
    presets = {
        "openclaw_version": "2026.9.5",
        "provider": Instance.Provider.OPENAI,
        "model_name": "gpt-4o-mini",
        "provider_api_key": SECRET_KEY_VALUE,
        "gateway_token": GATEWAY_TOKEN_VALUE,
        "channel_token": CHANNEL_TOKEN_VALUE,
        "health": "unknown",
        "running_since": None,
    }
    return InstanceFactory(organization=org, name=name, **{**presets, **kwargs})


def make_session(instance, key, **kwargs) -> Session:
    now = timezone.now()
    presets = {
        "model": "gpt-4o-mini",
        "last_activity_at": now,
        "started_at": now - dt.timedelta(hours=1),
        "message_count": 4,
        "input_tokens": 1000,
        "output_tokens": 200,
        "cost_usd": Decimal("0.010000"),
    }
    return SessionFactory(instance=instance, session_key=key, **{**presets, **kwargs})


def make_backup(instance, **kwargs) -> Backup:
    presets = {"storage_name": f"{instance.pk}/backup.tar.zst", "size_bytes": 1234}
    return BackupFactory(instance=instance, **{**presets, **kwargs})


def make_operation(instance, kind=Operation.Kind.DEPLOY, state=Operation.State.SUCCEEDED):
    now = timezone.now().isoformat()
    step = {"name": "container", "state": "done", "started_at": now, "finished_at": now}
    return OperationFactory(
        instance=instance,
        kind=kind,
        state=state,
        steps=[{**step, "detail": ""}],
        started_at=None,
        finished_at=None,
    )


def token_client(secret: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return api


class World:
    """alice's organization with one of everything, and charlie's with his own."""

    def __init__(self, alice_org, charlie_org, plan, make_token):
        subscribe(alice_org, plan)
        subscribe(charlie_org, plan)
        self.alice_org, self.charlie_org = alice_org, charlie_org
        self.running = make_instance(
            alice_org, "alice-bot", external_id="alice-ext-1", client_name="Alice Client"
        )
        self.stopped = make_instance(alice_org, "alice-stopped", status=Instance.Status.STOPPED)
        self.operation = make_operation(self.running)
        self.session = make_session(self.running, "agent:main:telegram:dm:alice-secret-chat")
        self.backup = make_backup(self.running)
        today = timezone.localdate()
        UsageDay.objects.create(
            instance=self.running,
            organization=alice_org,
            day=today,
            running_seconds=3600,
            input_tokens=1000,
            compute_cost_usd=Decimal("0.01"),
            llm_cost_usd=Decimal("0.02"),
        )
        self.membership = alice_org.memberships.first()
        self.extra_token, _ = make_token(alice_org, ("read",), name="alice-extra")
        self.audit = AuditEvent.objects.filter(organization=alice_org).first()

        self.charlie_bot = make_instance(charlie_org, "charlie-bot")
        make_session(self.charlie_bot, "agent:main:telegram:dm:charlie-chat")
        make_backup(self.charlie_bot)
        make_operation(self.charlie_bot)

        _, self.alice_secret = make_token(alice_org, FULL, name="alice-full")
        _, self.alice_read_secret = make_token(alice_org, ("read",), name="alice-read")
        revoked, self.alice_revoked_secret = make_token(alice_org, FULL, name="alice-revoked")
        account_services.api_token_revoke(actor=SYSTEM, token=revoked)
        _, self.charlie_secret = make_token(charlie_org, FULL, name="charlie-full")

    def alice_markers(self) -> list[str]:
        """Strings that must never appear in a response to charlie."""
        return [
            "alice-bot",
            "alice-stopped",
            "alice-ext-1",
            "Alice Client",
            "alice@example.com",
            "Alice Co",
            "alice-secret-chat",
            str(self.running.pk),
            str(self.stopped.pk),
            str(self.operation.pk),
            str(self.backup.pk),
            str(self.extra_token.pk),
        ]


@pytest.fixture
def world(alice, charlie, alice_org, charlie_org, plan, make_token):
    return World(alice_org, charlie_org, plan, make_token)


@pytest.fixture
def transcript_stub(monkeypatch):
    """Transcripts are read from the running container; tests answer from memory instead."""
    calls = []

    def transcript_page(*, instance, session_key, before=None, limit=50):
        calls.append({"instance": instance.pk, "session_key": session_key, "before": before})
        messages = [
            {
                "id": "m1",
                "role": "user",
                "text": "hello",
                "at": timezone.now(),
                "model": "",
                "input_tokens": 0,
                "output_tokens": 0,
            }
        ]
        return {"messages": messages, "before": 10 if before is None else None}

    from sessions_mgmt import services as session_services

    monkeypatch.setattr(session_services, "transcript_page", transcript_page, raising=False)
    return calls


def pytest_collection_modifyitems(items):
    """schemathesis gives every operation's test the function's node id; xdist schedules by
    node id, so all but the first would silently not run on workers. Give each its own id."""
    from _pytest.nodeid import coerce_node_id  # pytest 9 keeps the id here (pinned version)

    for item in items:
        named = type(item).__name__ == "SchemathesisFunction" and "[" in item.name
        if named and "[" not in item.nodeid:
            item._id = coerce_node_id(f"{item.nodeid}[{item.name.split('[', 1)[1]}")
