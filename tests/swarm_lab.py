"""The three-node swarm lab (scripts/swarm-lab.sh) as a session fixture.

`up` is idempotent and `down` removes everything it made, so the fixture brings the lab up for
the session and down at its end. A file lock makes a second xdist worker wait until the first
is done with it (the swarm tests live in one module, so one worker owns them today). Anything
missing (dockerd, ip, nsenter, root, a kernel module, the images on the host engine) fails the
tests with the script's own message, never skips them. SWARM_LAB_KEEP=1 leaves the lab up
after the session (development only: the next `up` is then ~1 s).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
LAB = ROOT / "scripts" / "swarm-lab.sh"
LOCK = Path("/run/clawfleet-swarm-lab.lock")
PROBE_IMAGE = "clawfleet/debian-base:bookworm"
TOOLS = ("dockerd", "docker", "ip", "iptables", "nsenter", "unshare", "setsid")


@dataclass
class SwarmLab:
    env: dict[str, str]
    up_seconds: float

    @property
    def manager_url(self) -> str:
        return self.env["NODE_1_SOCK"]

    def node_urls(self) -> list[str]:
        return [self.env[f"NODE_{n}_SOCK"] for n in (1, 2, 3)]


def lab_images() -> list[str]:
    return [
        settings.FLEET_OPENCLAW_IMAGE.format(version=settings.FLEET_DEFAULT_VERSION),
        PROBE_IMAGE,
    ]


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(LAB), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="session")
def swarm_lab():
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"the swarm lab needs {', '.join(missing)}: apt-get install docker.io iproute2 "
            "iptables util-linux (scripts/ensure-docker.sh installs the engine)",
            pytrace=False,
        )
    if os.geteuid() != 0:
        pytest.fail("the swarm lab needs root (network namespaces, dockerd)", pytrace=False)
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        started = time.monotonic()
        up = _run("up", *lab_images(), timeout=900)
        if up.returncode != 0:
            _run("down", timeout=300)
            pytest.fail(f"scripts/swarm-lab.sh up failed:\n{up.stderr[-3000:]}", pytrace=False)
        lab_env = dict(
            line.split("=", 1)
            for line in _run("env", timeout=30).stdout.splitlines()
            if "=" in line
        )
        try:
            yield SwarmLab(lab_env, time.monotonic() - started)
        finally:
            if os.environ.get("SWARM_LAB_KEEP") != "1":
                down = _run("down", timeout=300)
                if down.returncode != 0:
                    print(f"scripts/swarm-lab.sh down failed:\n{down.stderr[-2000:]}")
