"""The egress firewall of tenant containers: the one module that talks to the host's firewall.

A tenant container (an OpenClaw gateway whose agent runs shell tools) reaches the internet (its
LLM provider, its chat channels) and nothing of ours: not the engine host (bridge gateways, its
LAN address), not cloud metadata, not private or reserved ranges, not other tenants, not the
control plane's PostgreSQL, Redis, web, Docker API or mock LLM, except the endpoints an operator
lists in FLEET_EGRESS_ALLOW. docs/security.md is the operator's view of this module.

The engine's own mechanisms, scoped to Clawfleet's networks (other bridges are left alone):

    FORWARD -> DOCKER-USER -> CLAWFLEET-EGRESS -> (-i <bridge>) CLAWFLEET-F-<bridge>
    INPUT   ->                CLAWFLEET-INPUT  -> (-i <bridge>) CLAWFLEET-H-<bridge>

- CLAWFLEET-F-<bridge> (forwarded traffic from the network's containers): replies pass, DNS to
  the host's configured resolvers passes (Docker's embedded resolver at 127.0.0.11 forwards from
  inside the container's namespace), allowed endpoints pass, every refused range is REJECTed
  (icmp admin-prohibited: a clear, immediate error), the rest RETURNs to Docker's rules (the
  internet).
- CLAWFLEET-H-<bridge> (traffic from those containers to the host itself, which DOCKER-USER never
  sees): replies to connections the host opened pass (published ports, health probes, the edge
  proxy), allowed endpoints on the host pass (the mock LLM), everything else is REJECTed.
- The same for IPv6 with ip6tables (FORWARD instead of DOCKER-USER when Docker has no IPv6 chain).

Each network's two chains are written atomically (iptables-restore --noflush) from the settings
of the process that installs them, so `install()` is idempotent; jumps for bridges that no longer
exist are pruned. `verify()` compares what is installed with what would be, for the reconcile
loop. Root (CAP_NET_ADMIN) is needed to read or write the rules.

`refused_reason(url)` is the same policy for a custom model endpoint at deploy time: why a base
URL points at an address the firewall refuses, or None.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings

FORWARD_CHAIN = "CLAWFLEET-EGRESS"  # jumped to from DOCKER-USER (ip6tables: FORWARD)
INPUT_CHAIN = "CLAWFLEET-INPUT"  # jumped to from INPUT
NET_FORWARD_PREFIX = "CLAWFLEET-F-"  # + bridge interface name (<= 15 chars): <= 27 chars
NET_INPUT_PREFIX = "CLAWFLEET-H-"
DOCKER_USER = "DOCKER-USER"
DEFAULT_BRIDGE = "docker0"  # the default bridge's interface: what host-gateway points at
LOCK_FILE = "clawfleet-egress.lock"
COMMAND_TIMEOUT = 20

ESTABLISHED = "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"
# TCP gets a reset (an immediate "connection refused": ICMP errors are rate-limited by the kernel,
# so a burst of refused connects would otherwise hang until their SYN timeout); the rest ICMP.
REJECT_TCP = "REJECT --reject-with tcp-reset"
REJECT = {
    "4": "REJECT --reject-with icmp-admin-prohibited",
    "6": "REJECT --reject-with icmp6-adm-prohibited",
}
# ICMPv6 a host must answer on a link: router solicitation, neighbour solicitation/advertisement.
NDP_TYPES = (133, 135, 136)

# The refused ranges: one table for the firewall and for refused_reason (the label is what a
# customer reads). Addresses of the engine host and its connected networks are added at install.
REFUSED: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "a reserved address"),
    ("10.0.0.0/8", "a private network address"),
    ("100.64.0.0/10", "a carrier-grade NAT address"),
    ("127.0.0.0/8", "a loopback address (in an instance: its own container)"),
    ("169.254.0.0/16", "a link-local address"),
    ("172.16.0.0/12", "a private network address"),
    ("192.0.0.0/24", "a reserved address"),
    ("192.0.2.0/24", "a documentation address"),
    ("192.168.0.0/16", "a private network address"),
    ("198.18.0.0/15", "a benchmarking address"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved address"),
    ("::/128", "a reserved address"),
    ("::1/128", "a loopback address (in an instance: its own container)"),
    ("::ffff:0:0/96", "an IPv4-mapped address"),
    ("64:ff9b:1::/48", "a local NAT64 address"),
    ("100::/64", "a reserved address"),
    ("2001:db8::/32", "a documentation address"),
    ("fc00::/7", "a private network address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a private network address"),
    ("ff00::/8", "a multicast address"),
)
METADATA = {
    "169.254.169.254": "the cloud metadata service",
    "fd00:ec2::254": "the cloud metadata service",
    "100.100.100.200": "the cloud metadata service",
}
HOST_ALIASES = {"host.docker.internal", "gateway.docker.internal"}
KEYWORDS = ("gateway", "host-gateway")
_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?\.?)+$", re.I)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class EgressError(Exception):
    """The firewall cannot be read or written (no iptables, not root, no such network)."""


# --- the allow list -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Allowed:
    """One FLEET_EGRESS_ALLOW entry: TCP to `target` on ports lo..hi.

    `target` is an IP network ("10.1.2.3/32"), a hostname (resolved at install), "gateway" (the
    Clawfleet network's own gateway on the engine host, where `make run` serves the mock LLM) or
    "host-gateway" (what host.docker.internal resolves to in a container: the default bridge's
    gateway)."""

    entry: str
    target: str
    port_lo: int
    port_hi: int

    def covers_port(self, port: int) -> bool:
        return self.port_lo <= port <= self.port_hi

    @property
    def dport(self) -> str:
        return (
            str(self.port_lo) if self.port_lo == self.port_hi else f"{self.port_lo}:{self.port_hi}"
        )


def parse_allow(entries: Iterable[str]) -> list[Allowed]:
    """Parse "host:port", "cidr:port", "[v6]:port", "gateway:port", "host-gateway:port" (a port
    may be a range "lo-hi"). Raises ValueError naming the bad entry."""
    result = []
    for raw in entries:
        entry = (raw or "").strip()
        if not entry:
            continue
        host, sep, ports = entry.rpartition(":")
        if not sep or not host or not ports:
            raise ValueError(f"FLEET_EGRESS_ALLOW entry {entry!r}: expected host:port")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        elif ":" in host:
            raise ValueError(f"FLEET_EGRESS_ALLOW entry {entry!r}: write IPv6 as [addr]:port")
        lo_s, _, hi_s = ports.partition("-")
        try:
            lo, hi = int(lo_s), int(hi_s or lo_s)
        except ValueError:
            raise ValueError(f"FLEET_EGRESS_ALLOW entry {entry!r}: the port is not a number")
        if not (1 <= lo <= hi <= 65535):
            raise ValueError(f"FLEET_EGRESS_ALLOW entry {entry!r}: ports must be 1-65535")
        host = host.lower()
        if host in KEYWORDS:
            target = host
        else:
            try:
                target = str(ipaddress.ip_network(host, strict=False))
            except ValueError:
                if not _HOSTNAME_RE.match(host):
                    raise ValueError(f"FLEET_EGRESS_ALLOW entry {entry!r}: not a host or network")
                target = host.rstrip(".")
        result.append(Allowed(entry=entry, target=target, port_lo=lo, port_hi=hi))
    return result


def mock_llm_allow(port: int) -> list[str]:
    """The allow entries for a mock LLM serving `port` on the network gateway and on the address
    host.docker.internal points at (what tests and `make run` use)."""
    return [f"gateway:{int(port)}", f"host-gateway:{int(port)}"]


def _default_resolve(host: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    return sorted({info[4][0] for info in infos})


def _unmap(addr: IPAddress) -> IPAddress:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _refused_label(addr: IPAddress) -> str | None:
    addr = _unmap(addr)
    if str(addr) in METADATA:
        return METADATA[str(addr)]
    for cidr, label in REFUSED:
        net = ipaddress.ip_network(cidr)
        if net.version == addr.version and addr in net:
            return label
    return None


# --- refused_reason: the policy at deploy time ------------------------------------------------


def refused_reason(
    url: str,
    *,
    allow: Iterable[str] | None = None,
    resolve: Callable[[str], list[str]] | None = None,
    local_addresses: Iterable[str] | None = None,
    gateways: dict[str, list[str]] | Callable[[], dict[str, list[str]]] | None = None,
) -> str | None:
    """Why the model base URL `url` points at an address tenant containers may not reach, or None.

    Refused: loopback (inside a container that is the container itself), the engine host
    (host.docker.internal, its own addresses), private, shared, link-local (cloud metadata),
    reserved and multicast ranges, unless an entry of `allow` (default FLEET_EGRESS_ALLOW) covers
    that address and port. A hostname is resolved (`resolve`, default the system resolver); every
    address it resolves to must be allowed. A name that does not resolve here gives None (the
    firewall still refuses it at connect time). `local_addresses` (default: this machine's) and
    `gateways` ({"gateway": [...], "host-gateway": [...]}, default: asked from the engine only when
    an allow entry names them) make it a pure function for tests."""
    try:
        parts = urlsplit(str(url).strip())
        port = parts.port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https"):
        return "must be an http:// or https:// URL"
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        return "has no host name"
    port = port or (443 if parts.scheme == "https" else 80)
    entries = parse_allow(settings.FLEET_EGRESS_ALLOW if allow is None else allow)
    matching = [a for a in entries if a.covers_port(port)]
    _gw_cache: dict[str, list[str]] = {}

    def gateway_addrs(keyword: str) -> list[str]:
        if not _gw_cache:
            found = gateways() if callable(gateways) else gateways
            _gw_cache.update(found if found is not None else engine_gateways())
            _gw_cache.setdefault("_", [])
        return _gw_cache.get(keyword) or []

    def allowed(addr: IPAddress | None, name: str) -> bool:
        for a in matching:
            if a.target == name:
                return True
            if addr is None:
                continue
            if a.target in KEYWORDS:
                if any(ipaddress.ip_address(g) == addr for g in gateway_addrs(a.target)):
                    return True
                continue
            with contextlib.suppress(ValueError):
                if addr in ipaddress.ip_network(a.target):
                    return True
        return False

    if host == "localhost" or host.endswith(".localhost"):
        return f"points at {host}: inside an instance's container that is the container itself"
    if host in HOST_ALIASES:
        if any(a.target == "host-gateway" for a in matching) or allowed(None, host):
            return None
        return f"points at {host}, the engine host: instances may not reach it"

    try:
        addrs = [ipaddress.ip_address(host)]
        named = False
    except ValueError:
        addrs = []
        for text in (resolve or _default_resolve)(host):
            with contextlib.suppress(ValueError):
                addrs.append(ipaddress.ip_address(text.split("%")[0]))
        named = True
        if not addrs:
            return None
    local = {
        _unmap(ipaddress.ip_address(a))
        for a in (_local_addresses() if local_addresses is None else local_addresses)
    }
    for addr in addrs:
        plain = _unmap(addr)
        if allowed(plain, host):
            continue
        local_host = plain in local and not plain.is_loopback
        what = "the engine host" if local_host else _refused_label(plain)
        if what is None:
            continue
        where = f"{host} resolves to {plain}" if named else f"points at {plain}"
        return (
            f"{where}, {what}: instances may only reach public addresses (an operator can "
            "allow a private endpoint)"
        )
    return None


# --- facts about this machine -------------------------------------------------------------------


def _binary(name: str) -> str:
    found = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None
    )
    if not found:
        raise EgressError(f"{name} not found on this machine")
    return found


def _run(args: list[str], *, stdin: str | None = None, check: bool = True) -> str:
    try:
        proc = subprocess.run(
            args, input=stdin, capture_output=True, text=True, timeout=COMMAND_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EgressError(f"{' '.join(args[:3])}: {exc}")
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise EgressError(f"{' '.join(args)}: {detail[-1] if detail else proc.returncode}")
    return proc.stdout


def _ip_addr() -> list[dict]:
    try:
        return json.loads(_run([_binary("ip"), "-j", "addr", "show"]) or "[]")
    except (EgressError, ValueError):
        return []


def _local_addresses() -> list[str]:
    """Every address of this machine (all interfaces, both families)."""
    return [
        info["local"]
        for link in _ip_addr()
        for info in link.get("addr_info") or []
        if info.get("local")
    ]


def _host_networks(skip: Iterable[str] = ()) -> list[IPNetwork]:
    """The networks this machine is connected to (its LAN, its bridges), loopback excepted."""
    nets = []
    for link in _ip_addr():
        if link.get("ifname") in skip or "LOOPBACK" in (link.get("flags") or []):
            continue
        for info in link.get("addr_info") or []:
            if info.get("scope") != "global" or not info.get("local"):
                continue
            nets.append(ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}", strict=False))
    return nets


def nameservers(paths: Iterable[str] = ("/etc/resolv.conf", "/run/systemd/resolve/resolv.conf")):
    """The resolvers Docker's embedded DNS forwards to (the host's, loopback ones excepted:
    Docker queries those from the host's own namespace)."""
    found: list[str] = []
    for path in paths:
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                with contextlib.suppress(ValueError):
                    addr = ipaddress.ip_address(parts[1].split("%")[0])
                    if not addr.is_loopback and str(addr) not in found:
                        found.append(str(addr))
        if found:
            break
    return found


def local_runtime(runtime=None):
    """`runtime`, or the adapter of this machine's engine (FLEET_DOCKER_URL)."""
    if runtime is not None:
        return runtime
    from types import SimpleNamespace

    from .runtime import runtime_for

    return runtime_for(SimpleNamespace(base_url=settings.FLEET_DOCKER_URL))


def engine_gateways(runtime=None, network: str | None = None) -> dict[str, list[str]]:
    """{"gateway": [the Clawfleet network's gateway], "host-gateway": [docker0's gateway]}; a
    lookup that fails leaves its list empty (nothing is allowed by it)."""
    result: dict[str, list[str]] = {"gateway": [], "host-gateway": []}
    try:
        rt = local_runtime(runtime)
    except Exception:  # noqa: BLE001 - no engine: nothing is allowed by a keyword
        return result
    for key, name in (("gateway", network or settings.FLEET_NETWORK), ("host-gateway", "bridge")):
        with contextlib.suppress(Exception):
            result[key] = [rt.network_gateway(name)]
    if not result["host-gateway"]:
        # The default bridge's IPAM often names no gateway: Docker's host-gateway is then the
        # address of its interface, docker0.
        result["host-gateway"] = [
            info["local"]
            for link in _ip_addr()
            if link.get("ifname") == DEFAULT_BRIDGE
            for info in link.get("addr_info") or []
            if info.get("family") == "inet" and info.get("local")
        ][:1]
    return result


@dataclass
class NetworkFacts:
    """A Clawfleet network as this machine sees it."""

    name: str
    bridge: str
    gateway: str
    subnets: list[IPNetwork] = field(default_factory=list)
    gateways6: list[str] = field(default_factory=list)


def network_facts(network: str | None = None, runtime=None) -> NetworkFacts:
    """The bridge interface of `network` (default FLEET_NETWORK): the local interface holding the
    gateway address the engine reports. Raises EgressError when absent."""
    name = network or settings.FLEET_NETWORK
    try:
        gateway = local_runtime(runtime).network_gateway(name)
    except EgressError:
        raise
    except Exception as exc:  # noqa: BLE001 - engine errors and "no such network" alike
        raise EgressError(f"network {name}: {exc}")
    for link in _ip_addr():
        infos = link.get("addr_info") or []
        if any(i.get("family") == "inet" and i.get("local") == gateway for i in infos):
            facts = NetworkFacts(name=name, bridge=link["ifname"], gateway=gateway)
            for info in infos:
                if info.get("scope") != "global" or not info.get("local"):
                    continue
                net = ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}", strict=False)
                facts.subnets.append(net)
                if info.get("family") == "inet6":
                    facts.gateways6.append(info["local"])
            return facts
    raise EgressError(
        f"network {name}: no interface on this machine holds its gateway {gateway} "
        "(is the engine on another machine? run scripts/ensure-firewall.sh there)"
    )


# --- the rules (pure) -----------------------------------------------------------------------------


def resolve_allowed(
    allowed: Iterable[Allowed],
    *,
    gateways: dict[str, list[str]],
    resolve: Callable[[str], list[str]] | None = None,
) -> list[tuple[IPNetwork, Allowed]]:
    """Each allow entry as concrete networks (keywords and hostnames resolved)."""
    result = []
    for a in allowed:
        if a.target in KEYWORDS:
            texts = gateways.get(a.target) or []
        else:
            try:
                texts = [str(ipaddress.ip_network(a.target))]
            except ValueError:
                texts = (resolve or _default_resolve)(a.target)
        for text in texts:
            with contextlib.suppress(ValueError):
                net = ipaddress.ip_network(text.split("%")[0], strict=False)
                if isinstance(net, ipaddress.IPv6Network) and net.network_address.ipv4_mapped:
                    net = ipaddress.ip_network(f"{net.network_address.ipv4_mapped}/32")
                result.append((net, a))
    return result


def refused_networks(extra: Iterable[IPNetwork] = ()) -> dict[str, list[IPNetwork]]:
    """The static refused ranges plus `extra` (the host's own networks) not already inside one,
    by family."""
    static = [ipaddress.ip_network(cidr) for cidr, _ in REFUSED]
    result: dict[str, list[IPNetwork]] = {"4": [], "6": []}
    for net in static:
        result[str(net.version)].append(net)
    for net in extra:
        same = [s for s in static if s.version == net.version]
        if not any(net.subnet_of(s) for s in same) and net not in result[str(net.version)]:
            result[str(net.version)].append(net)
    return result


def build_rules(
    *,
    allowed: Iterable[tuple[IPNetwork, Allowed]],
    dns: Iterable[str],
    extra_refused: Iterable[IPNetwork] = (),
) -> dict[str, dict[str, list[str]]]:
    """The rules of one network's chains, {"4"|"6": {"forward": [...], "input": [...]}}, each rule
    as `iptables -S` prints it after "-A <chain> " (so verify compares text with text)."""
    allowed = list(allowed)
    dns_addrs = [ipaddress.ip_address(a) for a in dns]
    refused = refused_networks(extra_refused)
    rules: dict[str, dict[str, list[str]]] = {}
    for fam in ("4", "6"):
        bits = 32 if fam == "4" else 128
        resolvers = [
            f"-d {a}/{bits} -p {proto} -m {proto} --dport 53 -j RETURN"
            for a in dns_addrs
            if str(a.version) == fam and _refused_label(a) is not None
            for proto in ("udp", "tcp")
        ]
        allows = []
        for net, a in allowed:
            rule = f"-d {net} -p tcp -m tcp --dport {a.dport} -j RETURN"
            if str(net.version) == fam and rule not in allows:
                allows.append(rule)
        forward = [ESTABLISHED, *resolvers, *allows]
        for net in refused[fam]:
            forward += [f"-d {net} -p tcp -j {REJECT_TCP}", f"-d {net} -j {REJECT[fam]}"]
        forward.append("-j RETURN")
        host = [ESTABLISHED]
        if fam == "6":
            host += [f"-p ipv6-icmp -m icmp6 --icmpv6-type {t} -j RETURN" for t in NDP_TYPES]
        host += [*resolvers, *allows, f"-p tcp -j {REJECT_TCP}", f"-j {REJECT[fam]}"]
        rules[fam] = {"forward": forward, "input": host}
    return rules


def chain_names(bridge: str) -> tuple[str, str]:
    return f"{NET_FORWARD_PREFIX}{bridge}", f"{NET_INPUT_PREFIX}{bridge}"


# --- talking to iptables ------------------------------------------------------------------------


def _normalise(rule: str) -> str:
    """Addresses as Python writes them (ip6tables prints ::ffff:0.0.0.0/96, we ::ffff:0:0/96)."""
    words = rule.split()
    for i, word in enumerate(words[:-1]):
        if word in ("-d", "-s"):
            with contextlib.suppress(ValueError):
                words[i + 1] = str(ipaddress.ip_network(words[i + 1], strict=False))
    return " ".join(words)


class _Tables:
    """One family's filter table (iptables or ip6tables, whichever backend the engine uses)."""

    def __init__(self, family: str):
        self.family = family
        self.binary = _binary("iptables" if family == "4" else "ip6tables")
        self.restore = _binary("iptables-restore" if family == "4" else "ip6tables-restore")

    def run(self, *args: str, check: bool = True) -> str:
        return _run([self.binary, "-w", "5", *args], check=check)

    def rules(self, chain: str) -> list[str] | None:
        """The chain's rules as "-A <chain> " stripped lines, or None when it does not exist."""
        proc = subprocess.run(
            [self.binary, "-w", "5", "-S", chain],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
        if proc.returncode != 0:
            err = proc.stderr.lower()
            if "permission denied" in err or "you must be root" in err:
                raise EgressError(
                    f"cannot read the firewall ({self.binary} -S): root (CAP_NET_ADMIN) is needed"
                )
            # "No chain/target/match" (legacy), "chain ... is incompatible" (nft): ask the list.
            if chain not in self.chains():
                return None
            raise EgressError(f"{self.binary} -S {chain}: {proc.stderr.strip()}")
        prefix = f"-A {chain} "
        return [
            _normalise(ln[len(prefix) :])
            for ln in proc.stdout.splitlines()
            if ln.startswith(prefix)
        ]

    def chains(self) -> list[str]:
        out = self.run("-S")
        return [ln.split()[1] for ln in out.splitlines() if ln.startswith("-N ")]

    def ensure_chain(self, chain: str) -> bool:
        if self.rules(chain) is not None:
            return False
        self.run("-N", chain, check=False)
        return True

    def ensure_first(self, parent: str, rule: str) -> bool:
        """`rule` is the first rule of `parent`, once. True when something changed. The new copy
        goes in before the old ones leave, so the chain is never without it."""
        current = self.rules(parent) or []
        if current[:1] == [rule] and current.count(rule) == 1:
            return False
        if current[:1] != [rule]:
            self.run("-I", parent, "1", *rule.split())
        self._drop_duplicates(parent, rule)
        return True

    def ensure_rule(self, chain: str, rule: str) -> bool:
        """`rule` is in `chain`, once (appended when absent). True when something changed."""
        current = self.rules(chain) or []
        if current.count(rule) == 1:
            return False
        if rule not in current:
            self.run("-A", chain, *rule.split())
        self._drop_duplicates(chain, rule)
        return True

    def _drop_duplicates(self, chain: str, rule: str) -> None:
        """Delete every copy of `rule` after the first, by number (bottom up)."""
        current = self.rules(chain) or []
        seen = False
        numbers = []
        for number, have in enumerate(current, start=1):
            if have == rule:
                if seen:
                    numbers.append(number)
                seen = True
        for number in reversed(numbers):
            self.run("-D", chain, str(number))

    def write_chains(self, chains: dict[str, list[str]]) -> None:
        """Replace each chain's content atomically (creating it when absent)."""
        lines = ["*filter", *(f":{name} - [0:0]" for name in chains)]
        for name, rules in chains.items():
            lines += [f"-A {name} {rule}" for rule in rules]
        lines.append("COMMIT")
        _run([self.restore, "-w", "5", "--noflush"], stdin="\n".join(lines) + "\n")

    def drop_chain(self, chain: str) -> None:
        self.run("-F", chain, check=False)
        self.run("-X", chain, check=False)


def _families() -> list[_Tables]:
    tables = [_Tables("4")]
    if Path("/proc/net/if_inet6").exists():
        try:
            six = _Tables("6")
            six.run("-S", "INPUT")
            tables.append(six)
        except EgressError:
            pass
    return tables


def _forward_parent(t: _Tables) -> str:
    """Where forwarded traffic meets our chain: DOCKER-USER (IPv4, and IPv6 when Docker manages
    ip6tables), FORWARD otherwise."""
    if t.family == "4" or t.rules(DOCKER_USER) is not None:
        return DOCKER_USER
    return "FORWARD"


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    base = Path("/run/lock") if Path("/run/lock").is_dir() else Path("/tmp")
    with open(base / LOCK_FILE, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _bridge_exists(bridge: str) -> bool:
    return Path("/sys/class/net", bridge).exists()


# --- the public operations ----------------------------------------------------------------------


def applies() -> bool:
    """True when this process manages a local Docker engine's firewall (the default runtime on a
    unix socket). Remote engines run scripts/ensure-firewall.sh on their own host."""
    return settings.FLEET_RUNTIME == "instances.runtime.DockerRuntime" and str(
        settings.FLEET_DOCKER_URL
    ).startswith("unix://")


@dataclass
class Plan:
    """What install() writes for one network, and from what."""

    facts: NetworkFacts
    allow: list[Allowed]
    allowed: list[tuple[IPNetwork, Allowed]]
    dns: list[str]
    extra_refused: list[IPNetwork]
    rules: dict[str, dict[str, list[str]]]


def plan(network: str | None = None, allow: Iterable[str] | None = None, runtime=None) -> Plan:
    """The rules for `network` (default FLEET_NETWORK) under `allow` (default
    FLEET_EGRESS_ALLOW). Raises EgressError (network absent) or ValueError (bad entry)."""
    rt = local_runtime(runtime)
    facts = network_facts(network, rt)
    entries = parse_allow(settings.FLEET_EGRESS_ALLOW if allow is None else allow)
    gateways = {"gateway": [facts.gateway, *facts.gateways6], "host-gateway": []}
    if any(a.target == "host-gateway" for a in entries):
        gateways["host-gateway"] = engine_gateways(rt, facts.name)["host-gateway"]
    allowed = resolve_allowed(entries, gateways=gateways)
    dns = nameservers()
    extra = [*_host_networks(), *facts.subnets]
    rules = build_rules(allowed=allowed, dns=dns, extra_refused=extra)
    return Plan(facts, entries, allowed, dns, extra, rules)


def install_base() -> list[str]:
    """The dispatch chains and their jumps (first in DOCKER-USER and INPUT), without any network;
    prunes chains of bridges that no longer exist. Returns what changed."""
    changes: list[str] = []
    with _lock():
        for t in _families():
            changes += _ensure_base(t)
            changes += _prune(t)
    return changes


def _ensure_base(t: _Tables) -> list[str]:
    changes = []
    parent = _forward_parent(t)
    if t.rules(parent) is None:
        raise EgressError(
            f"chain {parent} is missing (IPv{t.family}): is the Docker engine running with its "
            "iptables integration on?"
        )
    for chain in (FORWARD_CHAIN, INPUT_CHAIN):
        if t.ensure_chain(chain):
            changes.append(f"IPv{t.family}: created {chain}")
    for parent_chain, chain in ((parent, FORWARD_CHAIN), ("INPUT", INPUT_CHAIN)):
        if t.ensure_first(parent_chain, f"-j {chain}"):
            changes.append(f"IPv{t.family}: {parent_chain} jumps to {chain} first")
    return changes


def _prune(t: _Tables, only: str | None = None) -> list[str]:
    """Remove the dispatch rules and chains of bridges that are gone (or of `only`)."""
    changes = []
    for dispatch in (FORWARD_CHAIN, INPUT_CHAIN):
        for rule in t.rules(dispatch) or []:
            words = rule.split()
            if len(words) == 4 and words[0] == "-i" and words[2] == "-j":
                bridge = words[1]
                if (only is None and not _bridge_exists(bridge)) or bridge == only:
                    t.run("-D", dispatch, *words, check=False)
                    changes.append(f"IPv{t.family}: removed the rules of {bridge}")
    wanted = set()
    for dispatch in (FORWARD_CHAIN, INPUT_CHAIN):
        wanted |= {r.split()[-1] for r in t.rules(dispatch) or []}
    for chain in t.chains():
        if chain.startswith((NET_FORWARD_PREFIX, NET_INPUT_PREFIX)) and chain not in wanted:
            bridge = chain.removeprefix(NET_FORWARD_PREFIX).removeprefix(NET_INPUT_PREFIX)
            if only is None or bridge == only:
                t.drop_chain(chain)
    return changes


def install(
    network: str | None = None, allow: Iterable[str] | None = None, runtime=None
) -> list[str]:
    """Install (idempotently) the firewall of `network` (default FLEET_NETWORK) under `allow`
    (default FLEET_EGRESS_ALLOW). Returns the changes made ([] when everything was in place).
    Raises EgressError when the firewall or the network cannot be reached, ValueError for a bad
    allow entry."""
    p = plan(network, allow, runtime)
    fwd, host = chain_names(p.facts.bridge)
    changes: list[str] = []
    with _lock():
        for t in _families():
            changes += _ensure_base(t)
            want = p.rules[t.family]
            if t.rules(fwd) != want["forward"] or t.rules(host) != want["input"]:
                t.write_chains({fwd: want["forward"], host: want["input"]})
                changes.append(f"IPv{t.family}: wrote {fwd} and {host} ({p.facts.name})")
            for dispatch, chain in ((FORWARD_CHAIN, fwd), (INPUT_CHAIN, host)):
                if t.ensure_rule(dispatch, f"-i {p.facts.bridge} -j {chain}"):
                    changes.append(f"IPv{t.family}: {dispatch} sends {p.facts.bridge} to {chain}")
            changes += _prune(t)
    return changes


def remove(network: str | None = None, runtime=None, *, bridge: str | None = None) -> None:
    """Remove one network's rules (its bridge, or `bridge` when the network is gone)."""
    if bridge is None:
        bridge = network_facts(network, runtime).bridge
    with _lock():
        for t in _families():
            _prune(t, only=bridge)


def verify(
    network: str | None = None, allow: Iterable[str] | None = None, runtime=None
) -> list[str]:
    """What is wrong with the installed firewall of `network` (default FLEET_NETWORK), as
    sentences; [] when every rule is in place (or when this process manages no local engine, see
    applies()). Never raises: an unreadable firewall is a problem in the list."""
    if runtime is None and not applies():
        return []
    try:
        p = plan(network, allow, runtime)
    except (EgressError, ValueError) as exc:
        return [str(exc)]
    problems: list[str] = []
    sysctl = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
    if not sysctl.exists() or sysctl.read_text().strip() != "1":
        problems.append(
            "net.bridge.bridge-nf-call-iptables is not 1: traffic between containers of one "
            "network bypasses the firewall (modprobe br_netfilter)"
        )
    fwd, host = chain_names(p.facts.bridge)
    try:
        for t in _families():
            v = f"IPv{t.family}"
            parent = _forward_parent(t)
            if parent == DOCKER_USER and (t.rules("FORWARD") or [])[:1] != [f"-j {DOCKER_USER}"]:
                problems.append(f"{v}: FORWARD does not jump to {DOCKER_USER} first")
            for parent_chain, chain in ((parent, FORWARD_CHAIN), ("INPUT", INPUT_CHAIN)):
                if (t.rules(parent_chain) or [])[:1] != [f"-j {chain}"]:
                    problems.append(f"{v}: {parent_chain} does not jump to {chain} first")
            for dispatch, chain in ((FORWARD_CHAIN, fwd), (INPUT_CHAIN, host)):
                if f"-i {p.facts.bridge} -j {chain}" not in (t.rules(dispatch) or []):
                    problems.append(f"{v}: {dispatch} does not send {p.facts.bridge} to {chain}")
            for chain, want in (
                (fwd, p.rules[t.family]["forward"]),
                (host, p.rules[t.family]["input"]),
            ):
                have = t.rules(chain)
                if have is None:
                    problems.append(f"{v}: chain {chain} is missing ({p.facts.name})")
                elif have != want:
                    missing = [r for r in want if r not in have]
                    extra = [r for r in have if r not in want]
                    detail = (
                        "; ".join(
                            [
                                *(f"missing {r!r}" for r in missing[:3]),
                                *(f"extra {r!r}" for r in extra[:3]),
                            ]
                        )
                        or "rules out of order"
                    )
                    problems.append(f"{v}: chain {chain} differs: {detail}")
    except EgressError as exc:
        problems.append(str(exc))
    return problems


def repair(
    network: str | None = None, allow: Iterable[str] | None = None, runtime=None
) -> list[str]:
    """install() when verify() finds problems; returns the problems that remain ([] = fixed or
    nothing to fix). For the reconcile loop: log what verify() said, call this."""
    if runtime is None and not applies():
        return []
    if not verify(network, allow, runtime):
        return []
    try:
        install(network, allow, runtime)
    except (EgressError, ValueError) as exc:
        return [str(exc)]
    return verify(network, allow, runtime)


def describe(network: str | None = None, allow: Iterable[str] | None = None, runtime=None) -> dict:
    """What the firewall of `network` should be and is, for operators (manage.py fleet_firewall
    describe), docs and the bench. JSON-serialisable."""
    p = plan(network, allow, runtime)
    fwd, host = chain_names(p.facts.bridge)
    installed = {}
    for t in _families():
        installed[t.family] = {"forward": t.rules(fwd), "input": t.rules(host)}
    return {
        "network": p.facts.name,
        "bridge": p.facts.bridge,
        "gateway": p.facts.gateway,
        "subnets": [str(n) for n in p.facts.subnets],
        "chains": {"forward": fwd, "input": host},
        "allow": [
            {"entry": a.entry, "network": str(net), "ports": a.dport} for net, a in p.allowed
        ],
        "dns": p.dns,
        "refused": {
            fam: [str(n) for n in nets] for fam, nets in refused_networks(p.extra_refused).items()
        },
        "expected": p.rules,
        "installed": installed,
        "problems": verify(network, allow, runtime),
    }
