"""install / verify / repair / remove against this machine's real iptables, on a bridge of the
test's own (a dummy bridge holding a 198.18.x address: benchmarking space, never routed out).
No containers: fast. The rules touch only that bridge's traffic; the shared dispatch chains and
their jumps are what every Clawfleet network uses, and are only ever added to, never flushed."""

import random
import subprocess
import uuid

import pytest

from instances import egress
from tests.security.helpers import environment_ok, sh


class OneNetwork:
    """The runtime, as far as the firewall needs it: one network and its gateway."""

    def __init__(self, name, gateway, host_gateway=None):
        self.name, self.gateway, self.host_gateway = name, gateway, host_gateway

    def network_gateway(self, name):
        if name == self.name:
            return self.gateway
        if name == "bridge" and self.host_gateway:
            return self.host_gateway
        raise LookupError(f"network {name} not found")


def iptables(*args, family="4"):
    binary = "iptables" if family == "4" else "ip6tables"
    return subprocess.run([binary, "-w", "5", *args], capture_output=True, text=True, check=False)


def chain(name, family="4"):
    out = iptables("-S", name, family=family).stdout.splitlines()
    return [ln.split(" ", 2)[2] for ln in out if ln.startswith("-A ")]


@pytest.fixture
def bridge():
    problem = environment_ok()
    if problem:
        pytest.fail(problem, pytrace=False)
    tag = uuid.uuid4().hex[:6]
    name = f"cfbr{tag}"
    third = random.randint(0, 255)
    gateway = f"198.18.{third}.1"
    sh("ip", "link", "add", name, "type", "bridge")
    sh("ip", "addr", "add", f"{gateway}/24", "dev", name)
    net = OneNetwork(f"clawfleet-fw-test-{tag}", gateway)
    net.bridge = name
    yield net
    egress.remove(bridge=name)
    sh("ip", "link", "del", name, check=False)


def test_install_writes_the_networks_chains_once_and_verify_finds_them(bridge):
    changes = egress.install(bridge.name, allow=["gateway:18900"], runtime=bridge)
    fwd, host = egress.chain_names(bridge.bridge)
    assert any(fwd in c for c in changes)
    assert f"-i {bridge.bridge} -j {fwd}" in chain(egress.FORWARD_CHAIN)
    assert f"-i {bridge.bridge} -j {host}" in chain(egress.INPUT_CHAIN)
    assert chain("DOCKER-USER")[0] == f"-j {egress.FORWARD_CHAIN}"
    assert chain("INPUT")[0] == f"-j {egress.INPUT_CHAIN}"
    assert f"-d {bridge.gateway}/32 -p tcp -m tcp --dport 18900 -j RETURN" in chain(host)
    assert "-d 169.254.0.0/16 -p tcp -j REJECT --reject-with tcp-reset" in chain(fwd)
    assert "-d 169.254.0.0/16 -j REJECT --reject-with icmp-admin-prohibited" in chain(fwd)
    assert egress.verify(bridge.name, allow=["gateway:18900"], runtime=bridge) == []
    # Idempotent: nothing to change the second time, and no duplicate rules.
    assert egress.install(bridge.name, allow=["gateway:18900"], runtime=bridge) == []
    assert chain(egress.FORWARD_CHAIN).count(f"-i {bridge.bridge} -j {fwd}") == 1
    assert chain("DOCKER-USER").count(f"-j {egress.FORWARD_CHAIN}") == 1


def test_verify_names_a_deleted_rule_and_install_puts_it_back(bridge):
    egress.install(bridge.name, allow=[], runtime=bridge)
    fwd, _ = egress.chain_names(bridge.bridge)
    rule = "-d 169.254.0.0/16 -p tcp -j REJECT --reject-with tcp-reset"
    assert iptables("-D", fwd, *rule.split()).returncode == 0
    problems = egress.verify(bridge.name, allow=[], runtime=bridge)
    assert problems and "169.254.0.0/16" in " ".join(problems)
    assert egress.repair(bridge.name, allow=[], runtime=bridge) == []
    assert rule in chain(fwd)
    assert egress.verify(bridge.name, allow=[], runtime=bridge) == []


def test_a_rule_slipped_in_before_our_jump_is_reported_and_our_jump_goes_first_again(bridge):
    egress.install(bridge.name, allow=[], runtime=bridge)
    # Only the test bridge's traffic matches it: nobody else's containers are affected.
    slipped = f"-i {bridge.bridge} -j RETURN"
    assert iptables("-I", "DOCKER-USER", "1", *slipped.split()).returncode == 0
    try:
        problems = egress.verify(bridge.name, allow=[], runtime=bridge)
        assert f"IPv4: DOCKER-USER does not jump to {egress.FORWARD_CHAIN} first" in problems
        egress.install(bridge.name, allow=[], runtime=bridge)
        rules = chain("DOCKER-USER")
        assert rules[0] == f"-j {egress.FORWARD_CHAIN}"
        assert rules.count(f"-j {egress.FORWARD_CHAIN}") == 1
        assert egress.verify(bridge.name, allow=[], runtime=bridge) == []
    finally:
        iptables("-D", "DOCKER-USER", *slipped.split())


def test_a_changed_allow_list_is_a_problem_until_installed(bridge):
    egress.install(bridge.name, allow=["gateway:18900"], runtime=bridge)
    problems = egress.verify(bridge.name, allow=[], runtime=bridge)
    assert problems and "18900" in " ".join(problems)
    egress.install(bridge.name, allow=[], runtime=bridge)
    _, host = egress.chain_names(bridge.bridge)
    assert not any("18900" in r for r in chain(host))


def test_host_gateway_entries_allow_the_default_bridges_gateway(bridge):
    bridge.host_gateway = "172.17.0.1"
    egress.install(bridge.name, allow=["host-gateway:18900"], runtime=bridge)
    _, host = egress.chain_names(bridge.bridge)
    assert "-d 172.17.0.1/32 -p tcp -m tcp --dport 18900 -j RETURN" in chain(host)


def test_remove_and_prune_leave_no_chain_of_a_bridge_behind(bridge):
    egress.install(bridge.name, allow=[], runtime=bridge)
    fwd, host = egress.chain_names(bridge.bridge)
    egress.remove(bridge.name, runtime=bridge)
    assert not any(bridge.bridge in r for r in chain(egress.FORWARD_CHAIN))
    assert iptables("-S", fwd).returncode != 0 and iptables("-S", host).returncode != 0
    # A bridge that disappeared (its network removed) is pruned by the next install of anyone.
    egress.install(bridge.name, allow=[], runtime=bridge)
    sh("ip", "link", "del", bridge.bridge)
    egress.install_base()
    assert not any(bridge.bridge in r for r in chain(egress.INPUT_CHAIN))
    assert iptables("-S", fwd).returncode != 0


def test_verify_reports_a_missing_network(bridge):
    problems = egress.verify("no-such-network", allow=[], runtime=bridge)
    assert len(problems) == 1 and "no-such-network" in problems[0]


def test_verify_is_silent_where_this_process_manages_no_local_engine(settings):
    settings.FLEET_DOCKER_URL = "tcp://engine-2.internal:2376"
    assert egress.applies() is False
    assert egress.verify() == [] and egress.repair() == []
    settings.FLEET_DOCKER_URL = "unix:///var/run/docker.sock"
    settings.FLEET_RUNTIME = "tests.fakes.FakeRuntime"
    assert egress.applies() is False
