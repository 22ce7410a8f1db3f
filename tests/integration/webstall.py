"""The web-stall measurement shared by tests/integration/test_web_stall.py and bench/isolation.py
(issue 12): gunicorn with the Procfile's shape, timed GETs, the p99, and the gateway's host
processes to stop (SIGSTOP) and continue. No pytest and no Django here: both callers use it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent.parent


class WebError(RuntimeError):
    """gunicorn exited or never answered /healthz."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(env: dict[str, str], log_path: Path, timeout: float = 60):
    """gunicorn as the Procfile runs it (2 workers x 4 threads) on a free loopback port, with
    `env`. Returns (process, base URL) once /healthz answers; raises WebError otherwise."""
    port = free_port()
    log = open(log_path, "wb")  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "fleet.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--threads",
            "4",
            "--timeout",
            "120",
        ],
        cwd=BASE_DIR,
        env={**env, "ALLOWED_HOSTS": "127.0.0.1,localhost"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise WebError(f"gunicorn exited; see {log_path}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2):  # noqa: S310 - loopback
                return proc, base
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    stop_gunicorn(proc)
    raise WebError(f"gunicorn did not answer /healthz within {timeout:.0f} s; see {log_path}")


def stop_gunicorn(proc: subprocess.Popen) -> None:
    """SIGTERM its process group; SIGKILL when threads are stuck on a stalled call."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:  # threads stuck on a stalled call: the probe failed
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def get(url: str, token: str | None = None, timeout: float = 90) -> tuple[int, float, bytes]:
    """(status, seconds, body) of one GET, with a bearer token when given."""
    request = urllib.request.Request(url)  # noqa: S310 - loopback only
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read(), exc.code
    return status, time.monotonic() - started, body


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def gateway_pids(container: str) -> list[int]:
    """Host pids of the container's processes other than docker-init (PID 1 inside)."""
    out = subprocess.run(
        ["docker", "top", container, "-eo", "pid,args"], capture_output=True, text=True, check=True
    ).stdout.splitlines()[1:]
    return [int(line.split()[0]) for line in out if "docker-init" not in line]


def signal_all(pids: list[int], sig: int) -> None:
    """`docker top` also lists processes exec'd into the container (its healthcheck, a CLI
    call), which end on their own timeout meanwhile: a pid that is gone is skipped."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def measure(web: str, token: str, seconds: float) -> tuple[list[float], list[int]]:
    """Alternate /healthz and the token's tenant's instance list for `seconds`."""
    latencies, statuses = [], []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for url, auth in ((f"{web}/healthz", None), (f"{web}/api/v1/instances", token)):
            status, took, _ = get(url, auth, timeout=30)
            latencies.append(took)
            statuses.append(status)
    return latencies, statuses
