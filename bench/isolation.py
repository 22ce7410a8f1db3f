"""Tenant isolation, measured from inside one tenant container (issue 12's benchmark).

    .venv/bin/python bench/isolation.py [--json out.json] [--image clawfleet/openclaw:2026.9.6]

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

TODO(issue 12, benchmark second half): the web tier's p99 for other tenants while one gateway is
stalled (SIGSTOP) beside the p99 with no stall (ratio, goal <= 1.5): bench/isolation.py grows a
`--web` part once the web tier's gateway calls have their timeouts and per-organization bounds.
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
os.environ["FLEET_NETWORK"] = f"clawfleet-bench-iso-{RUN_TAG}"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fleet.settings")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default=None, help="default: the first configured version")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

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
    print("web tier p99 under a stalled gateway: TODO (see the module docstring)")
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
                },
                indent=2,
            )
        )
    ok = not reached_forbidden and len(reached_allowed) == len(allowed_rows) and not problems
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
