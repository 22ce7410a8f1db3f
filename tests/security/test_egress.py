"""Acceptance: a tenant container reaches nothing of ours, on the real engine (issue 12, item 1).

From inside containers of the OpenClaw image with the tenant profile (uid 1000, read-only root,
cap-drop ALL), on this session's Clawfleet network:
- every address of the engine host (each bridge gateway, its LAN address), a host service on all
  addresses and one on the network's gateway, the control plane's ports, another tenant's
  container (same network, and the default bridge), and the stand-ins for cloud metadata and a
  private LAN service all fail, with the firewall's answer (a TCP reset, ECONNREFUSED, where
  the control probe connected);
- the allowed endpoints work: the mock LLM, an operator-listed private endpoint, Docker's DNS;
- before the rules are installed the same probes reach the stand-ins and the host services, so
  the test would fail if the firewall did nothing;
- the rules for the outside ranges are also read back from the installed firewall;
- an OpenClaw gateway behind the firewall still holds a conversation with the mock LLM.

Every packet stays on this machine: the stand-ins are hosts in a network namespace the test
creates (routes checked before each probe), and public addresses are only ever evaluated against
the installed rules, never sent to.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from dataclasses import dataclass, field

import pytest
import requests

from instances import egress
from tests.fleet_fixtures import MOCK_MODEL, TEST_NETWORK
from tests.security.helpers import (
    LAN_ALLOWED_PORT,
    LAN_PORT,
    METADATA_ADDR,
    METADATA_PORT,
    TENANT_PORT,
    TEST_LABEL,
    HostListener,
    StandIns,
    allowed_targets,
    container_ip,
    environment_ok,
    evaluate,
    forbidden_targets,
    host_ipv4_addresses,
    http_get,
    lan_address,
    listener_command,
    probe,
    resolve,
    start_tenant_container,
    wait_connectable,
)

pytestmark = [pytest.mark.docker]

IMAGE_VERSION = "2026.9.6"
REFUSED = "ECONNREFUSED"  # the firewall's TCP reset (the control shows these answered before)


@dataclass
class Box:
    rt: object
    network: str
    gateway: str
    image: str
    tag: str
    standins: StandIns
    host_any: HostListener
    host_gw: HostListener
    host_docker0: HostListener | None
    mock: object
    prober: str = ""
    neighbour: str = ""
    neighbour_ip: str = ""
    other: str = ""
    other_ip: str = ""
    allow: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    control: dict[str, str] = field(default_factory=dict)
    host_addresses: list[str] = field(default_factory=list)
    lan: str | None = None

    def forbidden(self, host_addresses: list[str] | None = None) -> list[tuple[str, str, int]]:
        return forbidden_targets(
            host_addresses=self.host_addresses if host_addresses is None else host_addresses,
            gateway=self.gateway,
            lan=self.lan,
            host_any_port=self.host_any.port,
            host_gw_port=self.host_gw.port,
            mock_port=self.mock.port,
            neighbour_ip=self.neighbour_ip,
            other_ip=self.other_ip,
            standins=self.standins,
        )

    def allowed(self) -> list[tuple[str, str, int]]:
        return allowed_targets(
            gateway=self.gateway,
            mock_port=self.mock.port,
            standins=self.standins,
            docker0_port=self.host_docker0.port if self.host_docker0 else None,
        )

    @property
    def stable_addresses(self) -> list[str]:
        """Host addresses that exist for the whole module (other sessions' bridges come and go:
        without rules a probe to a vanished one would be routed off the machine)."""
        docker0 = self.host_docker0.address if self.host_docker0 else None
        return [a for a in (self.gateway, self.lan, docker0, self.standins.host_addr) if a]

    def probe(self, container: str, targets) -> dict[str, str]:
        self.standins.check_routes()
        return probe(self.rt, container, [(h, p) for _, h, p in targets])


def _docker0_address() -> str | None:
    gw = egress.engine_gateways(None, "bridge")["host-gateway"]
    return gw[0] if gw else None


@pytest.fixture(scope="module")
def box(docker_runtime, mock_llm, openclaw_image):
    problem = environment_ok()
    if problem:
        pytest.fail(problem, pytrace=False)
    rt = docker_runtime
    tag = uuid.uuid4().hex[:6]
    gateway = rt.network_gateway(TEST_NETWORK)
    standins = StandIns(tag).start()
    docker0 = _docker0_address()
    b = Box(
        rt=rt,
        network=TEST_NETWORK,
        gateway=gateway,
        image=openclaw_image[IMAGE_VERSION],
        tag=tag,
        standins=standins,
        # A host service on every address, as PostgreSQL with listen_addresses='*' would be.
        host_any=HostListener("0.0.0.0"),  # noqa: S104
        host_gw=HostListener(gateway),
        host_docker0=HostListener(docker0) if docker0 else None,
        mock=mock_llm,
    )
    try:
        labels = {f"{TEST_LABEL}.run": tag}
        b.prober = f"cf-egress-probe-{tag}"
        b.neighbour = f"cf-egress-neighbour-{tag}"
        b.other = f"cf-egress-other-{tag}"
        for name, network, cmd in (
            (b.prober, TEST_NETWORK, ["sleep", "infinity"]),
            (b.neighbour, TEST_NETWORK, listener_command(TENANT_PORT)),
            (b.other, "bridge", listener_command(TENANT_PORT)),
        ):
            start_tenant_container(
                rt, name=name, image=b.image, network=network, command=cmd, labels=labels
            )
            b.containers.append(name)
        b.neighbour_ip = container_ip(rt, b.neighbour, TEST_NETWORK)
        b.other_ip = container_ip(rt, b.other, "bridge")
        for ip in (b.neighbour_ip, b.other_ip):
            _wait_listening(ip, TENANT_PORT)

        # Control: without this network's rules the stand-ins and host services answer.
        egress.remove(TEST_NETWORK, runtime=rt)
        b.host_addresses = host_ipv4_addresses()
        b.lan = lan_address()
        b.control = b.probe(b.prober, b.forbidden(b.stable_addresses))

        b.allow = [
            *egress.mock_llm_allow(mock_llm.port),
            f"{standins.lan_addr}:{LAN_ALLOWED_PORT}",
        ]
        if b.host_docker0 is not None:
            b.allow.append(f"host-gateway:{b.host_docker0.port}")
        egress.install(TEST_NETWORK, allow=b.allow, runtime=rt)
        yield b
    finally:
        for name in b.containers:
            with contextlib.suppress(Exception):
                rt.api.remove_container(name, force=True)
        for listener in (b.host_any, b.host_gw, b.host_docker0):
            if listener is not None:
                listener.stop()
        standins.stop()
        # Leave the network as the mock_llm fixture boxed it, under the session's allow list
        # (which with DEBUG on also holds `make run`'s mock port): the rest of the session's
        # containers run behind it, whatever order the files run in.
        egress.install(TEST_NETWORK, runtime=rt)


def _wait_listening(host: str, port: int, timeout: float = 60) -> None:
    wait_connectable(host, port, timeout)


def _key(host, port):
    return f"{host}:{port}"


def test_without_the_rules_the_stand_ins_and_host_services_are_reachable(box):
    """The control: the probes can fail. Metadata, the LAN service and every host service
    answer a tenant when its network has no rules (other tenants are kept apart by Docker's own
    inter-container setting even then)."""
    reachable = {
        _key(h, p)
        for what, h, p in box.forbidden(box.stable_addresses)
        if what.startswith("host service") or "stand-in" in what
    }
    assert reachable, "no stand-ins?"
    assert {k: box.control[k] for k in reachable} == dict.fromkeys(reachable, "connected")


def test_a_tenant_reaches_none_of_our_addresses(box):
    targets = box.forbidden()
    results = box.probe(box.prober, targets)
    wrong = {f"{what} ({h}:{p})": results[_key(h, p)] for what, h, p in targets}
    assert wrong == dict.fromkeys(wrong, REFUSED)


def test_the_allowed_endpoints_and_dockers_dns_still_work(box):
    results = box.probe(box.prober, box.allowed())
    assert {_key(h, p): results[_key(h, p)] for _, h, p in box.allowed()} == dict.fromkeys(
        (_key(h, p) for _, h, p in box.allowed()), "connected"
    )
    health = http_get(box.rt, box.prober, f"http://{box.gateway}:{box.mock.port}/_mock/health")
    assert health.get("status") == 200, health
    # Docker's embedded resolver (127.0.0.11, inside the container's namespace) answers.
    assert resolve(box.rt, box.prober, box.neighbour) == {"addresses": [box.neighbour_ip]}
    # An allow entry opens its port only: the stand-in LAN host's other service stays refused.
    other = box.probe(box.prober, [("", box.standins.lan_addr, LAN_PORT)])
    assert other == {_key(box.standins.lan_addr, LAN_PORT): REFUSED}


def test_the_installed_rules_refuse_the_outside_ranges_and_pass_the_internet(box):
    """Read back from iptables (public addresses are evaluated, never sent to)."""
    described = egress.describe(box.network, allow=box.allow, runtime=box.rt)
    assert described["problems"] == []
    installed = described["installed"]["4"]
    assert installed == described["expected"]["4"]
    refused_samples = [
        "10.1.2.3",
        "172.31.255.1",
        "192.168.1.1",
        "100.64.0.1",
        METADATA_ADDR,
        "169.254.1.1",
        "127.0.0.1",
        "0.0.0.1",
        "224.0.0.251",
        "240.0.0.1",
        "198.18.0.1",
        box.other_ip,
        box.neighbour_ip,
    ]
    for dst in refused_samples:
        assert evaluate(installed["forward"], dst, 443) == "REJECT", dst
    for dst in ("1.1.1.1", "8.8.8.8", "140.82.112.3", "151.101.1.69"):
        assert evaluate(installed["forward"], dst, 443) == "RETURN", dst
    for addr in host_ipv4_addresses():
        assert evaluate(installed["input"], addr, 22) == "REJECT", addr
    for resolver in described["dns"]:
        assert evaluate(installed["forward"], resolver, 53, "udp") == "RETURN"
    if "6" in described["installed"]:
        six = described["installed"]["6"]
        assert six == described["expected"]["6"]
        for dst in ("fd00::1", "fe80::1", "::1", "fd00:ec2::254", "::ffff:169.254.169.254"):
            assert evaluate(six["forward"], dst, 80) == "REJECT", dst
        assert evaluate(six["forward"], "2606:4700::1111", 443) == "RETURN"
    # The dispatch from Docker's own chain and from INPUT is in place, first.
    assert (
        subprocess.run(
            ["iptables", "-C", "DOCKER-USER", "-j", egress.FORWARD_CHAIN], capture_output=True
        ).returncode
        == 0
    )


def test_a_removed_rule_is_found_by_verify_and_repaired(box):
    fwd, _ = egress.chain_names(described_bridge(box))
    rules = [
        "-d 169.254.0.0/16 -p tcp -j REJECT --reject-with tcp-reset",
        "-d 169.254.0.0/16 -j REJECT --reject-with icmp-admin-prohibited",
    ]
    metadata = [("", METADATA_ADDR, METADATA_PORT)]
    for rule in rules:
        subprocess.run(["iptables", "-w", "5", "-D", fwd, *rule.split()], check=True)
    try:
        problems = egress.verify(box.network, allow=box.allow, runtime=box.rt)
        assert any("169.254.0.0/16" in p for p in problems), problems
        assert box.probe(box.prober, metadata) == {_key(METADATA_ADDR, METADATA_PORT): "connected"}
    finally:
        remaining = egress.repair(box.network, allow=box.allow, runtime=box.rt)
    assert remaining == []
    assert box.probe(box.prober, metadata) == {_key(METADATA_ADDR, METADATA_PORT): REFUSED}


def described_bridge(box) -> str:
    return egress.network_facts(box.network, box.rt).bridge


def test_an_openclaw_gateway_behind_the_firewall_holds_a_conversation(box):
    from instances.openclaw import config as oc
    from instances.runtime import ContainerSpec, free_port

    rt = box.rt
    name = f"cf-egress-gw-{box.tag}"
    volume = f"{name}-state"
    token = "gw-" + uuid.uuid4().hex + uuid.uuid4().hex
    port = free_port()
    config = oc.build_config(
        gateway_token=token,
        provider_id="clawfleet",
        base_url=box.mock.url_for(box.gateway),
        api_key="sk-mock-" + uuid.uuid4().hex,
        model_id=MOCK_MODEL,
        model_name="Mock model",
        prices={"input": 3, "output": 15},
        context_window=128000,
        max_tokens=4096,
    )
    spec = ContainerSpec(
        name=name,
        hostname=f"oc-egress-{box.tag}",
        image=box.image,
        volume_name=volume,
        host_port=port,
        memory_mb=2048,
        cpus=2.0,
        pids_limit=512,
        labels={TEST_LABEL: "true"},
        env={"CLAWFLEET_INSTANCE": name},
        network=box.network,
    )
    try:
        rt.ensure_volume(volume, {TEST_LABEL: "true"})
        rt.write_config(volume, box.image, config, oc.owned_paths("clawfleet"), secrets=[token])
        rt.ensure_container(spec)
        rt.start(name)
        rt.wait_ready(port, 300, name=name)
        # The gateway itself is boxed too.
        inside = box.probe(name, box.standins.targets)
        assert set(inside.values()) == {REFUSED}, inside
        box.mock.clear()
        started = time.monotonic()
        resp = requests.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            headers={"Authorization": f"Bearer {token}", "x-openclaw-session-key": "egress"},
            json={"model": "openclaw", "messages": [{"role": "user", "content": "still there?"}]},
            timeout=180,
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["choices"][0]["message"]["content"] == "Mock reply: still there?"
        calls = box.mock.requests()
        assert calls and calls[-1]["last_user_message"] == "still there?"
        assert calls[-1]["client"] == container_ip(rt, name, box.network)
        print(f"\nconversation behind the firewall: {time.monotonic() - started:.1f}s")
    finally:
        with contextlib.suppress(Exception):
            rt.remove(name)
        with contextlib.suppress(Exception):
            rt.remove_volume(volume)
