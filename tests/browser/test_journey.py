"""A customer's whole first hour, in headless Chromium against the real stack.

Live server (transactional database) + a real Celery worker + the real Docker engine, OpenClaw
image and the mock LLM. ONE instance is deployed for the whole flow (a boot takes ~20 s and
~1 GB). Steps and what stands in for what:

 1. sign up, confirm the email (read from the locmem outbox);
 2. the dashboard says: choose a plan; the plans page;
 3. Stripe Checkout is unreachable from tests: a comped subscription stands in for it
    (tests.fleet_fixtures.make_entitled), exactly what a completed checkout's webhook leaves;
 4. the deploy wizard with the custom provider pointing at the mock LLM;
 5. the live progress until "Your assistant is running";
 6. reveal the gateway token (with the confirmation) and chat through the gateway's HTTP API;
 7. sync sessions (sessions_mgmt.services.sync_instance_sessions) and read the transcript;
 8. back up now, with live progress;
 9. restore that backup: the warning, the typed confirmation, live progress.

A PNG of every step goes to artifacts/screenshots/journey-*.png. Any console error, uncaught page
error or HTTP status >= 500 fails the test.
"""

import json
import re
import urllib.request

import pytest
from django.core import mail

from accounts.models import Organization
from instances.models import Instance
from tests.fleet_fixtures import DEPLOY_TIMEOUT, MOCK_MODEL, make_entitled

pytestmark = [
    pytest.mark.browser,
    pytest.mark.docker,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
]

EMAIL = "dana@example.com"
PASSWORD = "a-long-Passphrase-9"
NAME = "journey-bot"
OP_TIMEOUT_MS = DEPLOY_TIMEOUT * 1000


def _wait_for_operation(page, state="succeeded"):
    """Wait on the live progress card (htmx polling) until the operation finishes."""
    page.wait_for_selector(
        "#operation[data-state=succeeded], #operation[data-state=failed]", timeout=OP_TIMEOUT_MS
    )
    got = page.get_attribute("#operation", "data-state")
    if got != state:
        pytest.fail(f"operation {got}: {page.inner_text('#operation')}")


def _chat(gateway_url: str, token: str, text: str) -> str:
    body = json.dumps(
        {
            "model": "openclaw:main",
            "user": "journey-test",
            "messages": [{"role": "user", "content": text}],
        }
    ).encode()
    request = urllib.request.Request(
        f"{gateway_url}/v1/chat/completions",
        data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())["choices"][0]["message"]["content"]


