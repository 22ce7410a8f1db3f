"""The firewall's rules as data: the allow list's syntax and what one network's chains hold."""

import ipaddress

import pytest

from instances import egress
from tests.security.helpers import evaluate


def test_allow_entries_parse_hosts_networks_ranges_and_keywords():
    parsed = egress.parse_allow(
        ["10.1.2.3:8000", "10.9.0.0/16:443", "[fd00::5]:80", "gateway:18900", "llm.corp:8000-8010"]
    )
    assert [(a.target, a.dport) for a in parsed] == [
        ("10.1.2.3/32", "8000"),
        ("10.9.0.0/16", "443"),
        ("fd00::5/128", "80"),
        ("gateway", "18900"),
        ("llm.corp", "8000:8010"),
    ]
    assert egress.parse_allow(["", "  "]) == []


@pytest.mark.parametrize(
    "entry", ["10.1.2.3", "10.1.2.3:0", "10.1.2.3:70000", "fd00::5:80", "bad host!:80", ":80"]
)
def test_a_bad_allow_entry_is_an_error_naming_it(entry):
    with pytest.raises(ValueError, match="FLEET_EGRESS_ALLOW entry"):
        egress.parse_allow([entry])


def build(allow=(), dns=(), extra=(), gateways=None):
    gateways = gateways or {"gateway": ["172.18.0.1"], "host-gateway": ["172.17.0.1"]}
    allowed = egress.resolve_allowed(
        egress.parse_allow(allow), gateways=gateways, resolve=lambda h: ["10.77.0.9"]
    )
    return egress.build_rules(
        allowed=allowed, dns=list(dns), extra_refused=[ipaddress.ip_network(n) for n in extra]
    )


def test_forwarded_traffic_to_refused_ranges_is_rejected_and_the_internet_passes():
    rules = build()["4"]["forward"]
    for dst in (
        "10.1.2.3",
        "172.31.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "169.254.169.254",
        "0.0.0.1",
    ):
        assert evaluate(rules, dst, 80) == "REJECT", dst
    for dst in ("1.1.1.1", "140.82.112.3", "8.8.8.8"):
        assert evaluate(rules, dst, 443) == "RETURN", dst
    assert rules[0] == egress.ESTABLISHED and rules[-1] == "-j RETURN"


def test_everything_to_the_host_itself_is_rejected_but_replies():
    rules = build()["4"]["input"]
    assert rules[0] == egress.ESTABLISHED
    assert rules[-1].startswith("-j REJECT")
    assert evaluate(rules, "172.18.0.1", 5432) == "REJECT"
    assert evaluate(rules, "192.0.2.2", 22) == "REJECT"


def test_allowed_endpoints_pass_on_their_port_only():
    rules = build(allow=["gateway:18900", "host-gateway:18900", "llm.corp:8000"])["4"]
    assert evaluate(rules["input"], "172.18.0.1", 18900) == "RETURN"
    assert evaluate(rules["input"], "172.17.0.1", 18900) == "RETURN"
    assert evaluate(rules["input"], "172.18.0.1", 18901) == "REJECT"
    assert evaluate(rules["forward"], "10.77.0.9", 8000) == "RETURN"
    assert evaluate(rules["forward"], "10.77.0.9", 22) == "REJECT"


def test_a_private_resolver_is_reachable_on_port_53_only():
    rules = build(dns=["10.255.255.53", "1.1.1.1"])["4"]["forward"]
    assert evaluate(rules, "10.255.255.53", 53, "udp") == "RETURN"
    assert evaluate(rules, "10.255.255.53", 53, "tcp") == "RETURN"
    assert evaluate(rules, "10.255.255.53", 80) == "REJECT"
    assert not any("1.1.1.1" in r for r in rules)  # public: passes anyway


def test_the_hosts_public_networks_are_refused_too():
    rules = build(extra=["203.0.114.0/24", "172.18.0.0/16"])["4"]["forward"]
    assert evaluate(rules, "203.0.114.9", 443) == "REJECT"
    assert evaluate(rules, "203.0.115.9", 443) == "RETURN"
    # Already inside 172.16.0.0/12: no second rule.
    assert not any("172.18.0.0/16" in r for r in rules)


def test_ipv6_refuses_private_link_local_and_mapped_and_keeps_neighbour_discovery():
    rules = build()["6"]
    for dst in ("fd00::1", "fe80::1", "::1", "::ffff:10.0.0.1", "ff02::1"):
        assert evaluate(rules["forward"], dst, 80) == "REJECT", dst
    assert evaluate(rules["forward"], "2606:4700::1", 443) == "RETURN"
    assert any("--icmpv6-type 135" in r for r in rules["input"])
    assert rules["input"][-1].startswith("-j REJECT")


def test_chain_names_fit_iptables_limit():
    fwd, host = egress.chain_names("br-0123456789ab")
    assert len(fwd) <= 28 and len(host) <= 28
