"""The runtime: what the control plane needs from a container engine.

`runtime_for(host)` is the one factory: it picks the implementation named by the
FLEET_RUNTIME setting (a dotted path to a class taking the host's engine URL; per Host kind
once hosts have kinds) and caches one adapter per engine URL and process. Tests choose the
in-memory fake the same way, by setting, never by patching callers.

The Docker implementation (instances.runtime.docker) is the only module that imports docker.
"""

from __future__ import annotations

import threading

from django.conf import settings
from django.utils.module_loading import import_string

from .docker import (
    CACHE_DIR,
    CONFIG_FILE,
    GATEWAY_PORT,
    MANAGED_LABEL,
    STATE_DIR,
    ConfigInvalid,
    ContainerInfo,
    ContainerNotFound,
    ContainerNotRunning,
    ContainerSpec,
    DockerRuntime,
    EngineUnavailable,
    HelperFailed,
    ImageMissing,
    NotReady,
    RuntimeErrorBase,
    free_port,
    http_ok,
    probe,
    wait_ready,
)

__all__ = [
    "CACHE_DIR",
    "CONFIG_FILE",
    "GATEWAY_PORT",
    "MANAGED_LABEL",
    "STATE_DIR",
    "ConfigInvalid",
    "ContainerInfo",
    "ContainerNotFound",
    "ContainerNotRunning",
    "ContainerSpec",
    "DockerRuntime",
    "EngineUnavailable",
    "HelperFailed",
    "ImageMissing",
    "NotReady",
    "RuntimeErrorBase",
    "free_port",
    "http_ok",
    "probe",
    "runtime_for",
    "reset_runtimes",
    "wait_ready",
]

_runtimes: dict[tuple[str, str], object] = {}
_runtimes_lock = threading.Lock()


def runtime_for(host):
    """The engine adapter for a Host, of the class FLEET_RUNTIME names (cached per URL)."""
    path = settings.FLEET_RUNTIME
    key = (path, host.base_url)
    with _runtimes_lock:
        rt = _runtimes.get(key)
        if rt is None:
            rt = import_string(path)(host.base_url)
            _runtimes[key] = rt
        return rt


def reset_runtimes() -> None:
    """Forget cached adapters (a setting changed, or a test swapped the runtime)."""
    with _runtimes_lock:
        _runtimes.clear()
