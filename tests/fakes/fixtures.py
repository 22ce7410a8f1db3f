"""Fixtures that install the fakes (a pytest plugin listed in tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture
def fake_runtime(settings):
    """The in-memory runtime the code under test gets from ``runtime_for(host)``: chosen by the
    FLEET_RUNTIME setting, as a real backend is (never by patching callers)."""
    from instances.runtime import reset_runtimes

    from . import runtime

    fake = runtime.install()
    settings.FLEET_RUNTIME = "tests.fakes.runtime.installed"
    reset_runtimes()
    yield fake
    runtime.uninstall()
    reset_runtimes()
