"""Health over HTTP: a gateway's /healthz and /readyz on its published port (loopback for one
engine, the swarm manager's reach port for Swarm). No engine needed; every backend's ``probe``
and ``wait_ready`` use these."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from .errors import NotReady
from .types import ContainerInfo

LOOPBACK = "127.0.0.1"


def http_ok(host_port: int, path: str, timeout: float = 2.0, address: str = LOOPBACK) -> bool:
    """True when http://ADDRESS:PORT/PATH answers 200."""
    url = f"http://{address}:{int(host_port)}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - fixed host
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


# OpenClaw's /readyz also fails while a configured channel account fails (a revoked Telegram
# token); /startupz says the gateway itself is up (its docs: "use it for traffic admission").
# A gateway whose /readyz stays down this long after /startupz came up is ready as a gateway:
# its channels are judged separately (channels app), never by restarting it.
CHANNEL_GRACE = 15.0


def probe(host_port: int, timeout: float = 2.0, address: str = LOOPBACK) -> dict[str, bool]:
    """{"healthz", "readyz"} of the gateway on ADDRESS:PORT. "readyz" is the gateway's own
    readiness: /readyz, or /startupz when a channel holds /readyz down."""
    ready = http_ok(host_port, "/readyz", timeout, address) or http_ok(
        host_port, "/startupz", timeout, address
    )
    return {"healthz": http_ok(host_port, "/healthz", timeout, address), "readyz": ready}


def wait_ready(
    host_port: int,
    timeout: float = 120,
    *,
    interval: float = 0.5,
    check: Callable[[], ContainerInfo | None] | None = None,
    logs: Callable[[], str] | None = None,
    channel_grace: float = CHANNEL_GRACE,
    address: str = LOOPBACK,
) -> float:
    """Poll /readyz on 127.0.0.1:PORT until 200 (or /startupz for ``channel_grace`` seconds:
    a broken channel does not make a gateway unready); returns the seconds waited. ``check()``
    (optional) reports the container: when it is gone or stopped, fail at once with NotReady
    carrying its info and ``logs()``. Raises NotReady at the timeout."""
    start = time.monotonic()
    deadline = start + timeout
    polls = 0
    started_at = None
    while True:
        if http_ok(host_port, "/readyz", 2.0, address):
            return time.monotonic() - start
        if http_ok(host_port, "/startupz", 2.0, address):
            started_at = started_at or time.monotonic()
            if time.monotonic() - started_at >= channel_grace:
                return time.monotonic() - start
        else:
            started_at = None
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
            raise NotReady(f"{address}:{host_port}/readyz not ready after {timeout:.0f}s")
        time.sleep(interval)


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (tests and benchmarks; placement allocates the
    ports of instances)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
