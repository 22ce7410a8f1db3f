"""`make run`'s mock LLM (scripts/run-mockllm.sh), on the real engine: an instance container (the
OpenClaw image, as its user, on the instances' network behind the egress firewall) reaches it at
http://host.docker.internal:PORT/v1 (what the README tells customers) and at the network's gateway,
once the firewall allows that port (FLEET_EGRESS_ALLOW's DEBUG default); it never reads the
request log, which the operator reads on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import docker
import pytest
from django.conf import settings

from instances import egress
from tests.fleet_fixtures import TEST_NETWORK, TEST_VERSIONS

pytestmark = [pytest.mark.docker]

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
const urls = JSON.parse(process.argv[1]);
(async () => {
  const out = {};
  for (const [name, url] of Object.entries(urls)) {
    try {
      const r = await fetch(url, {signal: AbortSignal.timeout(5000)});
      out[name] = r.status;
    } catch (e) { out[name] = String((e.cause && e.cause.code) || e.name); }
  }
  console.log(JSON.stringify(out));
})();
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def script_mock(tmp_path, docker_runtime):
    port = _free_port()
    env = {
        **os.environ,
        "MOCKLLM_PORT": str(port),
        "FLEET_NETWORK": TEST_NETWORK,
        "MOCKLLM_LOG": str(tmp_path / "mockllm" / "requests.jsonl"),
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    proc = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "run-mockllm.sh")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while True:
        health = f"http://127.0.0.1:{port}/_mock/health"
        with contextlib.suppress(OSError), urllib.request.urlopen(health, timeout=2):  # noqa: S310
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"scripts/run-mockllm.sh did not start: {proc.stdout.read()}")
        time.sleep(0.2)
    yield port
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)


def _probe(image: str, urls: dict[str, str]) -> dict:
    client = docker.DockerClient(base_url=settings.FLEET_DOCKER_URL)
    try:
        out = client.containers.run(
            image,
            entrypoint=["node", "-e", PROBE],
            command=[json.dumps(urls)],
            user="node",
            network=TEST_NETWORK,
            extra_hosts={"host.docker.internal": "host-gateway"},
            remove=True,
            stdout=True,
            stderr=True,
        )
    finally:
        client.close()
    return json.loads(out.decode().strip().splitlines()[-1])


def test_an_instance_container_reaches_the_make_run_mock_llm_but_not_its_request_log(
    docker_runtime, openclaw_image, mock_llm, script_mock
):
    port = script_mock
    gateway = docker_runtime.network_gateway(TEST_NETWORK)
    urls = {
        "host.docker.internal": f"http://host.docker.internal:{port}/v1/models",
        "gateway": f"http://{gateway}:{port}/v1/models",
        "request log": f"http://{gateway}:{port}/_mock/requests",
        "request log (docker0)": f"http://host.docker.internal:{port}/_mock/requests",
    }
    image = openclaw_image[TEST_VERSIONS[0]]
    # The session's firewall (tests allow only their own mock's port): this port is refused.
    refused = _probe(image, {"gateway": urls["gateway"]})
    assert refused["gateway"] != 200, refused
    # What `make run` allows with DEBUG on: gateway:PORT and host-gateway:PORT.
    session_allow = list(settings.FLEET_EGRESS_ALLOW)
    egress.install(TEST_NETWORK, allow=[*session_allow, *egress.mock_llm_allow(port)])
    try:
        seen = _probe(image, urls)
    finally:
        egress.install(TEST_NETWORK, allow=session_allow)
    assert seen == {
        "host.docker.internal": 200,
        "gateway": 200,
        "request log": 404,
        "request log (docker0)": 404,
    }, seen
    # The operator reads it on loopback.
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_mock/requests", timeout=5) as r:  # noqa: S310
        assert r.status == 200
