"""Tenant isolation, measured from inside one tenant container (issue 12's benchmark).

    .venv/bin/python bench/isolation.py [--json out.json] [--image ...] [--no-web]

Prints, for one tenant container of the OpenClaw image (uid 1000, read-only root, cap-drop ALL)
on a Clawfleet network of its own with the egress firewall installed (instances/egress.py):
- how many of a fixed list of forbidden targets it could reach (goal 0): every engine host
  address with a service listening on all of them, a service on the network gateway, the control
  plane's ports (PostgreSQL, Redis, web, Docker API) on the gateway and the LAN address, the mock
  LLM's port where it is not allowed, another tenant on the same network, a container on the
  default bridge, and stand-ins for cloud metadata (169.254.169.254) and a private LAN service;
- how many of the allowed ones it could (goal all): the mock LLM on the network gateway, an
  operator-listed private endpoint, a host endpoint allowed as host-gateway:port, Docker's DNS.

Every target is on this machine: the stand-ins are hosts in a network namespace the bench
creates (tests/security/helpers.py, shared with the acceptance test), removed at the end with the
containers, the network and its rules. Needs root (namespaces, iptables) and the image.

The web half (default on; --no-web skips it): the web tier's p99 for other tenants while one
gateway is stalled (SIGSTOP of its processes) beside the p99 with no stall, and their ratio (goal
<= 1.5). Real parts: its own database (clawfleet_bench_isolation, BENCH_ISOLATION_DATABASE_URL
to change it; created and migrated), a real Celery worker, gunicorn with the Procfile's shape
(2 workers x 4 threads), the mock LLM on the network gateway behind the egress firewall, two
organizations on comped plans, one deployed instance with a Session row. While its gateway is
stopped, 20 parallel transcript reads of the stalled tenant; /healthz and the other tenant's
instance list are measured before (5 s, after a 2 s warm-up) and during (10 s). The measurement
is shared with tests/integration/test_web_stall.py (tests/integration/webstall.py). Everything
it starts or creates on the engine is removed at the end (containers, volumes, network,
firewall, worker and gunicorn). Run it as `make bench` does (DEBUG=true, or the secrets set).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import uuid
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
RUN_TAG = uuid.uuid4().hex[:6]
PREFIX = f"clawfleet-bench-iso-{RUN_TAG}:"
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/clawfleet_bench_isolation"
os.environ["FLEET_NETWORK"] = f"clawfleet-bench-iso-{RUN_TAG}"
os.environ["DATABASE_URL"] = os.environ.get("BENCH_ISOLATION_DATABASE_URL", DEFAULT_DB)
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/2")
os.environ.setdefault("CACHE_URL", "redis://127.0.0.1:6379/3")
os.environ["CELERY_BROKER_TRANSPORT_OPTIONS"] = json.dumps(
    {"visibility_timeout": 3600, "global_keyprefix": PREFIX}
)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fleet.settings")


def ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1].split("?")[0]
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def web_half() -> dict:
    """p99 of /healthz + another tenant's API with no stall and with one gateway stopped."""
    import signal
    import time
    from concurrent.futures import ThreadPoolExecutor

    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

    from accounts.models import Organization
    from accounts.services import SYSTEM, api_token_create
    from instances import egress, placement, services, specs
    from instances.runtime import runtime_for
    from mockllm import start_mock_llm
    from sessions_mgmt.models import Session
    from tests.fleet_fixtures import (
        MOCK_MODEL,
        OPERATION_TIMEOUT,
        WorkerProcess,
        make_entitled,
        remove_engine_objects,
        wait_for_operation,
    )
    from tests.integration import webstall

    network = settings.FLEET_NETWORK
    rt = runtime_for(placement.ensure_local_host())
    plane = specs.plane_id()
    logs = Path(f"/tmp/clawfleet-bench-iso-{RUN_TAG}")
    logs.mkdir(exist_ok=True)
    cleanup: list = []
    try:
        gateway = rt.ensure_network(network)
        cleanup.append(lambda: rt.remove_network(network))
        cleanup.append(lambda: remove_engine_objects(rt, [plane]))
        mock = start_mock_llm([gateway], 0, model_id=MOCK_MODEL)
        cleanup.append(mock.stop)
        settings.FLEET_EGRESS_ALLOW = [
            *settings.FLEET_EGRESS_ALLOW,
            *egress.mock_llm_allow(mock.port),
        ]
        cleanup.append(lambda: egress.remove(network, runtime=rt))
        egress.install(network, runtime=rt)

        env = {
            **os.environ,
            "FIELD_ENCRYPTION_KEYS": ",".join(settings.FIELD_ENCRYPTION_KEYS),
            "SECRET_KEY": settings.SECRET_KEY,
            "FLEET_DOCKER_URL": settings.FLEET_DOCKER_URL,
            "FLEET_EGRESS_ALLOW": ",".join(settings.FLEET_EGRESS_ALLOW),
            "FLEET_READY_TIMEOUT": str(max(settings.FLEET_READY_TIMEOUT, 300)),
            "PYTHONUNBUFFERED": "1",
        }
        worker = WorkerProcess(env, logs / "celery-worker.log")
        worker.start()
        cleanup.append(worker.stop)
        gunicorn, web = webstall.start_gunicorn(env, logs / "gunicorn.log")
        cleanup.append(lambda: webstall.stop_gunicorn(gunicorn))

        stalled_org, other_org = (
            Organization.objects.create(name=f"Bench {who} {RUN_TAG}", slug=f"iso-{who}-{RUN_TAG}")
            for who in ("stalled", "other")
        )
        for org in (stalled_org, other_org):
            make_entitled(org, slug=f"iso-{org.slug}")
        op = services.instance_deploy(
            actor=SYSTEM,
            organization=stalled_org,
            name="stalled",
            openclaw_version=None,
            provider="custom",
            model_name=MOCK_MODEL,
            api_key="",
            model_base_url=mock.url_for(gateway),
        )
        op = wait_for_operation(op, OPERATION_TIMEOUT, worker)
        if op.state != "succeeded":
            raise RuntimeError(f"deploy {op.state}: {op.error} / {op.error_detail}")
        instance = op.instance
        instance.refresh_from_db()
        session = Session.objects.create(
            instance=instance,
            organization=stalled_org,
            session_key="agent:main:bench-stall",
            channel="telegram",
            model=MOCK_MODEL,
        )
        scopes = ["read", "operate", "billing"]
        _, stalled_token = api_token_create(
            actor=SYSTEM, organization=stalled_org, name="bench", scopes=scopes
        )
        _, other_token = api_token_create(
            actor=SYSTEM, organization=other_org, name="bench", scopes=scopes
        )

        webstall.measure(web, other_token, 2)  # warm-up (imports, connections), not counted
        before, before_statuses = webstall.measure(web, other_token, 5)
        pids = webstall.gateway_pids(instance.container_name)
        if not pids:
            raise RuntimeError("no gateway process found to stop")
        webstall.signal_all(pids, signal.SIGSTOP)
        try:
            with ThreadPoolExecutor(20) as pool:
                reads = [
                    pool.submit(webstall.get, f"{web}/api/v1/sessions/{session.pk}", stalled_token)
                    for _ in range(20)
                ]
                time.sleep(1)
                during, during_statuses = webstall.measure(web, other_token, 10)
                answers = [future.result() for future in reads]
        finally:
            webstall.signal_all(pids, signal.SIGCONT)
    finally:
        for step in reversed(cleanup):
            with contextlib.suppress(Exception):
                step()
        with contextlib.suppress(Exception):
            import redis

            client = redis.Redis.from_url(os.environ["CELERY_BROKER_URL"])
            for key in client.scan_iter(f"{PREFIX}*"):
                client.delete(key)

    told = 0
    for status, _, body in answers:
        with contextlib.suppress(ValueError):
            data = json.loads(body)
            told += (
                status == 200
                and data.get("transcript") is None
                and bool(data.get("transcript_error"))
            )
    p99_before, p99_during = webstall.p99(before), webstall.p99(during)
    return {
        "p99_before_ms": p99_before * 1000,
        "p99_during_ms": p99_during * 1000,
        "ratio": p99_during / max(p99_before, 1e-6),
        "requests_before": len(before),
        "requests_during": len(during),
        "non_200_before": sum(s != 200 for s in before_statuses),
        "non_200_during": sum(s != 200 for s in during_statuses),
        "stalled_reads": len(answers),
        "stalled_reads_told_why": told,
        "stalled_reads_max_s": max(a[1] for a in answers),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default=None, help="default: the first configured version")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--no-web", action="store_true", help="skip the web tier's stall half")
    args = parser.parse_args(argv)

    if not args.no_web:
        ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.conf import settings

    from instances import egress
    from mockllm import start_mock_llm
    from tests.security import helpers as h

    problem = h.environment_ok()
    if problem:
        print(f"isolation bench: {problem}", file=sys.stderr)
        return 2
    image = args.image or settings.FLEET_OPENCLAW_IMAGE.format(
        version=settings.FLEET_OPENCLAW_VERSIONS[0]
    )
    network = settings.FLEET_NETWORK
    rt = egress.local_runtime()
    if not rt.image_exists(image):
        print(f"isolation bench: image {image} missing (make image)", file=sys.stderr)
        return 2

    cleanup: list = []
    containers: list[str] = []
    try:
        gateway = rt.ensure_network(network)
        cleanup.append(lambda: rt.remove_network(network))
        cleanup.append(lambda: egress.remove(network, runtime=rt))
        mock = start_mock_llm([gateway], 0, model_id="mock-model")
        cleanup.append(mock.stop)
        standins = h.StandIns(RUN_TAG).start()
        cleanup.append(standins.stop)
        host_any = h.HostListener("0.0.0.0")  # noqa: S104 - a host service on every address
        host_gw = h.HostListener(gateway)
        cleanup += [host_any.stop, host_gw.stop]
        docker0 = egress.engine_gateways(rt, network)["host-gateway"]
        host_docker0 = h.HostListener(docker0[0]) if docker0 else None
        if host_docker0:
            cleanup.append(host_docker0.stop)

        labels = {f"{h.TEST_LABEL}.bench": RUN_TAG}
        prober = f"cf-iso-probe-{RUN_TAG}"
        neighbour = f"cf-iso-neighbour-{RUN_TAG}"
        other = f"cf-iso-other-{RUN_TAG}"
        for name, net, cmd in (
            (prober, network, ["sleep", "infinity"]),
            (neighbour, network, h.listener_command(h.TENANT_PORT)),
            (other, "bridge", h.listener_command(h.TENANT_PORT)),
        ):
            h.start_tenant_container(
                rt, name=name, image=image, network=net, command=cmd, labels=labels
            )
            containers.append(name)
        neighbour_ip = h.container_ip(rt, neighbour, network)
        other_ip = h.container_ip(rt, other, "bridge")
        for ip in (neighbour_ip, other_ip):
            h.wait_connectable(ip, h.TENANT_PORT, 60)

        allow = [*egress.mock_llm_allow(mock.port), f"{standins.lan_addr}:{h.LAN_ALLOWED_PORT}"]
        if host_docker0:
            allow.append(f"host-gateway:{host_docker0.port}")
        egress.install(network, allow=allow, runtime=rt)
        problems = egress.verify(network, allow=allow, runtime=rt)

        forbidden = h.forbidden_targets(
            host_addresses=h.host_ipv4_addresses(),
            gateway=gateway,
            lan=h.lan_address(),
            host_any_port=host_any.port,
            host_gw_port=host_gw.port,
            mock_port=mock.port,
            neighbour_ip=neighbour_ip,
            other_ip=other_ip,
            standins=standins,
        )
        allowed = h.allowed_targets(
            gateway=gateway,
            mock_port=mock.port,
            standins=standins,
            docker0_port=host_docker0.port if host_docker0 else None,
        )
        standins.check_routes()
        results = h.probe(rt, prober, [(host, port) for _, host, port in forbidden + allowed])
        dns = h.resolve(rt, prober, neighbour)
    finally:
        for name in containers:
            with contextlib.suppress(Exception):
                rt.api.remove_container(name, force=True)
        for step in reversed(cleanup):
            with contextlib.suppress(Exception):
                step()

    rows = []
    for kind, targets in (("forbidden", forbidden), ("allowed", allowed)):
        for what, host, port in targets:
            outcome = results[f"{host}:{port}"]
            rows.append({"kind": kind, "what": what, "target": f"{host}:{port}", "result": outcome})
    dns_ok = dns.get("addresses") == [neighbour_ip]
    rows.append(
        {
            "kind": "allowed",
            "what": "Docker's embedded DNS (127.0.0.11)",
            "target": neighbour,
            "result": "connected" if dns_ok else json.dumps(dns),
        }
    )
    reached_forbidden = [r for r in rows if r["kind"] == "forbidden" and r["result"] == "connected"]
    allowed_rows = [r for r in rows if r["kind"] == "allowed"]
    reached_allowed = [r for r in allowed_rows if r["result"] == "connected"]
    n_forbidden = len(rows) - len(allowed_rows)

    print(f"isolation of one tenant container ({image}, network {network})")
    for r in rows:
        mark = "REACHED" if r["result"] == "connected" else "refused"
        print(f"  {r['kind']:9}  {mark:7}  {r['what']} ({r['target']}): {r['result']}")
    print(f"forbidden targets reached: {len(reached_forbidden)}/{n_forbidden} (goal 0)")
    print(f"allowed targets reached:   {len(reached_allowed)}/{len(allowed_rows)} (goal all)")
    print(f"firewall verify: {'ok' if not problems else '; '.join(problems)}")
    web = None if args.no_web else web_half()
    web_ok = True
    if web:
        print("web tier while one gateway is stopped (SIGSTOP), /healthz + another tenant's API:")
        print(
            f"  p99 no stall {web['p99_before_ms']:7.0f} ms over {web['requests_before']} requests"
            f" ({web['non_200_before']} not 200)"
        )
        print(
            f"  p99 stalled  {web['p99_during_ms']:7.0f} ms over {web['requests_during']} requests"
            f" ({web['non_200_during']} not 200)"
        )
        print(f"  ratio        {web['ratio']:7.2f}    (goal <= 1.5)")
        print(
            f"  the stalled tenant's {web['stalled_reads']} transcript reads: "
            f"{web['stalled_reads_told_why']} answered with transcript_error, slowest "
            f"{web['stalled_reads_max_s']:.1f} s"
        )
        web_ok = (
            web["ratio"] <= 1.5
            and not web["non_200_during"]
            and web["stalled_reads_told_why"] == web["stalled_reads"]
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "forbidden_reached": len(reached_forbidden),
                    "forbidden_total": n_forbidden,
                    "allowed_reached": len(reached_allowed),
                    "allowed_total": len(allowed_rows),
                    "verify": problems,
                    "rows": rows,
                    "web": web,
                },
                indent=2,
            )
        )
    ok = not reached_forbidden and len(reached_allowed) == len(allowed_rows) and not problems
    ok = ok and web_ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
