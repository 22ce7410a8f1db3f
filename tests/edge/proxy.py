"""A real Caddy per test session (a pytest plugin listed in tests/conftest.py).

`edge_proxy` starts Debian's caddy with only its admin API, on free loopback ports, with its own
storage (its local CA) in a temporary directory, and points this process (and, through the
environment, the Celery worker the suite starts) at it. instances/edge.py then loads the server
and the routes, exactly as with `make run`. A missing caddy FAILS with the command that installs
it. `edge_proxy.kill()` / `.start()` play a crashed and restarted proxy.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from django.conf import settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CaddyProcess:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.admin_port = free_port()
        self.https_port = free_port()
        self.http_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / "caddy.log"
        self.boot = workdir / "boot.json"
        self.boot.write_text(
            json.dumps(
                {
                    "admin": {"listen": f"127.0.0.1:{self.admin_port}"},
                    "storage": {"module": "file_system", "root": str(workdir / "data")},
                }
            )
        )

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self, timeout: float = 20) -> CaddyProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            ["caddy", "run", "--config", str(self.boot)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "HOME": str(self.workdir), "XDG_DATA_HOME": str(self.workdir)},
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"caddy exited at start; see {self.log_path}", pytrace=False)
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.admin_port), timeout=0.5),
            ):
                return self
            time.sleep(0.1)
        pytest.fail(f"caddy's admin API did not answer in {timeout}s; see {self.log_path}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def ssl_context(self) -> ssl.SSLContext:
        """Trusts only this proxy's local CA."""
        from instances import edge

        ctx = ssl.create_default_context(cadata=edge.root_ca_pem())
        return ctx

    def ca_file(self) -> str:
        from instances import edge

        path = self.workdir / "root.pem"
        path.write_text(edge.root_ca_pem())
        return str(path)


EDGE_ENV = (
    "FLEET_EDGE_ADMIN_URL",
    "FLEET_EDGE_LISTEN",
    "FLEET_EDGE_HTTP_PORT",
    "FLEET_EDGE_PUBLIC_PORT",
    "FLEET_BASE_DOMAIN",
    "FLEET_EDGE_TLS",
)


@pytest.fixture(scope="session")
def edge_proxy(tmp_path_factory):
    """The session's Caddy; settings and os.environ point at it (the worker inherits them)."""
    if shutil.which("caddy") is None:
        pytest.fail(
            "caddy is not installed: run `bash scripts/ensure-caddy.sh` (Debian's caddy package)",
            pytrace=False,
        )
    caddy = CaddyProcess(tmp_path_factory.mktemp("edge")).start()
    values = {
        "FLEET_EDGE_ADMIN_URL": caddy.admin_url,
        "FLEET_EDGE_LISTEN": f"127.0.0.1:{caddy.https_port}",
        "FLEET_EDGE_HTTP_PORT": caddy.http_port,
        "FLEET_EDGE_PUBLIC_PORT": caddy.https_port,
        "FLEET_BASE_DOMAIN": "localhost",
        "FLEET_EDGE_TLS": "internal",
    }
    saved_env = {k: os.environ.get(k) for k in EDGE_ENV}
    saved = {k: getattr(settings, k) for k in EDGE_ENV}
    for key, value in values.items():
        setattr(settings, key, value)
        os.environ[key] = str(value)
    yield caddy
    caddy.stop()
    for key, value in saved.items():
        setattr(settings, key, value)
    for key, value in saved_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
