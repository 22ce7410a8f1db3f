"""Helpers of the egress tests and bench/isolation.py: stand-in hosts in a network namespace,
listeners on the engine host, lightweight tenant containers and a probe that runs inside them.

Every address a probe targets is on this machine: the engine host's own addresses, containers
on the test's networks, or the stand-ins, which live in a network namespace this module creates
(a veth pair whose far end holds 169.254.169.254 and a 10.x address). Before a probe the routes to
the stand-ins are checked to point at our veth, so a probe can never leave the machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import random
import socket
import socketserver
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

METADATA_ADDR = "169.254.169.254"
METADATA_PORT = 80
LAN_PORT = 8080
LAN_ALLOWED_PORT = 8081  # a second service on the stand-in LAN host, for an operator's allow entry
# The stand-ins' private LAN: one /24 of 10.203.0.0/16 not routed on this machine yet.
LAN_POOL = ipaddress.ip_network("10.203.0.0/16")
LOCK_PATH = Path("/run/lock") / "clawfleet-standins.lock"
TEST_LABEL = "clawfleet.egress-test"

# Runs inside a tenant container as its user: TCP connect to each target, one JSON line out.
PROBE_JS = r"""
const net = require('net');
const targets = JSON.parse(process.argv[1]);
const timeout = Number(process.argv[2] || 3000);
const out = {};
let left = targets.length;
if (!left) console.log('{}');
for (const [host, port] of targets) {
  const key = `${host}:${port}`;
  const s = net.connect({host, port});
  const done = (r) => {
    if (key in out) return;
    out[key] = r; s.destroy();
    if (--left === 0) console.log(JSON.stringify(out));
  };
  s.setTimeout(timeout, () => done('timeout'));
  s.on('connect', () => done('connected'));
  s.on('error', (e) => done(e.code || String(e)));
}
"""

# An HTTP GET from inside the container: prints {"status": N, "body": "..."} or {"error": CODE}.
HTTP_JS = r"""
const http = require('http');
const req = http.get(process.argv[1], {timeout: 5000}, (res) => {
  let body = ''; res.on('data', (c) => body += c);
  res.on('end', () => console.log(JSON.stringify({status: res.statusCode, body})));
});
req.on('timeout', () => req.destroy(new Error('timeout')));
req.on('error', (e) => console.log(JSON.stringify({error: e.code || String(e)})));
"""

# Docker's embedded DNS (127.0.0.11 in the container's own namespace) answers for a name.
DNS_JS = r"""
require('dns').resolve4(process.argv[1], (e, a) =>
  console.log(JSON.stringify(e ? {error: e.code} : {addresses: a})));
"""

LISTENER_PY = r"""
import socket, sys, threading, time
def serve(host, port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port)); s.listen(16)
    while True:
        c, _ = s.accept()
        try: c.sendall(b"standin\n")
        finally: c.close()
for spec in sys.argv[1:]:
    host, port = spec.rsplit(":", 1)
    threading.Thread(target=serve, args=(host, int(port)), daemon=True).start()
