"""Bench: sync an instance holding 10,000 sessions, then re-sync it unchanged.

    .venv/bin/python bench/sessions.py   (DATABASE_URL defaults to .../clawfleet_bench_sessions)

What it does (a real engine, the real image, the mock LLM, our services; no Celery worker: the
deploy operation runs in this process):
1. creates (or reuses) the bench database and migrates it, an organization with a comped plan, and
   deploys one instance on the mock LLM;
2. writes N sessions (default 10,000, BENCH_SESSIONS) through OpenClaw's own write path:
   BENCH_TURNS (default 50) real conversation turns on the OpenAI-compatible HTTP API
   (`x-openclaw-session-key`, the customer path, with usage), and the rest with the gateway RPC
   `sessions.create` (what the Control UI's "new session" does), sent by a small Node script run
   inside the container that uses OpenClaw's public plugin SDK client
   (`openclaw/plugin-sdk/gateway-runtime` `callGatewayFromCli`, loopback, the gateway's token),
   BENCH_CONCURRENCY at a time. A full agent turn per session costs ~0.3 s of gateway CPU
   (a 12k-token prompt build), far too slow for 10,000 on 2 vCPUs; nothing touches SQLite;
3. times `sync_instance_sessions` (first sync: everything new), an incremental re-sync, and a full
   re-sync of unchanged rows;
4. removes the instance (container and volume) unless BENCH_KEEP=1.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fleet.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/clawfleet_bench_sessions")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/7")
os.environ.setdefault("CACHE_URL", "redis://127.0.0.1:6379/8")
os.environ.setdefault("FLEET_NETWORK", "clawfleet-bench")
os.environ.setdefault("LOG_LEVEL", "WARNING")


def ensure_database() -> None:
    import psycopg

    url = os.environ["DATABASE_URL"]
    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname=%s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_django() -> None:
    ensure_database()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


class Bench:
    """One deployed instance on the mock LLM, in the bench database."""

    def __init__(self, name_prefix: str):
        from decimal import Decimal

        from accounts.models import Organization
        from billing.models import ModelPrice, Plan, Subscription
        from instances.models import Host
        from instances.runtime import runtime_for
        from mockllm.server import start_mock_llm

        self.runtime = None
        slug = f"bench-{uuid.uuid4().hex[:6]}"
        self.org = Organization.objects.create(name=slug, slug=slug, kind="agency")
        plan = Plan.objects.create(
            slug=slug,
            name="Bench",
            monthly_price_cents=0,
            max_instances=5,
            max_memory_mb=4096,
            max_cpus=Decimal("2"),
        )
        Subscription.objects.update_or_create(
            organization=self.org, defaults={"plan": plan, "status": Subscription.Status.COMPED}
        )
        ModelPrice.objects.get_or_create(
            provider="custom",
            model="mock-model",
            effective_from="2020-01-01",
            defaults={"input_per_mtok": Decimal("3"), "output_per_mtok": Decimal("15")},
        )
        host = Host.objects.filter(is_active=True).first()
        if host is not None:
            self.runtime = runtime_for(host)
        from django.conf import settings

        from instances.runtime import DockerRuntime

        rt = self.runtime or DockerRuntime(settings.FLEET_DOCKER_URL)
        rt.ensure_network(settings.FLEET_NETWORK)
        hosts = ["127.0.0.1", rt.network_gateway(settings.FLEET_NETWORK)]
        with contextlib.suppress(Exception):
            hosts.append(rt.network_gateway("bridge"))
        self.mock = start_mock_llm(list(dict.fromkeys(hosts)), 0, model_id="mock-model")
        self.base_url = f"http://host.docker.internal:{self.mock.port}/v1"
        self.name = f"{name_prefix}-{uuid.uuid4().hex[:6]}"

    def attach(self, instance_id: str):
        """Mirror rows for a bench container that outlived its database (interrupted run)."""
        from django.conf import settings

        from instances.models import Host, Instance
        from instances.runtime import runtime_for

        host, _ = Host.objects.get_or_create(
            name="bench-local", defaults={"base_url": settings.FLEET_DOCKER_URL}
        )
        rt = runtime_for(host)
        probe = Instance(id=uuid.UUID(instance_id))
        info = rt.inspect(probe.container_name)
        if info is None or not info.running:
            raise SystemExit(f"{probe.container_name} is not running")
        self.instance, _ = Instance.objects.update_or_create(
            id=probe.id,
            defaults={
                "organization": self.org,
                "name": self.name,
                "openclaw_version": "2026.9.6",
                "status": Instance.Status.RUNNING,
                "host": host,
                "host_port": info.host_port,
                "provider": "custom",
                "model_name": "mock-model",
                "gateway_token": "bench-unused-" + "x" * 20,
            },
        )
        self.runtime = rt
        return self.instance

    def deploy(self):
        from accounts.services import SYSTEM
        from instances import services
        from instances.operations import run_operation
        from instances.runtime import runtime_for

        t = time.monotonic()
        op = services.instance_deploy(
            actor=SYSTEM,
            organization=self.org,
            name=self.name,
            provider="custom",
            model_name="mock-model",
            api_key="",
            model_base_url=self.base_url,
            memory_mb=2048,
            cpus=2,
        )
        op = run_operation(op.pk)
        if op.state != "succeeded":
            raise SystemExit(f"deploy failed: {op.error} {op.error_detail}")
        self.instance = op.instance
        self.instance.refresh_from_db()
        self.runtime = runtime_for(self.instance.host)
        print(f"deployed {self.instance.name} in {time.monotonic() - t:.1f} s")
        return self.instance

    def chat(self, key: str, text: str) -> None:
        import requests

        r = requests.post(
            f"http://127.0.0.1:{self.instance.host_port}/v1/chat/completions",
            headers={
                "Authorization": f"Bearer {self.instance.gateway_token}",
                "x-openclaw-session-key": key,
            },
            json={"model": "openclaw", "messages": [{"role": "user", "content": text}]},
            timeout=300,
        )
        r.raise_for_status()

    def cleanup(self) -> None:
        self.mock.stop()
        if os.environ.get("BENCH_KEEP") == "1":
            return
        try:
            self.runtime.remove(self.instance.container_name)
            self.runtime.remove_volume(self.instance.volume_name)
        except Exception as exc:  # noqa: BLE001
            print(f"cleanup: {exc}")


CREATE_JS = """
const sdk = await import("/opt/openclaw/node_modules/openclaw/dist/plugin-sdk/gateway-runtime.js");
const [start, end, conc] = process.argv.slice(1).map(Number);
let next = start, failed = 0;
async function lane() {
  while (next < end) {
    const i = next++;
    const key = `agent:main:bench-rpc-${String(i).padStart(6, "0")}`;
    try { await sdk.callGatewayFromCli("sessions.create", { timeout: "60000" }, { key }); }
    catch (e) { failed++; if (failed < 3) console.error(String(e).slice(0, 200)); }
  }
}
await Promise.all(Array.from({ length: conc }, lane));
console.log(JSON.stringify({ created: end - start - failed, failed }));
"""


def create_sessions(bench: Bench, start: int, end: int, concurrency: int) -> None:
    """sessions.create for keys start..end-1, in batches of 1,000 (one Node process each)."""
    from sessions_mgmt.services import client_for

    client = client_for(bench.instance)
    for lo in range(start, end, 1000):
        hi = min(end, lo + 1000)
        t = time.monotonic()
        code, out, err = client.run(
            [
                "node",
                "--input-type=module",
                "-e",
                CREATE_JS,
                "--",
                str(lo),
                str(hi),
                str(concurrency),
            ],
            timeout=1800,
        )
        if code != 0:
            raise SystemExit(f"sessions.create batch failed ({code}): {err[-300:]!r}")
        print(
            f"  {hi} sessions ({(hi - lo) / (time.monotonic() - t):.0f}/s) {out.decode().strip()}",
            flush=True,
        )


def main() -> int:
    setup_django()
    from sessions_mgmt import services
    from sessions_mgmt.models import Session

    n = int(os.environ.get("BENCH_SESSIONS", "10000"))
    concurrency = int(os.environ.get("BENCH_CONCURRENCY", "16"))
    bench = Bench("bench-sessions")
    attach = os.environ.get("BENCH_ATTACH", "")
    instance = bench.attach(attach) if attach else bench.deploy()
    try:
        write_s = 0.0
        if attach:  # a bench instance left by an interrupted run: top it up to n
            have = services.client_for(instance).count_sessions()
            print(f"attached to {instance.container_name} holding {have} sessions")
            t = time.monotonic()
            if have < n:
                create_sessions(bench, have, n, concurrency)
            write_s = time.monotonic() - t
        else:
            turns = min(n, int(os.environ.get("BENCH_TURNS", "50")))
            t = time.monotonic()
            with ThreadPoolExecutor(4) as pool:
                keys = [f"bench-turn-{i:05d}" for i in range(turns)]
                list(pool.map(lambda k: bench.chat(k, f"hello {k}"), keys))
            print(f"{turns} conversation turns in {time.monotonic() - t:.1f} s", flush=True)
            t = time.monotonic()
            create_sessions(bench, turns, n, concurrency)
            write_s = time.monotonic() - t
            print(
                f"created {n - turns} sessions with sessions.create in {write_s:.1f} s "
                f"({(n - turns) / write_s:.1f}/s)"
            )

        def timed(label, **kwargs):
            instance.refresh_from_db()
            t0 = time.monotonic()
            result = services.sync_instance_sessions(instance=instance, **kwargs)
            dt = time.monotonic() - t0
            print(
                f"{label}: {dt:.2f} s  created={result.created} updated={result.updated} "
                f"unchanged={result.unchanged} pruned={result.pruned} full={result.full} "
                f"pending={len(result.pending)}"
            )
            return dt, result

        first, r1 = timed("first sync (all new)", full=True)
        while r1.pending:  # OpenClaw's usage cache still warming up
            _, r1 = timed("  follow-up sync for pending rows")
        incr, _ = timed("re-sync, incremental, unchanged")
        full, _ = timed("re-sync, full listing, unchanged", full=True)
        count = Session.objects.filter(instance=instance).count()
        print(f"mirror rows: {count}")
        print(
            f"RESULT sessions={count} first_sync_s={first:.2f} incremental_resync_s={incr:.2f} "
            f"full_resync_s={full:.2f} write_s={write_s:.0f}"
        )
    finally:
        bench.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
