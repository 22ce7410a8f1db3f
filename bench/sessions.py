"""Bench: sync an instance holding 10,000 sessions over the gateway RPC transport.

    .venv/bin/python bench/sessions.py   (DATABASE_URL defaults to .../clawfleet_bench_sessions)

What it does (a real engine, the real image, the mock LLM, our services; no Celery worker: the
deploy operation runs in this process):
1. creates (or reuses) the bench database and migrates it, an organization with a comped plan;
   starts the mock LLM on 127.0.0.1 and on the bench network's gateway address (what a gateway
   container reaches the host by: the instance's base URL names that address, no
   host.docker.internal lookup), allows exactly that port in the egress policy, installs the
   network's firewall and deploys one instance. One chat turn checks the path end to end: if the
   gateway cannot reach the mock, the bench stops with a message saying so.
2. writes N sessions (BENCH_SESSIONS, default 10,000) through OpenClaw's own store: BENCH_TURNS
   (default 20) real turns on the OpenAI-compatible HTTP API, the rest with `sessions.create`
   over the client's kept-alive WebSocket RPC (the control plane's paired device), at most
   BENCH_CONCURRENCY (default 4: OpenClaw refused 8 concurrent) in flight. Each call has a
   timeout (BENCH_CALL_TIMEOUT, 30 s); a slow or refused answer is retried (BENCH_RETRIES, 5)
   and counted; the whole creation has a deadline (BENCH_CREATE_DEADLINE, 1,800 s) after which
   the bench goes on with what exists and says so. OpenClaw's rate is printed per 1,000.
3. times the first sync, an unchanged re-sync, a sync after 1 % changed (`sessions.patch` of a
   label), and one RPC round trip beside one `docker exec true` in the same container.
4. removes the instance (container and volume) unless BENCH_KEEP=1. BENCH_TRACE=1 logs every
   gateway call with its transport and time (where a sync spends its time).
"""

from __future__ import annotations

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
        try:
            gateway = rt.network_gateway(settings.FLEET_NETWORK)
        except Exception as exc:  # noqa: BLE001 - said in words, the bench cannot go on
            raise SystemExit(
                f"cannot read the gateway address of network {settings.FLEET_NETWORK}: {exc}"
            ) from exc
        if not gateway:
            raise SystemExit(f"network {settings.FLEET_NETWORK} has no IPv4 gateway address")
        try:
            self.mock = start_mock_llm(["127.0.0.1", gateway], 0, model_id="mock-model")
        except OSError as exc:
            raise SystemExit(f"the mock LLM cannot listen on {gateway}: {exc}") from exc
        # The gateway reaches the mock on its network's gateway address, and only that port is
        # allowed through the instances' egress firewall.
        from instances import egress

        settings.FLEET_EGRESS_ALLOW = [
            *settings.FLEET_EGRESS_ALLOW,
            *egress.mock_llm_allow(self.mock.port),
        ]
        try:
            egress.install(settings.FLEET_NETWORK, runtime=rt)
        except Exception as exc:  # noqa: BLE001
            raise SystemExit(f"the egress firewall could not be installed: {exc}") from exc
        self.base_url = self.mock.url_for(gateway)
        print(f"mock LLM at {self.base_url} (network {settings.FLEET_NETWORK})", flush=True)
        self.name = f"{name_prefix}-{uuid.uuid4().hex[:6]}"

    def attach(self, instance_id: str):
        """A bench container left by an interrupted run (BENCH_KEEP=1, or a killed bench): its
        row in the bench database when it is still there (the real gateway token, which the RPC
        needs), else a row made from the engine's view (exec only: the token is unknown)."""
        from django.conf import settings

        from instances.models import Host, Instance
        from instances.runtime import runtime_for

        kept = Instance.objects.select_related("host").filter(pk=instance_id).first()
        if kept is not None and kept.host is not None:
            self.instance, self.runtime = kept, runtime_for(kept.host)
            from sessions_mgmt.models import Session

            Session.objects.filter(instance=kept).delete()  # the first sync starts from nothing
            Instance.objects.filter(pk=kept.pk).update(sessions_cursor=0)
            kept.sessions_cursor = 0
            return kept
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
        if r.status_code != 200:
            raise SystemExit(
                f"a chat turn answered {r.status_code}: the gateway could not reach the mock LLM"
                f" at {self.base_url} (see `docker logs {self.instance.container_name}`)"
            )

    def cleanup(self) -> None:
        self.mock.stop()
        if os.environ.get("BENCH_KEEP") == "1":
            return
        try:
            self.runtime.remove(self.instance.container_name)
            self.runtime.remove_volume(self.instance.volume_name)
        except Exception as exc:  # noqa: BLE001
            print(f"cleanup: {exc}")


