"""No tenant can stall the web tier (issue 12): a gateway stopped with SIGSTOP and 20 parallel
transcript requests for it; /healthz and another tenant's API calls keep answering, and the
stalled tenant gets an error on its own answers.

Real parts: gunicorn with the Procfile's shape (2 workers x 4 threads), the real worker, engine,
OpenClaw image and mock LLM. Latencies are printed (a figure for the note), never asserted.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.factories import SessionFactory
from tests.fleet_fixtures import BASE_DIR, deploy_and_wait

pytestmark = [pytest.mark.docker, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def web(celery_worker_process, tmp_path):
    """gunicorn as the Procfile runs it, on the test database, on a free loopback port."""
    port = _free_port()
    log = open(tmp_path / "gunicorn.log", "wb")  # noqa: SIM115 - the child keeps it
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
        env={**celery_worker_process.env, "ALLOWED_HOSTS": "127.0.0.1,localhost"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"gunicorn exited; see {tmp_path / 'gunicorn.log'}", pytrace=False)
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2):  # noqa: S310 - loopback
                break
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    else:
        pytest.fail("gunicorn did not answer /healthz within 60 s", pytrace=False)
    yield base
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:  # threads stuck on a stalled call: the probe failed
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    log.close()


def _get(url: str, token: str | None = None, timeout: float = 90) -> tuple[int, float, bytes]:
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


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _gateway_pids(container: str) -> list[int]:
    """Host pids of the container's processes other than docker-init (PID 1 inside)."""
    out = subprocess.run(
        ["docker", "top", container, "-eo", "pid,args"], capture_output=True, text=True, check=True
    ).stdout.splitlines()[1:]
    return [int(line.split()[0]) for line in out if "docker-init" not in line]


def _measure(web: str, token: str, seconds: float) -> tuple[list[float], list[int]]:
    latencies, statuses = [], []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for url, auth in ((f"{web}/healthz", None), (f"{web}/api/v1/instances", token)):
            status, took, _ = _get(url, auth, timeout=30)
            latencies.append(took)
            statuses.append(status)
    return latencies, statuses


def test_a_stalled_gateway_never_stalls_the_web_tier(
    web, alice_org, charlie_org, entitled_org, mock_llm, fleet_plane, make_token
):
    entitled_org(alice_org)
    entitled_org(charlie_org)
    instance, _ = deploy_and_wait(alice_org, name="stalled", base_url=mock_llm.container_url)
    session = SessionFactory(instance=instance, session_key="agent:main:stall-test")
    _, alice_token = make_token(alice_org)
    _, charlie_token = make_token(charlie_org)

    before, _ = _measure(web, charlie_token, 5)
    pids = _gateway_pids(instance.container_name)
    assert pids, "no gateway process found to stop"
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(20) as pool:
            stalled = [
                pool.submit(_get, f"{web}/api/v1/sessions/{session.pk}", alice_token)
                for _ in range(20)
            ]
            time.sleep(1)
            during, during_statuses = _measure(web, charlie_token, 10)
            answers = [future.result() for future in stalled]
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)

    print(
        f"\nweb tier while one gateway is stopped: p99 {_p99(during) * 1000:.0f} ms over "
        f"{len(during)} requests (healthz + another tenant's API) vs {_p99(before) * 1000:.0f} ms "
        f"before ({len(before)} requests); ratio {_p99(during) / max(_p99(before), 1e-6):.2f}; "
        f"the stalled tenant's 20 reads took up to {max(a[1] for a in answers):.1f} s"
    )
    assert set(during_statuses) == {200}, "other tenants and /healthz must keep answering"
    for status, _, body in answers:
        assert status == 200, body[:300]
        data = json.loads(body)
        assert data["transcript"] is None
        assert data["transcript_error"], "the stalled tenant is told why"
