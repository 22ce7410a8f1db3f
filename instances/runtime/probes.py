"""Health over HTTP: a gateway's /healthz and /readyz on its published loopback port. No engine
needed; every backend's ``probe`` and ``wait_ready`` use these."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from .errors import NotReady
from .types import ContainerInfo


def http_ok(host_port: int, path: str, timeout: float = 2.0) -> bool:
    """True when http://127.0.0.1:PORT/PATH answers 200."""
    url = f"http://127.0.0.1:{int(host_port)}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - fixed host
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def probe(host_port: int, timeout: float = 2.0) -> dict[str, bool]:
    """{"healthz": bool, "readyz": bool} of the gateway on 127.0.0.1:PORT."""
    return {
        "healthz": http_ok(host_port, "/healthz", timeout),
        "readyz": http_ok(host_port, "/readyz", timeout),
    }


def wait_ready(
    host_port: int,
    timeout: float = 120,
    *,
    interval: float = 0.5,
    check: Callable[[], ContainerInfo | None] | None = None,
    logs: Callable[[], str] | None = None,
) -> float:
    """Poll /readyz on 127.0.0.1:PORT until 200; returns the seconds waited. ``check()``
    (optional) reports the container: when it is gone or stopped, fail at once with NotReady
    carrying its info and ``logs()``. Raises NotReady at the timeout."""
    start = time.monotonic()
    deadline = start + timeout
    polls = 0
    while True:
        if http_ok(host_port, "/readyz", timeout=2.0):
            return time.monotonic() - start
        polls += 1
        if check is not None and polls % 4 == 0:
            info = check()
            if info is None or not info.running:
                tail = logs() if (logs and info is not None) else ""
                state = "absent" if info is None else f"{info.status}, exit {info.exit_code}"
                raise NotReady(
                    f"container stopped while waiting for readiness ({state})", info, tail
                )
        if time.monotonic() >= deadline:
            raise NotReady(f"127.0.0.1:{host_port}/readyz not ready after {timeout:.0f}s")
        time.sleep(interval)


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (tests and benchmarks; placement allocates the
    ports of instances)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