def create_sessions(client, keys: list[str], *, concurrency: int) -> dict:
    """`sessions.create` for every key over the kept-alive RPC, `concurrency` in flight; a slow
    or refused answer is retried and counted; stops at the deadline instead of hanging."""
    from instances.openclaw.client import OpenClawError

    timeout = int(os.environ.get("BENCH_CALL_TIMEOUT", "30"))
    retries = int(os.environ.get("BENCH_RETRIES", "5"))
    deadline = time.monotonic() + int(os.environ.get("BENCH_CREATE_DEADLINE", "1800"))
    stats = {"created": 0, "retries": 0, "failed": 0, "errors": {}}

    def one(key: str) -> None:
        for attempt in range(retries + 1):
            if time.monotonic() > deadline:
                stats["failed"] += 1
                return
            try:
                client.call("sessions.create", {"key": key}, timeout=timeout, retries=0)
                stats["created"] += 1
                return
            except OpenClawError as exc:
                kind = exc.kind or type(exc).__name__
                stats["errors"][kind] = stats["errors"].get(kind, 0) + 1
                if attempt == retries:
                    stats["failed"] += 1
                    return
                stats["retries"] += 1
                time.sleep(min(0.5 * (attempt + 1), 3))

    t0 = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        for lo in range(0, len(keys), 1000):
            t = time.monotonic()
            list(pool.map(one, keys[lo : lo + 1000]))
            n = min(1000, len(keys) - lo)
            print(
                f"  {lo + n} sessions: {n / (time.monotonic() - t):.1f}/s "
                f"(retries so far {stats['retries']}, failed {stats['failed']})",
                flush=True,
            )
            if time.monotonic() > deadline:
                print("  creation deadline reached: going on with what exists", flush=True)
                break
    stats["seconds"] = time.monotonic() - t0
    return stats


def median_ms(fn, n: int = 20) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return times[len(times) // 2]


def main() -> int:
    setup_django()
    if os.environ.get("BENCH_TRACE") == "1":  # every gateway call with its transport and ms
        import logging

        logging.basicConfig()
        logging.getLogger("instances.openclaw.client").setLevel(logging.DEBUG)
    from sessions_mgmt import services
    from sessions_mgmt.models import Session

    n = int(os.environ.get("BENCH_SESSIONS", "10000"))
    concurrency = int(os.environ.get("BENCH_CONCURRENCY", "4"))
    bench = Bench("bench-sessions")
    attach = os.environ.get("BENCH_ATTACH", "")
    instance = bench.attach(attach) if attach else bench.deploy()
    figures: dict[str, str] = {}
    try:
        client = services.client_for(instance)
        have = client.count_sessions()
        turns = 0 if attach else min(n, int(os.environ.get("BENCH_TURNS", "20")))
        if turns:
            t = time.monotonic()
            with ThreadPoolExecutor(2) as pool:
                keys = [f"bench-turn-{i:05d}" for i in range(turns)]
                list(pool.map(lambda k: bench.chat(k, f"hello {k}"), keys))
            print(f"{turns} conversation turns in {time.monotonic() - t:.1f} s", flush=True)
            have = client.count_sessions()
        keys = [f"agent:main:bench-rpc-{i:06d}" for i in range(have, n)]
        if keys:
            stats = create_sessions(client, keys, concurrency=concurrency)
            rate = stats["created"] / stats["seconds"] if stats["seconds"] else 0
            print(
                f"sessions.create: {stats['created']} in {stats['seconds']:.1f} s ({rate:.1f}/s),"
                f" retries {stats['retries']}, failed {stats['failed']}, errors {stats['errors']}"
            )
            figures.update(create_per_s=f"{rate:.1f}", create_retries=str(stats["retries"]))

        def timed(label, **kwargs):
            instance.refresh_from_db()
            t0 = time.monotonic()
            result = services.sync_instance_sessions(instance=instance, **kwargs)
            dt = time.monotonic() - t0
            print(
                f"{label}: {dt * 1000:.0f} ms  created={result.created} updated={result.updated}"
                f" unchanged={result.unchanged} pruned={result.pruned} full={result.full}"
                f" quick={result.quick} pages={result.pages} pending={len(result.pending)}",
                flush=True,
            )
            return dt, result

        first, r1 = timed("first sync (all new)", full=True)
        for _ in range(5):  # OpenClaw's usage cache still warming up
            if not r1.pending:
                break
            time.sleep(2)
            _, r1 = timed("  follow-up sync for pending rows")
        unchanged, _ = timed("re-sync, unchanged", full=False)
        count = Session.objects.filter(instance=instance).count()
        rows = client.list_sessions().rows
        touched = [r.key for r in rows[: max(1, len(rows) // 100)]]
        for key in touched:
            client.call("sessions.patch", {"key": key, "label": f"bench {uuid.uuid4().hex[:6]}"})
        changed, r3 = timed(f"re-sync, {len(touched)} changed (1 %)", full=False)

        rpc_ms = median_ms(lambda: client.call("sessions.list", {"limit": 1}))
        rpc_transport = client.last_transport
        http_ms = median_ms(lambda: client.call("health", {}))
        exec_ms = median_ms(
            lambda: bench.runtime.exec(instance.container_name, ["true"], timeout=60)
        )
        print(
            f"one RPC round trip: {rpc_ms:.1f} ms ({rpc_transport}), {http_ms:.1f} ms (http-rpc);"
            f" docker exec true: {exec_ms:.1f} ms; ratio exec/ws-rpc {exec_ms / rpc_ms:.1f}x"
        )
        figures.update(
            sessions=str(count),
            first_sync_ms=f"{first * 1000:.0f}",
            unchanged_resync_ms=f"{unchanged * 1000:.0f}",
            changed_1pct_ms=f"{changed * 1000:.0f}",
            ws_rpc_ms=f"{rpc_ms:.1f}",
            http_rpc_ms=f"{http_ms:.1f}",
            exec_true_ms=f"{exec_ms:.1f}",
        )
        print("RESULT " + " ".join(f"{k}={v}" for k, v in figures.items()))
    finally:
        bench.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
