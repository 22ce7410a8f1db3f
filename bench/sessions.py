"""Bench: sync an instance holding 10,000 sessions, then re-sync it unchanged.

    .venv/bin/python bench/sessions.py   (DATABASE_URL defaults to .../clawfleet_bench)

What it does (a real engine, the real image, the mock LLM, our services; no Celery worker: the
deploy operation runs in this process):
1. creates (or reuses) the bench database and migrates it, an organization with a comped plan, and
   deploys one instance on the mock LLM;
2. writes N sessions (default 10,000, BENCH_SESSIONS) through OpenClaw's own write path: one
   conversation turn per session key on the OpenAI-compatible HTTP API
   (`x-openclaw-session-key`), BENCH_CONCURRENCY at a time. This is what a customer's traffic does;
   nothing touches OpenClaw's SQLite;
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
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/clawfleet_bench")
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
        from instances.services import runtime_for
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

    def deploy(self):
        from accounts.services import SYSTEM
        from instances import services
        from instances.operations import run_operation

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
        self.runtime = services.runtime_for(self.instance.host)
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


def main() -> int:
    setup_django()
    from sessions_mgmt import services
    from sessions_mgmt.models import Session

    n = int(os.environ.get("BENCH_SESSIONS", "10000"))
    concurrency = int(os.environ.get("BENCH_CONCURRENCY", "16"))
    bench = Bench("bench-sessions")
    instance = bench.deploy()
    try:
        t = time.monotonic()
        done = 0
        with ThreadPoolExecutor(concurrency) as pool:
            for _ in pool.map(lambda i: bench.chat(f"bench-{i:05d}", f"hello {i}"), range(n)):
                done += 1
                if done % 1000 == 0:
                    rate = done / (time.monotonic() - t)
                    print(f"  {done} sessions written ({rate:.1f}/s)", flush=True)
        write_s = time.monotonic() - t
        print(f"wrote {n} sessions through the HTTP API in {write_s:.1f} s ({n / write_s:.1f}/s)")

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
            f"full_resync_s={full:.2f} write_rate_per_s={n / write_s:.1f}"
        )
    finally:
        bench.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
