"""The edge proxy's cost, measured in one run against a baseline of the same run.

    DEBUG=true .venv/bin/python bench/edge.py [--runs 40] [--names 10] [--json out.json]

What it does: starts a real Caddy (admin API and HTTPS on free loopback ports, its own local CA in
a temporary directory), the mock LLM, and deploys ONE real instance in this process (the deploy
handler through instances.operations, the same code the worker runs). Then:

1. chat-completion latency, interleaved one by one so both paths see the same machine load:
   through the proxy (HTTPS to the instance's public name, a kept-alive TLS connection) and
   straight to the container's loopback port (plain HTTP, kept alive). Prints p50/p99 of each
   and the ratio proxy/direct (goal <= 1.05 at p50).
2. "instance ready" -> "address answers": for N fresh names (each a new label on the instance,
   so every round pays the route write, Caddy's config reload and the on-demand certificate),
   the time from the handler's route sync (what a deploy does the moment the gateway is ready)
   until GET /healthz through the proxy answers 200 (goal <= 1 s).

Database: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/clawfleet_bench_edge, created
and migrated when missing). Everything it creates (container, volume, network, firewall rules,
Caddy, mock LLM) is removed at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
RUN_TAG = uuid.uuid4().hex[:8]
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/clawfleet_bench_edge"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ADMIN, HTTPS, HTTP = free_port(), free_port(), free_port()
os.environ.setdefault("DATABASE_URL", DEFAULT_DB)
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/2")
os.environ.setdefault("CACHE_URL", "redis://127.0.0.1:6379/3")
# Nothing is consumed by anyone: the deploy runs in this process.
os.environ["CELERY_BROKER_TRANSPORT_OPTIONS"] = json.dumps(
    {"global_keyprefix": f"clawfleet-bench-edge-{RUN_TAG}:"}
)
os.environ["FLEET_NETWORK"] = f"clawfleet-bench-{RUN_TAG}"
os.environ["FLEET_EDGE_ADMIN_URL"] = f"http://127.0.0.1:{ADMIN}"
os.environ["FLEET_EDGE_LISTEN"] = f"127.0.0.1:{HTTPS}"
os.environ["FLEET_EDGE_HTTP_PORT"] = str(HTTP)
os.environ["FLEET_EDGE_PUBLIC_PORT"] = str(HTTPS)
os.environ["FLEET_BASE_DOMAIN"] = "localhost"
os.environ["FLEET_EDGE_TLS"] = "internal"
os.environ.setdefault("FLEET_EGRESS_RESOLVE_NAMES", "false")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fleet.settings")


def ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1].split("?")[0]
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    rank = max(1, int(-(-pct * len(ordered) // 100)))
    return ordered[rank - 1]


class Loopback(http.client.HTTPSConnection):
    """TLS with the public name as SNI, the socket to 127.0.0.1 (*.localhost)."""

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def start_caddy(workdir: Path) -> subprocess.Popen:
    boot = workdir / "boot.json"
    boot.write_text(
        json.dumps(
            {
                "admin": {"listen": f"127.0.0.1:{ADMIN}"},
                "storage": {"module": "file_system", "root": str(workdir / "data")},
                "logging": {"logs": {"default": {"level": "ERROR"}}},
            }
        )
    )
    log = open(workdir / "caddy.log", "wb")  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen(
        ["caddy", "run", "--config", str(boot)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "HOME": str(workdir), "XDG_DATA_HOME": str(workdir)},
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", ADMIN), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.1)
    raise SystemExit("caddy's admin API did not answer")


def chat_body(text: str) -> bytes:
    return json.dumps(
        {"model": "openclaw", "messages": [{"role": "user", "content": text}]}
    ).encode()


def timed_chat(conn, token: str, text: str) -> float:
    """One completion on a kept-alive connection. A connection the server closed while idle
    (Node's keep-alive timeout) is opened again and the request timed afresh."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    for attempt in range(2):
        start = time.perf_counter()
        try:
            conn.request("POST", "/v1/chat/completions", body=chat_body(text), headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            break
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            conn.close()
            if attempt:
                raise
    elapsed = time.perf_counter() - start
    if resp.status != 200 or b"Mock reply" not in body:
        raise RuntimeError(f"chat answered {resp.status}: {body[:200]!r}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40, help="chat completions per path")
    parser.add_argument("--names", type=int, default=10, help="fresh names for ready->answers")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    if shutil.which("caddy") is None:
        raise SystemExit("caddy is missing: run bash scripts/ensure-caddy.sh")

    ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

    from accounts.models import Organization
    from accounts.services import Actor
    from billing.models import Plan, Subscription
    from instances import edge, egress, operations, placement, services
    from instances.models import Instance
    from instances.runtime import runtime_for
    from mockllm.server import start_mock_llm

    workdir = Path(tempfile.mkdtemp(prefix="clawfleet-bench-edge-"))
    caddy = start_caddy(workdir)
    host = placement.ensure_local_host()
    rt = runtime_for(host)
    network = settings.FLEET_NETWORK
    rt.ensure_network(network)
    gateway = rt.network_gateway(network)
    mock = start_mock_llm(["127.0.0.1", gateway], 0, model_id="mock-model")
    settings.FLEET_EGRESS_ALLOW = [*settings.FLEET_EGRESS_ALLOW, *egress.mock_llm_allow(mock.port)]
    egress.install(network, runtime=rt)
    instance = None
    org = Organization.objects.create(name=f"Bench {RUN_TAG}", slug=f"bench-{RUN_TAG}")
    plan = Plan.objects.create(
        slug=f"bench-edge-{RUN_TAG}",
        name="Bench",
        monthly_price_cents=0,
        max_instances=10,
        max_memory_mb=2048,
    )
    Subscription.objects.create(organization=org, plan=plan, status="comped")
    try:
        op = services.instance_deploy(
            actor=Actor(via="cli"),
            organization=org,
            name="bench",
            provider="custom",
            model_name="mock-model",
            api_key="",
            model_base_url=mock.url_for(gateway),
        )
        op = operations.run_operation(op.pk)
        if op.state != "succeeded":
            raise SystemExit(f"deploy {op.state}: {op.error} {op.error_detail}")
        instance = Instance.objects.get(pk=op.instance_id)
        token = instance.gateway_token
        ctx = ssl.create_default_context(cadata=edge.root_ca_pem())
        public_host = edge.host_for(instance)

        # 1. latency, interleaved
        proxied = Loopback(public_host, HTTPS, context=ctx, timeout=120)
        direct = http.client.HTTPConnection("127.0.0.1", instance.host_port, timeout=120)
        timed_chat(proxied, token, "warm up")
        timed_chat(direct, token, "warm up")
        via_proxy, straight = [], []
        for i in range(args.runs):
            if i % 2:
                straight.append(timed_chat(direct, token, f"direct {i}"))
                via_proxy.append(timed_chat(proxied, token, f"proxy {i}"))
            else:
                via_proxy.append(timed_chat(proxied, token, f"proxy {i}"))
                straight.append(timed_chat(direct, token, f"direct {i}"))
        proxied.close()
        direct.close()

        # 2. ready -> answers, on fresh names
        answers = []
        for i in range(args.names):
            label = f"bench-{RUN_TAG}-{i}"
            Instance.objects.filter(pk=instance.pk).update(edge_label=label)
            start = time.perf_counter()
            edge.sync_instance(instance)
            while True:
                try:
                    conn = Loopback(f"{label}.localhost", HTTPS, context=ctx, timeout=5)
                    conn.request("GET", "/healthz")
                    status = conn.getresponse().status
                    conn.close()
                except (OSError, ssl.SSLError):
                    status = 0
                if status == 200:
                    break
                if time.perf_counter() - start > 30:
                    raise RuntimeError(f"{label} did not answer within 30 s")
                time.sleep(0.01)
            answers.append(time.perf_counter() - start)
    finally:
        if instance is not None:
            rt.remove(instance.container_name)
            rt.remove_volume(instance.volume_name)
            Instance.objects.filter(pk=instance.pk).update(status="purged", host_port=None)
        mock.stop()
        try:
            egress.remove(network, runtime=rt)
        finally:
            rt.remove_network(network)
            caddy.terminate()
            caddy.wait(timeout=10)
            shutil.rmtree(workdir, ignore_errors=True)

    p50_proxy, p50_direct = statistics.median(via_proxy), statistics.median(straight)
    p99_proxy, p99_direct = percentile(via_proxy, 99), percentile(straight, 99)
    result = {
        "runs": args.runs,
        "chat_p50_ms": {"proxy": p50_proxy * 1000, "direct": p50_direct * 1000},
        "chat_p99_ms": {"proxy": p99_proxy * 1000, "direct": p99_direct * 1000},
        "ratio_p50": p50_proxy / p50_direct,
        "ratio_p99": p99_proxy / p99_direct,
        "ready_to_answer_ms": {
            "p50": statistics.median(answers) * 1000,
            "max": max(answers) * 1000,
            "names": len(answers),
        },
    }
    print(f"chat completion, {args.runs} each, interleaved (one instance, mock LLM):")
    print(f"  through the proxy  p50 {p50_proxy * 1000:7.1f} ms  p99 {p99_proxy * 1000:7.1f} ms")
    print(f"  straight           p50 {p50_direct * 1000:7.1f} ms  p99 {p99_direct * 1000:7.1f} ms")
    print(
        f"  ratio proxy/direct p50 {result['ratio_p50']:.3f} (goal <= 1.05)  "
        f"p99 {result['ratio_p99']:.3f}"
    )
    print(
        f"ready -> address answers ({len(answers)} fresh names, route + reload + certificate): "
        f"p50 {result['ready_to_answer_ms']['p50']:.0f} ms, max "
        f"{result['ready_to_answer_ms']['max']:.0f} ms (goal <= 1000 ms)"
    )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
