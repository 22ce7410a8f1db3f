"""The browser suite's Chromium fixtures, for the Open-assistant test (test_edge_browser.py)."""

from tests.browser.conftest import chromium_browser, screenshot  # noqa: F401