def test_a_customer_signs_up_deploys_chats_backs_up_and_restores(
    live_server,
    settings,
    browser_page,
    screenshot,
    docker_runtime,
    openclaw_image,
    mock_llm,
    mock_prices,
    celery_worker_process,
    fleet_plane,
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    page, watch = browser_page
    base = live_server.url

    # 1. Sign up and confirm the email.
    page.goto(base + "/")
    screenshot(page, "journey-01-home")
    page.get_by_role("link", name="Start for $1").first.click()
    page.locator("#id_email").fill(EMAIL)
    page.locator("#id_password1").fill(PASSWORD)
    page.locator("#id_password2").fill(PASSWORD)
    screenshot(page, "journey-02-signup")
    page.get_by_role("button", name="Create account").click()
    page.get_by_role("heading", name="Check your email").wait_for()
    screenshot(page, "journey-03-check-email")
    assert len(mail.outbox) == 1, [m.subject for m in mail.outbox]
    link = re.search(r"https?://\S+/accounts/confirm-email/\S+/", mail.outbox[0].body).group(0)
    page.goto(base + "/accounts/" + link.split("/accounts/", 1)[1])
    screenshot(page, "journey-04-confirm-email")
    page.get_by_role("button", name="Confirm my email").click()
    if "/accounts/login/" in page.url:
        page.locator("#id_login").fill(EMAIL)
        page.locator("#id_password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
    page.goto(base + "/dashboard/")
    page.get_by_role("heading", name="Get your assistant running").wait_for()
    screenshot(page, "journey-05-dashboard-choose-a-plan")
    watch.check()

    # 2. Choose a plan. 3. Stripe Checkout is out of reach: a comped subscription stands in.
    page.get_by_role("link", name="See plans").click()
    page.wait_for_url(re.compile(r".*/billing/.*"))
    screenshot(page, "journey-06-plans")
    org = Organization.objects.get(memberships__user__email=EMAIL)
    make_entitled(org, name="Starter", max_instances=1)

    # 4. The deploy wizard: a custom OpenAI-compatible endpoint (the mock LLM).
    page.goto(base + "/dashboard/")
    page.get_by_role("link", name="Deploy your first assistant").or_(
        page.get_by_role("link", name="Deploy an assistant").first
    ).first.click()
    page.wait_for_url(re.compile(r".*/instances/new/"))
    page.locator("#id_name").fill(NAME)
    page.get_by_label("Custom OpenAI-compatible endpoint").check()
    page.locator("#id_model_name").fill(MOCK_MODEL)
    page.locator("#id_model_base_url").fill(mock_llm.container_url)
    screenshot(page, "journey-07-deploy-wizard")
    page.get_by_role("button", name="Deploy").click()

    # 5. Live progress until it runs.
    page.wait_for_url(re.compile(r".*/operations/.*"))
    page.wait_for_selector(".steps li.step-running, .steps li.step-done", timeout=60_000)
    screenshot(page, "journey-08-deploy-progress")
    _wait_for_operation(page)
    page.get_by_role("heading", name="Your assistant is running").wait_for()
    screenshot(page, "journey-09-running")
    instance = Instance.objects.get(organization=org, name=NAME)
    assert instance.status == Instance.Status.RUNNING

    # 6. Reveal the token once, with the confirmation, and chat through the gateway.
    page.get_by_label("I understand").check()
    page.get_by_role("button", name="Reveal token").click()
    token = page.locator("#gateway-token").inner_text().strip()
    screenshot(page, "journey-10-token")
    assert token == instance.gateway_token
    reply = _chat(instance.gateway_url, token, "Hello from the journey test")
    assert "Hello from the journey test" in reply

    # The instance page: live status, logs, the other apps' cards.
    page.goto(f"{base}/instances/{instance.pk}/")
    page.locator("#status .badge-running").wait_for()
    page.locator("#logs pre, #logs p").first.wait_for()
    screenshot(page, "journey-11-instance")

    # 7. Sync sessions and read the transcript.
    from sessions_mgmt.services import sync_instance_sessions

    sync_instance_sessions(instance=instance, full=True)
    page.goto(base + "/sessions/")
    screenshot(page, "journey-12-sessions")
    page.locator("table a").first.click()
    page.get_by_text("Hello from the journey test").first.wait_for(timeout=30_000)
    screenshot(page, "journey-13-transcript")

    # 8. Back up now, with live progress.
    page.goto(f"{base}/instances/{instance.pk}/")
    page.get_by_role("button", name="Back up now").click()
    page.wait_for_url(re.compile(r".*/operations/.*"))
    _wait_for_operation(page)
    screenshot(page, "journey-14-backup-done")

    # 9. Restore it: the warning, the typed confirmation, live progress.
    page.goto(f"{base}/sessions/instances/{instance.pk}/backups/")
    page.get_by_role("link", name=re.compile("Restore")).first.click()
    page.get_by_role("heading", name=re.compile("replaces")).wait_for()
    screenshot(page, "journey-15-restore-warning")
    page.locator("#id_confirm").fill(NAME)
    page.get_by_role("button", name="Restore this backup").click()
    page.wait_for_url(re.compile(r".*/operations/.*"))
    page.wait_for_selector(".steps li", timeout=60_000)
    screenshot(page, "journey-16-restore-progress")
    _wait_for_operation(page)
    screenshot(page, "journey-17-restore-done")
    page.goto(f"{base}/instances/{instance.pk}/")
    page.locator("#status .badge-running").wait_for(timeout=60_000)
    screenshot(page, "journey-18-instance-after-restore")
    watch.check()
