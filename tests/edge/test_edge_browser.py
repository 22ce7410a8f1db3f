"""Open assistant, in headless Chromium: the dashboard's button opens OpenClaw's Control UI at
the instance's public address through the real edge proxy, signed in by a one-time link; a
message typed there gets the mock LLM's reply. A second use of the same link is refused.

Real stack: live server, Celery worker, Docker engine, OpenClaw image, mock LLM, Caddy. The
browser trusts the proxy's local CA by ignoring certificate errors (the TLS chain itself is
verified against that CA in tests/edge/test_edge_docker.py)."""

from __future__ import annotations

import re
import time

import pytest

from accounts.models import AuditEvent
from tests.browser.fixtures import CHROMIUM_ARGS, login, steady_navigation
from tests.factories import MembershipFactory, UserFactory, verified
from tests.fleet_fixtures import OPERATION_TIMEOUT, deploy_and_wait

pytestmark = [
    pytest.mark.browser,
    pytest.mark.docker,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
]

PASSWORD = "a-long-Passphrase-9"
MESSAGE = "hello from the control ui"


def _context(chromium_browser):
    ctx = chromium_browser.new_context(
        viewport={"width": 1280, "height": 900}, ignore_https_errors=True
    )
    ctx.set_default_timeout(60_000)
    return ctx


def test_open_assistant_signs_in_to_the_control_ui_at_the_public_address(
    live_server,
    chromium_browser,
    screenshot,
    alice_org,
    entitled_org,
    mock_prices,
    fleet_plane,
    docker_runtime,
    openclaw_image,
    mock_llm,
    edge_proxy,
    celery_worker_process,
):
    assert CHROMIUM_ARGS  # the same Chromium the browser suite uses
    entitled_org(alice_org)
    user = verified(UserFactory(email="olive@example.com", password=PASSWORD))
    MembershipFactory(user=user, organization=alice_org, role="member")
    instance, _ = deploy_and_wait(
        alice_org, name="chat", base_url=mock_llm.container_url, timeout=OPERATION_TIMEOUT
    )
    origin = instance.endpoint_url

    ctx = _context(chromium_browser)
    page = steady_navigation(ctx.new_page())
    login(page, live_server, "olive@example.com", PASSWORD)
    page.goto(f"{live_server.url}/instances/{instance.pk}/")
    assert page.get_by_text(origin).first.is_visible()
    with ctx.expect_page() as opened:
        page.click("#open-assistant")
    ui = opened.value
    ui.wait_for_load_state()
    first_url = ui.url
    assert first_url.startswith(origin), first_url
    assert AuditEvent.objects.filter(
        action="instance.sign_in_link_issued", target_id=str(instance.pk)
    ).exists()
    box = ui.locator("textarea").first
    try:
        box.wait_for(state="visible", timeout=90_000)
        box.fill(MESSAGE)
        box.press("Enter")
        # OpenClaw prefixes the turn with its conversation info, which the mock echoes too.
        reply = re.compile(rf"Mock reply:.*{re.escape(MESSAGE)}", re.S)
        ui.get_by_text(reply).first.wait_for(timeout=120_000)
    finally:
        screenshot(ui, "edge-control-ui")
    ctx.close()


def test_a_sign_in_link_works_once(
    alice_org,
    entitled_org,
    mock_prices,
    fleet_plane,
    chromium_browser,
    screenshot,
    docker_runtime,
    openclaw_image,
    mock_llm,
    edge_proxy,
    celery_worker_process,
):
    from accounts.services import SYSTEM
    from instances import public_access

    entitled_org(alice_org)
    instance, _ = deploy_and_wait(
        alice_org, name="once", base_url=mock_llm.container_url, timeout=OPERATION_TIMEOUT
    )
    link = public_access.sign_in_link_create(actor=SYSTEM, instance=instance, via="api")
    assert link.url.startswith(instance.endpoint_url + "/#")
    assert "bootstrapToken=" in link.url and instance.gateway_token not in link.url

    first = _context(chromium_browser)
    page = steady_navigation(first.new_page())
    page.goto(link.url)
    page.locator("textarea").first.wait_for(state="visible", timeout=90_000)
    screenshot(page, "edge-link-first-use")
    first.close()

    second = _context(chromium_browser)
    page = steady_navigation(second.new_page())
    page.goto(link.url)
    deadline = time.monotonic() + 60
    text = ""
    while time.monotonic() < deadline:
        text = page.inner_text("body")
        if re.search(r"rejected|expired|already used|pairing required", text, re.I):
            break
        time.sleep(1)
    screenshot(page, "edge-link-second-use")
    # OpenClaw's own refusal ("Gateway secret rejected"), and no chat box.
    assert re.search(r"rejected|expired|already used|pairing required", text, re.I), text[:500]
    assert not page.locator("textarea").first.is_visible()
    second.close()
