"""The runtime: what the control plane needs from a container engine.

`runtime_for(host)` is the one factory: it picks the implementation by the Host's kind, named
by a setting (a dotted path to a class taking the host's engine URL): FLEET_RUNTIME for a Docker
engine, FLEET_SWARM_RUNTIME for a swarm; it caches one adapter per class, engine URL and
process. Tests choose the in-memory fake the same way, by setting, never by patching callers.

Modules: contract.py (the Protocol every backend provides, with what converging means for each
method), types.py (ContainerSpec, ContainerInfo, shared names), errors.py, probes.py (HTTP health
on a published port), docker.py (DockerRuntime: one engine), swarm.py (SwarmRuntime: a Docker
Swarm); those two are the only modules that import docker. The names
re-exported here are the package's API (`from instances import runtime; runtime.X`).
OpenClaw-specific scripts that run through a runtime live in instances/openclaw/.
"""

from __future__ import annotations

import threading

from django.conf import settings
from django.utils.module_loading import import_string

from .contract import PROTOCOL_METHODS, Runtime
from .docker import BASE_ENV, TMPFS, DockerRuntime
from .errors import (
    ConfigInvalid,
    ContainerNotFound,
    ContainerNotRunning,
    EngineUnavailable,
    HelperFailed,
    ImageMissing,
    NetworkUnsafe,
    NotReady,
    OutputTooLarge,
    RuntimeErrorBase,
    VolumeNotFound,
)
from .probes import free_port, http_ok, probe, wait_ready
from .types import (
    CACHE_DIR,
    CONFIG_FILE,
    GATEWAY_PORT,
    MANAGED_LABEL,
    STATE_DIR,
    ContainerInfo,
    ContainerSpec,
)

__all__ = [
    "BASE_ENV",
    "CACHE_DIR",
    "CONFIG_FILE",
    "GATEWAY_PORT",
    "MANAGED_LABEL",
    "PROTOCOL_METHODS",
    "STATE_DIR",
    "TMPFS",
    "ConfigInvalid",
    "ContainerInfo",
    "ContainerNotFound",
    "ContainerNotRunning",
    "ContainerSpec",
    "DockerRuntime",
    "EngineUnavailable",
    "HelperFailed",
    "ImageMissing",
    "NetworkUnsafe",
    "NotReady",
    "OutputTooLarge",
    "Runtime",
    "RuntimeErrorBase",
    "VolumeNotFound",
    "free_port",
    "http_ok",
    "probe",
    "runtime_for",
    "reset_runtimes",
    "wait_ready",
]

_runtimes: dict[tuple[str, str], object] = {}
_runtimes_lock = threading.Lock()


def runtime_for(host) -> Runtime:
    """The adapter for a Host: FLEET_SWARM_RUNTIME for a swarm host, FLEET_RUNTIME for a
    Docker engine (cached per class and URL)."""
    kind = getattr(host, "kind", "docker")
    path = settings.FLEET_SWARM_RUNTIME if kind == "swarm" else settings.FLEET_RUNTIME
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
        adapters = list(_runtimes.values())
        _runtimes.clear()
    for rt in adapters:
        close = getattr(rt, "close", None)  # DockerRuntime: release the engine connection
        if callable(close):
            close()
