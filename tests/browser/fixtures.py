"""Headless Chromium for the browser tests (Playwright for Python, the system's Chromium): a
plugin of the whole suite (tests/conftest.py), so that tests/browser and tests/edge share ONE
browser (a second sync Playwright in the same session fails: "Sync API inside the asyncio loop").

We never download a browser: a missing /usr/bin/chromium FAILS with the command that installs
it. Every page the tests open is watched: a console error, an uncaught exception or a response
with status >= 500 fails the test. Screenshots go to artifacts/screenshots/ (git-ignored).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


@pytest.fixture(scope="session")
def chromium_browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"{CHROMIUM} is missing: run `bash scripts/ensure-chromium.sh` "
            "(the browser tests never download a browser)",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the live server's database access
    # from the test thread is still synchronous Django code.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


class PageWatch:
    """Collects what must never happen on a page: console errors, page errors, 5xx answers."""

    def __init__(self, page):
        self.page = page
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        page.on("response", self._response)

    def _console(self, msg):
        if msg.type == "error":
            self.problems.append(f"console error: {msg.text} at {msg.location}")

    def _response(self, response):
        if response.status >= 500:
            self.problems.append(f"HTTP {response.status} for {response.url}")

    def check(self):
        assert not self.problems, "\n".join(self.problems)


def steady_navigation(page, attempts: int = 3):
    """Make `page.goto` retry a navigation Chromium aborted with net::ERR_NETWORK_CHANGED.

    Chromium abandons a navigation when a network interface appears or goes, which Docker does
    whenever a test on the other xdist worker creates or removes a network; the request had not
    been answered, so going again is what a user would do (reload)."""
    goto = page.goto

    def goto_steadily(url, **kwargs):
        for attempt in range(attempts):
            try:
                return goto(url, **kwargs)
            except Exception as exc:
                if "ERR_NETWORK_CHANGED" not in str(exc) or attempt == attempts - 1:
                    raise
        return None

    page.goto = goto_steadily
    return page


@pytest.fixture
def browser_page(chromium_browser):
    """(page, watch): a fresh context per test; `watch.check()` runs at teardown too."""
    context = chromium_browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = steady_navigation(context.new_page())
    watch = PageWatch(page)
    yield page, watch
    context.close()
    watch.check()


@pytest.fixture
def screenshot():
    """screenshot(page, "01-signup"): a full-page PNG under artifacts/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str, full_page: bool = True) -> Path:
        path = SCREENSHOTS / f"{re.sub(r'[^a-z0-9-]+', '-', name.lower())}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path

    return take


def login(page, live_server, email: str, password: str) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r".*/dashboard/.*"))
