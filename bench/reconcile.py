"""Benchmark of one reconcile pass over one host (issue 17: 1,000 instances in ≤ 2 s).

    .venv/bin/python bench/reconcile.py [--fake 1000] [--real 200] [--keep]

1. A dedicated database (clawfleet_bench_reconcile, dropped at the end unless --keep).
2. Fake engine (tests/fakes/runtime.py): --fake instances on one host, their containers running
   and checked healthy by the modelled Docker healthcheck. Prints seconds (wall and this
   process's CPU) and SQL queries of: an unchanged pass, a pass with 1 % of the containers
   exited (restarts), and the pass after it (the restarted ones probed and ready).
3. Real engine: --real lightweight containers made by the Docker adapter (DockerRuntime
   .ensure_container, the same labels, limits and network as a gateway) from a tiny image built
   here FROM scratch: a static HTTP responder compiled with gcc, answering 200 on every path, with
   OpenClaw's HEALTHCHECK timing (30 s). Not OpenClaw: the point is the engine's list call, the
   probes and the restarts, not a gateway's boot. The same three passes, plus the cost of probing
   every gateway (what a pass would add if Docker gave no health verdict). Figures per instance,
   and the real/fake ratio per instance. Every container, volume, network and the image are
   removed at the end.

The engine and the database are shared with whatever else runs on the machine: compare the
per-instance figures and ratios, not the absolute numbers, between machines.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

BASE_DIR = Path(__file__).resolve().parent.parent
BENCH_DB = "clawfleet_bench_reconcile"
NETWORK = "clawfleet-bench-reconcile"
IMAGE = "clawfleet/bench-gateway:reconcile"
REAL_PORT = 24000

SERVER_C = r"""
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
static const char OK[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         "Content-Length: 2\r\nConnection: close\r\n\r\n{}";
static int check(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(18789)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) return 1;
    const char req[] = "GET /healthz HTTP/1.0\r\n\r\n";
    if (write(s, req, sizeof req - 1) < 0) return 1;
    char buf[64] = {0};
    if (read(s, buf, sizeof buf - 1) < 12) return 1;
    return strncmp(buf + 9, "200", 3) != 0;
}
int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "check") == 0) return check();
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(18789)};
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 64) != 0) return 2;
    char buf[2048];
    for (;;) {
        int c = accept(s, 0, 0);
        if (c < 0) continue;
        if (read(c, buf, sizeof buf) > 0 && write(c, OK, sizeof OK - 1) < 0) {}
        close(c);
    }
}
"""

DOCKERFILE = """FROM scratch
COPY srv /srv
USER 1000:1000
LABEL clawfleet.bench="reconcile"
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 CMD ["/srv", "check"]
CMD ["/srv", "serve"]
"""


# --- database -----------------------------------------------------------------------------------


def _db_urls() -> tuple[str, str]:
    base = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/clawfleet"
    parts = urlsplit(base)
    return (
        urlunsplit(parts._replace(path="/postgres")),
        urlunsplit(parts._replace(path=f"/{BENCH_DB}")),
    )


def _psql(admin_url: str, sql: str) -> None:
    import psycopg

    url = admin_url.replace("postgres://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)


def seed_org_and_host(name: str, base_url: str):
    from accounts.models import Organization
    from instances.models import Host

    org, _ = Organization.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
    host = Host.objects.create(
        name=name,
        base_url=base_url,
        max_instances=5000,
        port_range_start=20000,
        port_range_end=29999,
    )
    return org, host


# --- measuring ----------------------------------------------------------------------------------


def timed_pass(host, label: str, count: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from instances.reconcile import reconcile_host

    with CaptureQueriesContext(connection) as ctx:
        wall, cpu = time.perf_counter(), time.process_time()
        corrections = reconcile_host(host)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    writes = [q for q in ctx.captured_queries if q["sql"].lstrip().startswith(("INSERT", "UPDATE"))]
    kinds: dict[str, int] = {}
    for c in corrections:
        kinds[c.kind] = kinds.get(c.kind, 0) + 1
    result = {
        "label": label,
        "n": count,
        "wall": wall,
        "cpu": cpu,
        "queries": len(ctx.captured_queries),
        "writes": len(writes),
        "corrections": kinds,
    }
    print(
        f"  {label:<34} {wall * 1000:8.1f} ms wall {cpu * 1000:8.1f} ms CPU "
        f"{result['queries']:4d} queries ({result['writes']} writes) "
        f"{wall / count * 1e6:7.1f} µs/instance  {kinds or ''}",
        flush=True,
    )
    return result


# --- fake engine --------------------------------------------------------------------------------


def bench_fake(count: int) -> list[dict]:
    from django.conf import settings

    from instances.runtime import reset_runtimes
    from tests.fakes import runtime as fake_runtime
    from tests.instances.test_reconcile_scale import hold, make_fleet

    settings.FLEET_RUNTIME = "tests.fakes.runtime.installed"
    reset_runtimes()
    fake = fake_runtime.install()
    org, host = seed_org_and_host("bench-fake", "unix:///fake-engine.sock")
    t0 = time.monotonic()
    instances = make_fleet(org, host, count)
    hold(fake, instances)
    print(f"\nfake engine: {count} instances seeded in {time.monotonic() - t0:.1f} s", flush=True)
    timed_pass(host, "first pass (warm-up)", count)
    results = [timed_pass(host, "unchanged pass", count)]
    exited = max(1, count // 100)
    for instance in instances[:exited]:
        fake.crash(instance.container_name)
    results.append(timed_pass(host, f"pass with {exited} exited (1 %)", count))
    results.append(timed_pass(host, "next pass (restarted ones ready)", count))
    fake.ready = False
    fake.run_healthchecks()
    results.append(timed_pass(host, "every gateway unhealthy (probed)", count))
    fake.ready = True
    fake.run_healthchecks()
    timed_pass(host, "healthy again", count)
    fake_runtime.uninstall()
    reset_runtimes()
    return results


# --- real engine --------------------------------------------------------------------------------


def build_image() -> None:
    gcc = shutil.which("gcc")
    if gcc is None:
        raise SystemExit("bench/reconcile.py needs gcc (a static HTTP responder is compiled)")
    with tempfile.TemporaryDirectory() as ctx:
        src = Path(ctx, "srv.c")
        src.write_text(SERVER_C)
        subprocess.run(
            [gcc, "-static", "-Os", "-s", "-o", str(Path(ctx, "srv")), str(src)], check=True
        )
        Path(ctx, "Dockerfile").write_text(DOCKERFILE)
        subprocess.run(["docker", "build", "-q", "-t", IMAGE, ctx], check=True, capture_output=True)


def bench_real(count: int) -> list[dict]:
    from django.conf import settings

    from instances import specs
    from instances.reconcile import _probe_all
    from instances.runtime import reset_runtimes, runtime_for
    from tests.instances.test_reconcile_scale import make_fleet

    settings.FLEET_RUNTIME = "instances.runtime.DockerRuntime"
    settings.FLEET_NETWORK = NETWORK
    reset_runtimes()
    org, host = seed_org_and_host("bench-real", settings.FLEET_DOCKER_URL)
    rt = runtime_for(host)
    build_image()
    rt.ensure_network(NETWORK)
    instances = make_fleet(org, host, count, first=REAL_PORT - 20000)
    results: list[dict] = []
    try:
        t0 = time.monotonic()

        def up(instance):
            spec = specs.spec_for(instance, IMAGE)
            spec.command = ["/srv", "serve"]
            spec.memory_mb, spec.pids_limit = 256, 64
            rt.ensure_volume(instance.volume_name, specs.labels_for(instance))
            rt.ensure_container(spec)
            rt.start(spec.name)

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(up, instances))
        print(
            f"\nreal engine: {count} containers of {IMAGE} made and started in "
            f"{time.monotonic() - t0:.1f} s; waiting for Docker's first healthchecks",
            flush=True,
        )
        deadline = time.monotonic() + 180
        mine = {i.container_name for i in instances}
        while time.monotonic() < deadline:
            listed = [c for c in rt.list_managed() if c.name in mine]
            healthy = sum(1 for c in listed if c.health == "healthy")
            if healthy == count:
                break
            time.sleep(3)
        print(f"  {healthy}/{count} healthy after {time.monotonic() - t0:.0f} s", flush=True)
        timed_pass(host, "first pass (warm-up)", count)
        results.append(timed_pass(host, "unchanged pass", count))
        exited = max(1, count // 100)
        for instance in instances[:exited]:
            rt.api.kill(instance.container_name)
        kill_deadline = time.monotonic() + 30
        while time.monotonic() < kill_deadline and any(
            rt.inspect(i.container_name).running for i in instances[:exited]
        ):
            time.sleep(0.2)
        results.append(timed_pass(host, f"pass with {exited} exited (1 %)", count))
        time.sleep(1)
        results.append(timed_pass(host, "next pass (restarted ones ready)", count))
        ports = {str(i.pk): i.host_port for i in instances}
        wall = time.perf_counter()
        answers = _probe_all(rt, ports)
        wall = time.perf_counter() - wall
        print(
            f"  {'probing every gateway (8 threads)':<34} {wall * 1000:8.1f} ms wall "
            f"{'':>17} {wall / count * 1e6:7.1f} µs/instance, "
            f"{sum(answers.values())}/{count} ready",
            flush=True,
        )
        results.append({"label": "probe all", "n": count, "wall": wall})
    finally:
        t0 = time.monotonic()

        def down(instance):
            rt.remove(instance.container_name)
            rt.remove_volume(instance.volume_name)

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(down, instances))
        rt.remove_network(NETWORK)
        subprocess.run(["docker", "image", "rm", "-f", IMAGE], capture_output=True)
        print(f"  removed {count} containers and volumes in {time.monotonic() - t0:.1f} s")
        reset_runtimes()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fake", type=int, default=1000, help="instances on the fake engine")
    parser.add_argument("--real", type=int, default=200, help="containers on the real engine")
    parser.add_argument("--keep", action="store_true", help="Keep the bench database.")
    args = parser.parse_args()

    admin_url, bench_url = _db_urls()
    _psql(admin_url, f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
    _psql(admin_url, f'CREATE DATABASE "{BENCH_DB}"')
    os.environ.update(
        {
            "DATABASE_URL": bench_url,
            "DJANGO_SETTINGS_MODULE": "fleet.settings",
            "FLEET_EDGE_ADMIN_URL": "",  # the proxy's repair is bench/edge.py's
            "LOG_LEVEL": "WARNING",
        }
    )
    sys.path.insert(0, str(BASE_DIR))
    import django

    django.setup()
    from django.core.management import call_command

    try:
        call_command("migrate", verbosity=0)
        fake = bench_fake(args.fake) if args.fake else []
        real = bench_real(args.real) if args.real else []
        if fake:
            goal = fake[0]["wall"]
            print(
                f"\ngoal: one unchanged pass over {args.fake} instances ≤ 2 s: {goal:.3f} s "
                f"({'met' if goal <= 2 else 'NOT met'}); with 1 % exited: {fake[1]['wall']:.3f} s"
            )
        if fake and real:
            print("per instance, real engine / fake engine:")
            for f, r in zip(fake[:3], real[:3], strict=True):
                ratio = (r["wall"] / r["n"]) / (f["wall"] / f["n"])
                print(
                    f"  {f['label']:<34} fake {f['wall'] / f['n'] * 1e6:7.1f} µs, "
                    f"real {r['wall'] / r['n'] * 1e6:7.1f} µs, ratio {ratio:5.2f}"
                )
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            _psql(admin_url, f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')


if __name__ == "__main__":
    main()
