"""The browser fixtures are a suite-wide plugin: tests/browser/fixtures.py, listed in
tests/conftest.py (one Chromium for tests/browser and tests/edge)."""