while True: time.sleep(3600)
"""


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {proc.stderr.strip() or proc.stdout}")
    return proc


def can_connect(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_connectable(host: str, port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if can_connect(host, port, 1.0):
            return
        time.sleep(0.2)
    raise RuntimeError(f"nothing answers on {host}:{port} after {timeout}s")


def route_device(addr: str) -> str:
    rows = json.loads(sh("ip", "-j", "route", "get", addr).stdout or "[]")
    return rows[0].get("dev", "") if rows else ""


def host_ipv4_addresses() -> list[str]:
    """Every IPv4 address of this machine except loopback (its LAN, every bridge's gateway)."""
    rows = json.loads(sh("ip", "-j", "-4", "addr", "show").stdout or "[]")
    return [
        info["local"]
        for row in rows
        for info in row.get("addr_info") or []
        if info.get("local") and not info["local"].startswith("127.")
    ]


CONTROL_PLANE_PORTS = {"PostgreSQL": 5432, "Redis": 6379, "web": 8000, "Docker API": 2375}
TENANT_PORT = 8080


def forbidden_targets(
    *,
    host_addresses: list[str],
    gateway: str,
    lan: str | None,
    host_any_port: int,
    host_gw_port: int,
    mock_port: int,
    neighbour_ip: str,
    other_ip: str,
    standins: StandIns,
) -> list[tuple[str, str, int]]:
    """(what, host, port) a tenant container must not reach: every host address with a service
    listening on all of them, a service on the network gateway, the control plane's ports, the
    mock LLM's port where it is not allowed, two other tenants, the outside stand-ins."""
    targets = [(f"host service on host address {a}", a, host_any_port) for a in host_addresses]
    targets.append(("host service on the network gateway", gateway, host_gw_port))
    for what, port in CONTROL_PLANE_PORTS.items():
        targets.append((f"{what} on the network gateway", gateway, port))
        if lan:
            targets.append((f"{what} on the host's LAN address", lan, port))
    if lan:
        targets.append(("mock LLM port on the host's LAN address", lan, mock_port))
    targets.append(("another tenant on the same network", neighbour_ip, TENANT_PORT))
    targets.append(("a container on the default bridge", other_ip, TENANT_PORT))
    return targets + standins.targets


def allowed_targets(
    *, gateway: str, mock_port: int, standins: StandIns, docker0_port: int | None = None
) -> list[tuple[str, str, int]]:
    """(what, host, port) a tenant container must reach: the mock LLM, an operator-listed
    private endpoint, and (with docker0_port) a host endpoint allowed as host-gateway:port."""
    targets = [
        ("mock LLM on the network gateway", gateway, mock_port),
        ("operator-allowed private endpoint", standins.lan_addr, LAN_ALLOWED_PORT),
    ]
    if docker0_port:
        targets.append(("operator-allowed host endpoint", "host.docker.internal", docker0_port))
    return targets


def lan_address() -> str | None:
    """The host's address on its LAN: the source of its default route (a route lookup, no
    packet is sent)."""
    rows = json.loads(sh("ip", "-j", "route", "get", "1.1.1.1", check=False).stdout or "[]")
    return rows[0].get("prefsrc") if rows else None


class StandIns:
    """Hosts of our own for the outside ranges: a namespace `cf-sec-<tag>` behind a veth pair;
    the far end holds METADATA_ADDR (cloud metadata) and 10.203.X.2 (a private LAN service), each
    with a TCP listener. The host routes both to the veth. One set per machine at a time (a file
    lock), since 169.254.169.254 can have one route only."""

    def __init__(self, tag: str | None = None):
        self.tag = (tag or uuid.uuid4().hex)[:6]
        self.ns = f"cf-sec-{self.tag}"
        self.host_if = f"cfsh{self.tag}"
        self.peer_if = f"cfsp{self.tag}"
        self.lan = self._free_lan()
        self.host_addr = str(self.lan.network_address + 1)
        self.lan_addr = str(self.lan.network_address + 2)
        self._lock = None
        self._listener: subprocess.Popen | None = None

    @property
    def targets(self) -> list[tuple[str, str, int]]:
        return [
            ("cloud metadata stand-in", METADATA_ADDR, METADATA_PORT),
            ("private LAN service stand-in", self.lan_addr, LAN_PORT),
        ]

    @staticmethod
    def _free_lan() -> ipaddress.IPv4Network:
        routes = json.loads(sh("ip", "-j", "-4", "route", "show").stdout or "[]")
        used = []
        for row in routes:
            dst = row.get("dst", "")
            if dst and dst != "default":
                with contextlib.suppress(ValueError):
                    used.append(ipaddress.ip_network(dst if "/" in dst else f"{dst}/32"))
        candidates = list(LAN_POOL.subnets(new_prefix=24))
        random.shuffle(candidates)
        for net in candidates:
            if not any(net.overlaps(u) for u in used):
                return net
        raise RuntimeError("no free /24 in 10.203.0.0/16 for the stand-ins")

    def start(self) -> StandIns:
        LOCK_PATH.parent.mkdir(parents=True, exist_ok=True)
        self._lock = open(LOCK_PATH, "a")  # noqa: SIM115 - held until stop()
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            self._setup()
        except Exception:
            self.stop()
            raise
        return self

    def _setup(self) -> None:
        if sh("ip", "route", "show", f"{METADATA_ADDR}/32").stdout.strip():
            raise RuntimeError(
                f"this machine already routes {METADATA_ADDR} (a cloud host's metadata, or "
                "stand-ins left behind: `ip netns list`); refusing to take it over"
            )
        sh("ip", "netns", "add", self.ns)
        sh("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.peer_if)
        sh("ip", "link", "set", self.peer_if, "netns", self.ns)
        sh("ip", "addr", "add", f"{self.host_addr}/24", "dev", self.host_if)
        sh("ip", "link", "set", self.host_if, "up")
        inside = ["ip", "netns", "exec", self.ns]
        sh(*inside, "ip", "link", "set", "lo", "up")
        sh(*inside, "ip", "addr", "add", f"{self.lan_addr}/24", "dev", self.peer_if)
        sh(*inside, "ip", "addr", "add", f"{METADATA_ADDR}/32", "dev", self.peer_if)
        sh(*inside, "ip", "link", "set", self.peer_if, "up")
        sh(*inside, "ip", "route", "add", "default", "via", self.host_addr)
        sh("ip", "route", "add", f"{METADATA_ADDR}/32", "via", self.lan_addr, "dev", self.host_if)
        self.check_routes()
        self._listener = subprocess.Popen(
            [
                *inside,
                sys.executable,
                "-c",
                LISTENER_PY,
                f"{METADATA_ADDR}:{METADATA_PORT}",
                f"{self.lan_addr}:{LAN_PORT}",
                f"{self.lan_addr}:{LAN_ALLOWED_PORT}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _, host, port in [*self.targets, ("", self.lan_addr, LAN_ALLOWED_PORT)]:
            wait_connectable(host, port)  # from the host: the stand-ins answer

    def check_routes(self) -> None:
        """Both stand-in addresses route to our veth (never out of the machine)."""
        for _, host, _ in self.targets:
            dev = route_device(host)
            if dev != self.host_if:
                raise RuntimeError(f"{host} routes via {dev!r}, not the stand-ins' veth")

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._listener.wait(timeout=10)
            self._listener = None
        sh("ip", "link", "del", self.host_if, check=False)  # takes the peer and the route along
        sh("ip", "netns", "del", self.ns, check=False)
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None


class _Handler(socketserver.BaseRequestHandler):
    def handle(self):
        with contextlib.suppress(OSError):
            self.request.sendall(b"host service\n")


class HostListener:
    """A TCP service of the engine host on `address` (0.0.0.0: every host address)."""

    def __init__(self, address: str):
        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer((address, 0), _Handler)
        self.server.daemon_threads = True
        self.address = address
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_tenant_container(rt, *, name: str, image: str, network: str, command: list[str], labels):
    """A lightweight container of the OpenClaw image with the tenant profile (uid 1000, read-only
    root, cap-drop ALL, no-new-privileges, host.docker.internal) running `command`."""
    host_config = rt.api.create_host_config(
        read_only=True,
        tmpfs={"/tmp": "rw,nosuid,nodev,size=16m"},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        init=True,
        pids_limit=64,
        mem_limit="256m",
        extra_hosts={"host.docker.internal": "host-gateway"},
        network_mode=network,
    )
    with contextlib.suppress(Exception):
        rt.api.remove_container(name, force=True)
    created = rt.api.create_container(
        image,
        command=command,
        entrypoint=[],
        name=name,
        hostname=name,
        user="1000:1000",
        labels={TEST_LABEL: "true", **labels},
        host_config=host_config,
    )
    rt.api.start(created["Id"])
    return name


def container_ip(rt, name: str, network: str) -> str:
    nets = rt.api.inspect_container(name)["NetworkSettings"]["Networks"]
    return nets[network]["IPAddress"]


def listener_command(port: int) -> list[str]:
    js = f"require('net').createServer(s => s.end('tenant\\n')).listen({int(port)})"
    return ["node", "-e", js]


def _node(rt, container: str, script: str, *args: str, timeout: float = 30) -> dict:
    code, out, err = rt.exec(container, ["node", "-e", script, *args], timeout=timeout)
    text = out.decode(errors="replace").strip().splitlines()
    if code != 0 or not text:
        raise RuntimeError(f"node in {container} exited {code}: {err.decode(errors='replace')}")
    return json.loads(text[-1])


def probe(rt, container: str, targets, timeout_ms: int = 3000) -> dict[str, str]:
    """{"host:port": "connected" | "EHOSTUNREACH" | "ECONNREFUSED" | "timeout" | ...} for each
    (host, port), connecting from inside `container` as its user (uid 1000)."""
    pairs = [[host, int(port)] for host, port in targets]
    return _node(rt, container, PROBE_JS, json.dumps(pairs), str(timeout_ms))


def http_get(rt, container: str, url: str) -> dict:
    return _node(rt, container, HTTP_JS, url)


def resolve(rt, container: str, name: str) -> dict:
    return _node(rt, container, DNS_JS, name)


def evaluate(rules: list[str], dst: str, port: int, proto: str = "tcp") -> str:
    """What the installed chain does with a NEW connection to dst:port: "RETURN" (left to
    Docker's rules: passes) or "REJECT". Reads the rules as `iptables -S` prints them."""
    addr = ipaddress.ip_address(dst)
    for rule in rules:
        words = rule.split()
        if "--ctstate" in words:
            continue  # replies only
        opts = dict(zip(words[::2], words[1::2], strict=False))
        if "-d" in opts:
            net = ipaddress.ip_network(opts["-d"], strict=False)
            if net.version != addr.version or addr not in net:
                continue
        if "-p" in opts and opts["-p"] != proto:
            continue
        if "--dport" in opts:
            lo, _, hi = opts["--dport"].partition(":")
            if not int(lo) <= port <= int(hi or lo):
                continue
        if "--icmpv6-type" in opts:
            continue
        return opts["-j"]
    return "RETURN"


def environment_ok() -> str | None:
    """Why this machine cannot run the stand-ins (None when it can)."""
    if os.geteuid() != 0:
        return "the egress tests need root (network namespaces, iptables)"
    for tool in ("ip", "iptables"):
        if sh("sh", "-c", f"command -v {tool} || test -x /usr/sbin/{tool}", check=False).returncode:
            return f"{tool} is missing"
    return None
