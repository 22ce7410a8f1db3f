"""Benchmark of the REST API against a baseline, in one run.

    .venv/bin/python bench/api.py [--seconds 15] [--concurrency 8] [--workers 2] [--keep]

1. Creates a dedicated database (clawfleet_bench_api, dropped at the end unless --keep), migrates
   it, and seeds 100 organizations × 10 instances (1,000), 100,000 sessions and 30 days of usage
   rows per instance (30,000) with bulk_create.
2. Serves the app with gunicorn on 127.0.0.1 (a free port, --workers sync workers, DEBUG off,
   persistent database connections, a rate limit high enough not to interfere).
3. Runs a closed-loop client (--concurrency threads, each with a keep-alive http.client
   connection, --seconds per endpoint) against GET /healthz (the baseline: no database),
   GET /api/v1/instances, GET /api/v1/sessions and GET /api/v1/usage (this month) with one
   organization's token, and prints
   requests/s, p50 and p99 latency, and the ratios to the baseline.

The client runs on the same machine as the server, so it competes for CPU: compare the ratios,
not the absolute numbers, between machines.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from cryptography.fernet import Fernet

BASE_DIR = Path(__file__).resolve().parent.parent
BENCH_DB = "clawfleet_bench_api"
ORGS = 100
INSTANCES_PER_ORG = 10
SESSIONS_PER_INSTANCE = 100
USAGE_DAYS = 30  # one usage row per instance per day (30,000)


def _db_urls() -> tuple[str, str]:
    """(admin URL to the postgres database, URL of the bench database)."""
    base = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/clawfleet"
    parts = urlsplit(base)
    admin = urlunsplit(parts._replace(path="/postgres"))
    bench = urlunsplit(parts._replace(path=f"/{BENCH_DB}"))
    return admin, bench


def _psql_url(url: str) -> str:
    return url.replace("postgres://", "postgresql://", 1)


def create_database(admin_url: str) -> None:
    import psycopg

    with psycopg.connect(_psql_url(admin_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')


def drop_database(admin_url: str) -> None:
    import psycopg

    with psycopg.connect(_psql_url(admin_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')


def seed() -> str:
    """Seed the bench database; return the secret of a full-scope token of organization 0."""
    from django.core.management import call_command
    from django.utils import timezone

    from accounts.models import Membership, Organization, Role, User
    from accounts.services import SYSTEM, api_token_create
    from instances.models import Instance
    from sessions_mgmt.models import Session

    call_command("migrate", verbosity=0)
    t0 = time.monotonic()
    orgs = Organization.objects.bulk_create(
        [
            Organization(name=f"Agency {i:03d}", slug=f"agency-{i:03d}", kind="agency")
            for i in range(ORGS)
        ]
    )
    users = User.objects.bulk_create(
        [User(email=f"owner{i:03d}@bench.test", password="!") for i in range(ORGS)]
    )
    Membership.objects.bulk_create(
        [
            Membership(user=u, organization=o, role=Role.OWNER)
            for u, o in zip(users, orgs, strict=True)
        ]
    )
    rng = random.Random(42)
    statuses = ["running"] * 7 + ["stopped", "failed", "crash_looping"]
    instances = Instance.objects.bulk_create(
        [
            Instance(
                organization=org,
                name=f"client-{j:02d}",
                external_id=f"ext-{org.pk}-{j}",
                client_name=f"Client {j}",
                openclaw_version="2026.9.6",
                status=statuses[j % len(statuses)],
                provider="openai",
                model_name="gpt-4o-mini",
                provider_api_key="sk-bench",
                gateway_token="gw-bench",
            )
            for org in orgs
            for j in range(INSTANCES_PER_ORG)
        ],
        batch_size=1000,
    )
    now = timezone.now()
    batch: list[Session] = []
    created = 0
    for instance in instances:
        for k in range(SESSIONS_PER_INSTANCE):
            at = now - timedelta(minutes=rng.randint(0, 60 * 24 * 60))
            batch.append(
                Session(
                    instance=instance,
                    organization_id=instance.organization_id,
                    session_key=f"agent:main:telegram:dm:{k}",
                    channel=rng.choice(["telegram", "slack", "webchat"]),
                    model="gpt-4o-mini",
                    started_at=at - timedelta(minutes=30),
                    last_activity_at=at,
                    message_count=rng.randint(1, 200),
                    input_tokens=rng.randint(100, 100_000),
                    output_tokens=rng.randint(10, 20_000),
                    cost_usd=Decimal(rng.randint(0, 500_000)) / Decimal(1_000_000),
                )
            )
        if len(batch) >= 10_000:
            Session.objects.bulk_create(batch, batch_size=5000)
            created += len(batch)
            batch = []
    if batch:
        Session.objects.bulk_create(batch, batch_size=5000)
        created += len(batch)
    from billing.models import UsageDay

    today = now.date()
    UsageDay.objects.bulk_create(
        [
            UsageDay(
                instance=instance,
                organization_id=instance.organization_id,
                day=today - timedelta(days=d),
                running_seconds=86_400,
                input_tokens=rng.randint(1_000, 1_000_000),
                output_tokens=rng.randint(100, 100_000),
                compute_cost_usd=Decimal("0.480000"),
                llm_cost_usd=Decimal(rng.randint(0, 5_000_000)) / Decimal(1_000_000),
            )
            for instance in instances
            for d in range(USAGE_DAYS)
        ],
        batch_size=5000,
    )
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    _, secret = api_token_create(
        actor=SYSTEM, organization=orgs[0], name="bench", scopes=["read", "operate", "billing"]
    )
    print(
        f"seeded {len(orgs)} organizations, {len(instances)} instances, {created} sessions "
        f"in {time.monotonic() - t0:.1f} s"
    )
    return secret


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(env: dict, port: int, workers: int) -> subprocess.Popen:
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    proc = subprocess.Popen(
        [
            gunicorn,
            "fleet.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ],
        cwd=BASE_DIR,
        env=env,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("gunicorn did not come up")


def measure(port: int, path: str, headers: dict, seconds: float, concurrency: int) -> dict:
    latencies: list[float] = []
    errors = [0]
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    start_gate = threading.Barrier(concurrency + 1)
    stop_at = [0.0]

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        local, local_status = [], {}
        start_gate.wait()
        while time.monotonic() < stop_at[0]:
            t = time.perf_counter()
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                with lock:
                    errors[0] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            local.append(time.perf_counter() - t)
            local_status[response.status] = local_status.get(response.status, 0) + 1
        conn.close()
        with lock:
            latencies.extend(local)
            for code, n in local_status.items():
                statuses[code] = statuses.get(code, 0) + n

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for th in threads:
        th.start()
    stop_at[0] = time.monotonic() + seconds
    began = time.monotonic()
    start_gate.wait()
    for th in threads:
        th.join()
    elapsed = time.monotonic() - began
    latencies.sort()
    q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [0.0] * 99
    return {
        "path": path,
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50": q[49] * 1000,
        "p99": q[98] * 1000,
        "errors": errors[0],
        "statuses": statuses,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="Keep the bench database.")
    args = parser.parse_args()

    admin_url, bench_url = _db_urls()
    create_database(admin_url)
    env = {
        **os.environ,
        "DATABASE_URL": bench_url,
        "DEBUG": "false",
        "SECURE_SSL_REDIRECT": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "CONN_MAX_AGE": "60",
        "API_RATE_LIMIT": "100000000/min",  # the throttle runs, but never refuses
        "CACHE_KEY_PREFIX": f"bench-{os.getpid()}",
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "fleet.settings",
        # DEBUG off refuses to start without its secrets: throwaway ones for the bench database.
        "SECRET_KEY": secrets.token_urlsafe(48),
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "BACKUP_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "STRIPE_WEBHOOK_SECRET": "whsec_bench",
        "FLEET_BACKUP_LOCAL_IN_PRODUCTION": "true",
    }
    os.environ.update(env)
    sys.path.insert(0, str(BASE_DIR))
    import django

    django.setup()
    proc = None
    try:
        secret = seed()
        from django.db import connections

        connections.close_all()
        port = free_port()
        proc = serve(env, port, args.workers)
        auth = {"Authorization": f"Bearer {secret}"}
        targets = [
            ("GET /healthz (baseline)", "/healthz", {}),
            ("GET /api/v1/instances", "/api/v1/instances", auth),
            ("GET /api/v1/sessions", "/api/v1/sessions", auth),
            ("GET /api/v1/usage", "/api/v1/usage", auth),
        ]
        results = []
        for label, path, headers in targets:
            measure(port, path, headers, 1.0, args.concurrency)  # warm up the workers
            result = measure(port, path, headers, args.seconds, args.concurrency)
            result["label"] = label
            results.append(result)
        base = results[0]
        print(
            f"\n{args.concurrency} concurrent clients, {args.seconds:.0f} s each, gunicorn "
            f"{args.workers} sync workers, {os.cpu_count()} CPUs (client on the same machine)\n"
        )
        header = (
            f"{'endpoint':<26}{'requests':>9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'rps ×base':>11}{'p50 ×base':>11}  statuses"
        )
        print(header)
        print("-" * len(header))
        for r in results:
            print(
                f"{r['label']:<26}{r['requests']:>9}{r['rps']:>9.1f}{r['p50']:>9.1f}"
                f"{r['p99']:>9.1f}{r['rps'] / base['rps']:>11.2f}{r['p50'] / base['p50']:>11.2f}"
                f"  {dict(sorted(r['statuses'].items()))}"
                + (f" errors={r['errors']}" if r["errors"] else "")
            )
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        from django.db import connections

        connections.close_all()
        if not args.keep:
            drop_database(admin_url)


if __name__ == "__main__":
    main()
