"""Every dashboard page in a real browser: no console errors, no 5xx, a screenshot of each.

Fast (no containers): the instance, its operations and events are rows written by the test, and
the engine's log tail is a stand-in. The full journey with a real deploy is in test_journey.py.
"""

import pytest
from django.urls import reverse

from instances.models import InstanceEvent, Operation
from tests.conftest import PASSWORD
from tests.dashboard.conftest import SECRETS, STEPS
from tests.factories import InstanceFactory, OperationFactory
from tests.fleet_fixtures import make_entitled

from .fixtures import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


LOGS = "2026-11-25T10:00:00Z gateway listening on ws://0.0.0.0:18789\n" * 3


@pytest.fixture
def alice_fleet(alice, alice_org, fake_runtime):
    fake_runtime.canned_logs = LOGS
    make_entitled(alice_org, name="Agency", max_instances=10)
    bot = InstanceFactory(
        organization=alice_org,
        name="support-bot",
        local=True,
        host_port=19201,
        **SECRETS,
        client_name="Acme Dental",
    )
    InstanceFactory(
        organization=alice_org,
        name="booking-bot",
        local=True,
        host_port=19202,
        **SECRETS,
        client_name="Acme Dental",
    )
    InstanceFactory(
        organization=alice_org,
        name="menu-bot",
        local=True,
        host_port=19203,
        **SECRETS,
        client_name="Beta Bakery",
        status="stopped",
    )
    InstanceFactory(
        organization=alice_org,
        name="sandbox",
        local=True,
        host_port=19204,
        **SECRETS,
        status="crash_looping",
    )
    deploy = OperationFactory(instance=bot, steps=STEPS)
    OperationFactory(
        instance=bot,
        kind=Operation.Kind.RESTART,
        state=Operation.State.FAILED,
        error="OpenClaw did not become ready within 120 seconds.",
    )
    InstanceEvent.objects.create(instance=bot, kind="health", message="Healthy again")
    InstanceEvent.objects.create(instance=bot, kind="crash", message="Container exited (137)")
    return bot, deploy


def test_every_page_renders_cleanly_in_chromium(live_server, browser_page, screenshot, alice_fleet):
    page, watch = browser_page
    bot, deploy = alice_fleet
    login(page, live_server, "alice@example.com", PASSWORD)
    pages = {
        "page-dashboard": reverse("dashboard"),
        "page-deploy": reverse("instances:deploy"),
        "page-instance": reverse("instances:detail", args=[bot.pk]),
        "page-operation": reverse("instances:operation", args=[bot.pk, deploy.pk]),
    }
    for name, path in pages.items():
        page.goto(live_server.url + path)
        page.wait_for_load_state("networkidle")
        screenshot(page, name)
        watch.check()
    # The deploy form's inline errors, as a customer sees them.
    page.goto(live_server.url + reverse("instances:deploy"))
    page.locator("#id_name").fill("support-bot")
    page.get_by_label("Anthropic").check()
    page.get_by_role("button", name="Deploy").click()
    page.wait_for_load_state("networkidle")
    assert page.locator("#id_name-errors").is_visible()
    assert page.locator("#id_api_key-errors").is_visible()
    screenshot(page, "page-deploy-errors")
    # Reveal the gateway token after the confirmation.
    page.goto(live_server.url + reverse("instances:detail", args=[bot.pk]))
    page.get_by_label("I understand").check()
    page.get_by_role("button", name="Reveal token").click()
    assert page.locator("#gateway-token").inner_text() == "gw-secret-token-of-alice"
    screenshot(page, "page-token")
    # allauth's own pages (account settings, two-factor) in the product layout.
    for name, path in {
        "page-account-email": reverse("account_email"),
        "page-password-change": reverse("account_change_password"),
        "page-mfa": reverse("mfa_index"),
    }.items():
        page.goto(live_server.url + path)
        screenshot(page, name)
    # Small screens.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(live_server.url + reverse("instances:detail", args=[bot.pk]))
    page.wait_for_load_state("networkidle")
    screenshot(page, "page-instance-mobile")


def test_the_sign_in_pages_look_like_the_product(live_server, browser_page, screenshot, db):
    page, _ = browser_page
    for name, path in {
        "page-home": "/",
        "page-signup": reverse("account_signup"),
        "page-login": reverse("account_login"),
        "page-password-reset": reverse("account_reset_password"),
    }.items():
        page.goto(live_server.url + path)
        screenshot(page, name)
