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
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.factories import SessionFactory
from tests.fleet_fixtures import deploy_and_wait
from tests.integration.webstall import WebError, start_gunicorn, stop_gunicorn
from tests.integration.webstall import gateway_pids as _gateway_pids
from tests.integration.webstall import get as _get
from tests.integration.webstall import measure as _measure
from tests.integration.webstall import p99 as _p99
from tests.integration.webstall import signal_all as _signal_all

pytestmark = [pytest.mark.docker, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def web(celery_worker_process, tmp_path):
    """gunicorn as the Procfile runs it, on the test database, on a free loopback port."""
    try:
        # The loop below sends a few hundred list requests a second: far past the per-tenant
        # rate limit, which is not what this test measures.
        env = {**celery_worker_process.env, "API_RATE_LIMIT": "1000000/min"}
        proc, base = start_gunicorn(env, tmp_path / "gunicorn.log")
    except WebError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield base
    stop_gunicorn(proc)


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
        _signal_all(pids, signal.SIGCONT)

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
