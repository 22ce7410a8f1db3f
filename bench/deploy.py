"""Deploy-to-healthy through the control plane vs a bare `docker run`, measured in one run.

    .venv/bin/python bench/deploy.py [--runs 5] [--version 2026.9.6] [--json out.json] [--no-warm]

What is measured (interleaved, one at a time, so both sides see the same machine load):
- control plane: `instances.services.instance_deploy()` (validation, placement, Instance and
  Operation rows, audit) → the task on the Redis broker → a REAL Celery worker subprocess runs
  the deploy handler (image, network, fresh volume, openclaw.json written into the volume,
  hardened container, start, /readyz) → until the Instance row says running/healthy.
- bare: `docker run -d` of the same image with the same hardened flags (read-only root, tmpfs,
  cap-drop ALL, no-new-privileges, user 1000, init, pids/cpu/memory limits, loopback port,
  stable hostname, same network), on a fresh volume whose openclaw.json was written BEFORE the
  clock starts, until http://127.0.0.1:PORT/readyz answers 200 (polled every 0.5 s, like the
  control plane).
- warm pool (unless --no-warm): the same deploy when the host's pool (of one) holds a ready
  gateway: the claim (config hot reload with the tenant's settings, tokens checked) instead of a
  boot. The pool's own boot is not timed; it happens before any deploy asks.

Database: DATABASE_URL, default postgres://postgres@127.0.0.1:5432/clawfleet_bench_deploy
(created and
migrated when missing). Broker: CELERY_BROKER_URL (default redis://127.0.0.1:6379/2) with a
per-run key prefix. Everything the bench creates on the engine is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
RUN_TAG = uuid.uuid4().hex[:8]
PREFIX = f"clawfleet-bench-{RUN_TAG}:"
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/clawfleet_bench_deploy"

os.environ.setdefault("DATABASE_URL", DEFAULT_DB)
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/2")
os.environ.setdefault("CACHE_URL", "redis://127.0.0.1:6379/3")
os.environ["CELERY_BROKER_TRANSPORT_OPTIONS"] = json.dumps(
    {"visibility_timeout": 3600, "global_keyprefix": PREFIX}
)
os.environ["FLEET_NETWORK"] = f"clawfleet-bench-{RUN_TAG}"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fleet.settings")
# A pool of one (docs/warm-pool.md), for this process (the refill) and the worker (the claim).
# Only the warm runs refill it: the cold runs find it empty and deploy cold, as they would in
# production with the pool drained.
os.environ["FLEET_WARM_POOL_SIZE"] = "1"
os.environ["FLEET_WARM_POOL_MAX"] = "1"
# The deploys name a model at the engine host's discard port (never called while deploying):
# allowed like a development mock LLM, or the egress check refuses the URL.
os.environ.setdefault("FLEET_EGRESS_ALLOW", "host-gateway:9")


def ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1].split("?")[0]
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (p95 of 5 runs is the slowest run)."""
    ordered = sorted(values)
    rank = max(1, int(-(-pct * len(ordered) // 100)))
    return ordered[rank - 1]


def start_worker(log_path: Path) -> subprocess.Popen:
    log = open(log_path, "wb")  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "fleet",
            "worker",
            "-Q",
            "operations",
            "--concurrency",
            "1",
            "-P",
            "prefork",
            "-l",
            "INFO",
            "-n",
            f"bench-{RUN_TAG}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=BASE_DIR,
        env=dict(os.environ),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"worker exited; see {log_path}")
        if b" ready." in log_path.read_bytes():
            return proc
        time.sleep(0.3)
    raise SystemExit(f"worker not ready; see {log_path}")


def bare_run(rt, image: str, network: str, config: dict, owned: list[str]) -> float:
    """docker run with the control plane's hardened flags on a prepared volume → /readyz."""
    from instances import runtime

    port = runtime.free_port()
    name = f"clawfleet-bench-bare-{uuid.uuid4().hex[:8]}"
    volume = f"{name}-state"
    rt.ensure_volume(volume, {"clawfleet.bench": RUN_TAG})
    rt.write_config(volume, image, config, owned, validate=False)
    env = [f"-e{k}={v}" for k, v in runtime.BASE_ENV.items()]
    tmpfs = [f"--tmpfs={path}:{opts}" for path, opts in runtime.TMPFS.items()]
    cmd = [
        "docker",
        "run",
        "-d",
        f"--name={name}",
        f"--hostname=oc-{name[-8:]}",
        "--label=clawfleet.bench=" + RUN_TAG,
        "--read-only",
        *tmpfs,
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        "--user=1000:1000",
        "--init",
        "--pids-limit=512",
        "--cpus=1",
        "--memory=2048m",
        "--memory-swap=2048m",
        "--restart=no",
        "--log-opt=max-size=10m",
        "--log-opt=max-file=3",
        "--add-host=host.docker.internal:host-gateway",
        f"--network={network}",
        f"-p127.0.0.1:{port}:18789",
        f"-v{volume}:/home/node/.openclaw",
        *env,
        image,
    ]
    try:
        start = time.monotonic()
        subprocess.run(cmd, check=True, capture_output=True)
        while not runtime.http_ok(port, "/readyz", timeout=2.0):
            if time.monotonic() - start > 600:
                raise RuntimeError("bare container not ready after 600 s")
            time.sleep(0.5)
        return time.monotonic() - start
    finally:
        rt.remove(name)
        rt.remove_volume(volume)


def control_plane_run(org, version: str, rt) -> tuple[float, dict]:
    from accounts.services import Actor
    from instances import services
    from instances.models import Instance

    name = f"bench-{uuid.uuid4().hex[:8]}"
    start = time.monotonic()
    op = services.instance_deploy(
        actor=Actor(via="cli"),
        organization=org,
        name=name,
        openclaw_version=version,
        provider="custom",
        model_name="mock-model",
        api_key="",
        model_base_url="http://host.docker.internal:9/v1",
    )
    instance = op.instance
    while True:
        row = Instance.objects.values("status", "health").get(pk=instance.pk)
        if row["status"] == "running" and row["health"] == "healthy":
            elapsed = time.monotonic() - start
            break
        if row["status"] == "failed" or time.monotonic() - start > 600:
            op.refresh_from_db()
            raise RuntimeError(f"deploy {row['status']}: {op.error} {op.error_detail}")
        time.sleep(0.1)
    op.refresh_from_db()
    steps = {s["name"]: s for s in op.steps}
    health = steps.get("health", {}).get("detail", "")
    pool_step = steps.get("pool", {}).get("pool", "off")
    # Clean up right away (the bench owns this database and these engine objects).
    rt.remove(instance.container_name)
    rt.remove_volume(instance.volume_name)
    Instance.objects.filter(pk=instance.pk).update(status="purged", host_port=None)
    return elapsed, {"health_step": health, "pool": pool_step}


def ready_pool_slot(host, timeout: float = 300) -> float:
    """Refill the host's pool until a gateway is ready; returns how long that took."""
    from instances import pool
    from instances.models import PoolSlot

    start = time.monotonic()
    while time.monotonic() - start < timeout:
        pool.refill_host(host)
        if PoolSlot.objects.filter(host=host, state=PoolSlot.State.READY).exists():
            return time.monotonic() - start
        time.sleep(0.5)
    raise RuntimeError(f"no pool gateway ready after {timeout:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--version", default=None)
    parser.add_argument("--json", dest="json_out")
    parser.add_argument("--no-warm", dest="warm", action="store_false", help="skip the pool runs")
    args = parser.parse_args()

    ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

    from accounts.models import Organization
    from billing.models import Plan, Subscription
    from instances import placement, specs
    from instances.openclaw import config as openclaw_config
    from instances.runtime import runtime_for

    version = args.version or settings.FLEET_DEFAULT_VERSION
    image = specs.image_for(version)
    host = placement.ensure_local_host()
    rt = runtime_for(host)
    rt.ping()
    if not rt.image_exists(image):
        raise SystemExit(f"{image} is missing: run images/openclaw/build.sh {version}")
    network = settings.FLEET_NETWORK
    rt.ensure_network(network)

    org = Organization.objects.create(name=f"Bench {RUN_TAG}", slug=f"bench-{RUN_TAG}")
    plan = Plan.objects.create(
        slug=f"bench-{RUN_TAG}",
        name="Bench",
        monthly_price_cents=0,
        max_instances=1000,
        max_memory_mb=2048,
    )
    Subscription.objects.create(organization=org, plan=plan, status="comped")

    bare_config = openclaw_config.build_config(
        gateway_token=uuid.uuid4().hex + uuid.uuid4().hex,
        provider_id="custom",
        base_url="http://host.docker.internal:9/v1",
        api_key="not-needed",
        model_id="mock-model",
        model_name="mock-model",
        prices={},
        context_window=128000,
        max_tokens=8192,
    )
    owned = openclaw_config.owned_paths("custom")

    log_path = Path(f"/tmp/clawfleet-bench-worker-{RUN_TAG}.log")
    worker = start_worker(log_path)
    cp_times: list[float] = []
    warm_times: list[float] = []
    bare_times: list[float] = []
    details = []
    try:
        # One warm-up of each (page cache, image layers), not counted.
        bare_run(rt, image, network, bare_config, owned)
        control_plane_run(org, version, rt)
        for i in range(args.runs):
            b = bare_run(rt, image, network, bare_config, owned)
            c, info = control_plane_run(org, version, rt)
            bare_times.append(b)
            cp_times.append(c)
            details.append(info)
            step = info["health_step"]
            print(f"run {i + 1}: bare {b:6.2f} s   control plane {c:6.2f} s   ({step})")
        for i in range(args.runs if args.warm else 0):
            boot = ready_pool_slot(host)  # not timed: the pool boots ahead of any deploy
            w, info = control_plane_run(org, version, rt)
            if info["pool"] != "claimed":
                raise RuntimeError(f"warm run {i + 1} did not claim: {info['pool']}")
            warm_times.append(w)
            print(f"warm {i + 1}: deploy from the pool {w:6.2f} s   (its boot took {boot:.1f} s)")
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)
        for row in rt.api.containers(all=True, filters={"label": f"clawfleet.bench={RUN_TAG}"}):
            rt.remove(row["Id"])
        from instances import pool
        from instances.models import PoolSlot

        for slot in PoolSlot.objects.filter(state__in=PoolSlot.POOLED).select_related("host"):
            pool.retire(slot, "bench over")
        rt.remove_network(network)
        import redis

        client = redis.Redis.from_url(os.environ["CELERY_BROKER_URL"])
        for key in client.scan_iter(f"{PREFIX}*"):
            client.delete(key)

    result = {
        "version": version,
        "runs": args.runs,
        "control_plane": {
            "p50": statistics.median(cp_times),
            "p95": percentile(cp_times, 95),
            "all": cp_times,
        },
        "bare_docker_run": {
            "p50": statistics.median(bare_times),
            "p95": percentile(bare_times, 95),
            "all": bare_times,
        },
        "load_average": os.getloadavg(),
        "path": "service + real Celery worker (Redis broker) + deploy handler",
    }
    if warm_times:
        result["warm_pool"] = {
            "p50": statistics.median(warm_times),
            "p95": percentile(warm_times, 95),
            "all": warm_times,
        }
    result["ratio_p50"] = result["control_plane"]["p50"] / result["bare_docker_run"]["p50"]
    result["ratio_p95"] = result["control_plane"]["p95"] / result["bare_docker_run"]["p95"]
    cp, bare = result["control_plane"], result["bare_docker_run"]
    print()
    print(f"deploy-to-healthy over {args.runs} runs, OpenClaw {version}")
    print(f"  control plane   p50 {cp['p50']:6.2f} s   p95 {cp['p95']:6.2f} s")
    print(f"  bare docker run p50 {bare['p50']:6.2f} s   p95 {bare['p95']:6.2f} s")
    print(
        f"  ratio           p50 {result['ratio_p50']:.2f}     p95 {result['ratio_p95']:.2f}"
        "   (goal <= 1.2)"
    )
    if warm_times:
        warm = result["warm_pool"]
        print(
            f"  warm pool       p50 {warm['p50']:6.2f} s   p95 {warm['p95']:6.2f} s"
            f"   {bare['p50'] / warm['p50']:.1f}x faster than the bare boot at p50"
            "   (goals: p50 <= 2 s, >= 8x)"
        )
    la = result["load_average"]
    print(f"  load average    {la[0]:.1f} {la[1]:.1f} {la[2]:.1f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
