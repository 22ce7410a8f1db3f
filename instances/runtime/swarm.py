"""The runtime contract on Docker Swarm: one replicated service per instance.

The Swarm adapter (docker.py is the single-engine one; both import ``docker``). It implements
``instances.runtime.contract.Runtime`` with ``base_url`` the engine of a swarm manager.
Decisions (docs/swarm.md, numbered in docs/decisions.md):

- **A service per instance, one replica, endpoint mode dnsrr** (the kernel of the lab has no
  IPVS, so a virtual IP does not work). "Created, not started" is ``replicas=0``; ``start``
  scales to 1; ``stop`` scales to 0; restart policy ``none``, as on one engine: the reconcile
  loop sees an exited task and counts the restarts itself.
- **Pinned to the volume's node.** A volume is node-local. ``ensure_volume`` lets Swarm's own
  scheduler choose the node: a one-shot placement service with a memory reservation (the
  volume label ``clawfleet.memory-mb``, else ``DEFAULT_RESERVATION_MB``) mounts the volume,
  which the chosen node's engine creates; the instance's service is created with a
  ``node.id==`` constraint on that node. Nothing of ours picks a node.
- **Hardened as far as Swarm 20.10 goes**: read-only root, tmpfs /tmp and ~/.cache (a service
  tmpfs takes only size and mode: the cache is mode 1777, not uid 1000), cap-drop ALL
  (ContainerSpec.CapabilityDrop, API 1.41), user 1000:1000, init, pids, CPU and memory limits
  (swap cannot be set per service), a memory reservation equal to the limit, stable hostname,
  capped json-file logs. no-new-privileges cannot be set per service: every node's engine must
  run with ``--no-new-privileges``, proven by a container's ``NoNewPrivs`` the first time the
  runtime talks to the node; a node without it is refused (NodeUnsafe).
- **Per-node engines.** Volume files, helpers and exec go to the engine of the node that holds
  the volume or runs the task (node label ``clawfleet.engine``, set by the project's setup),
  through a ``DockerRuntime`` per node; the manager only answers for services, tasks, networks.
- **Networks.** An overlay network cannot turn inter-container traffic off, so every service
  gets a private overlay of its own (``<service>-net``); ``ensure_network(name)`` converges the
  family network the specs name (an overlay no gateway joins) and returns the address the
  nodes reach the control plane by.
- **Reach without published service ports.** A "reach" container per instance on the manager
  (``<service>-reach``: node from the instance's image, read-only, cap-drop ALL, 64 MB) sits on
  the instance's private overlay only and forwards TCP to the service's DNS name; its one port
  is published on the manager's underlay address at ``spec.host_port``; it accepts connections
  from the control plane's address only. Tenants reach nobody else through it (it only knows
  its own service) and cannot come from the control plane's address (nodes masquerade their
  traffic; no NET_RAW to forge one).
- **Secrets never in env**: as on one engine, the config file in the volume (``write_config``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import socket
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, BinaryIO

import docker
import docker.errors
import docker.types
import requests.exceptions

from . import probes
from .contract import VolumeData
from .docker import BASE_ENV, TMPFS, DockerRuntime
from .errors import (
    ContainerNotFound,
    ContainerNotRunning,
    EngineUnavailable,
    ImageMissing,
    NetworkUnsafe,
    RuntimeErrorBase,
    VolumeNotFound,
)
from .types import (
    CACHE_DIR,
    EXEC_MAX_OUTPUT,
    EXEC_TIMEOUT,
    GATEWAY_PORT,
    HELPER_LABEL,
    HELPER_TIMEOUT,
    MANAGED_LABEL,
    SPEC_HASH_LABEL,
    STATE_DIR,
    STOP_TIMEOUT,
    STREAM_TIMEOUT,
    USER,
    VOLUME_LABEL,
    ContainerInfo,
    ContainerSpec,
)

# Node label: the URL of the node's own engine (unix socket, tcp+TLS, ssh).
ENGINE_LABEL = "clawfleet.engine"
# Volume label read by ensure_volume: the memory the placement reserves (the plan's memory).
MEMORY_LABEL = "clawfleet.memory-mb"
DEFAULT_RESERVATION_MB = 2048
# Service labels.
HOST_PORT_LABEL = "clawfleet.host-port"
LAST_EXIT_LABEL = "clawfleet.last-exit"  # a scaled-down task is deleted by Swarm: its exit code
NODE_LABEL = "clawfleet.node"
# Network labels: an overlay of ours, and the one service it belongs to.
ISOLATION_LABEL = "clawfleet.isolation"
PRIVATE_FOR_LABEL = "clawfleet.private-for"
REACH_LABEL = "clawfleet.reach"
# A tiny image every node holds (images/openclaw/build.sh makes it): placement and the
# no-new-privileges proof run it.
PROBE_IMAGE = "clawfleet/debian-base:bookworm"
REACH_PORT = 8080
TASK_TIMEOUT = 120  # a task that is not running this long after start: inspect reports it
MIB = 1024 * 1024

ACTIVE_TASK_STATES = {
    "new",
    "allocated",
    "pending",
    "assigned",
    "accepted",
    "preparing",
    "ready",
    "starting",
    "running",
}
# A TCP forwarder in the instance's own image (node is there): one target, one allowed source.
FORWARDER = (
    "const net=require('net');const allow=new Set(process.env.ALLOW.split(','));"
    "net.createServer(c=>{const ip=(c.remoteAddress||'').replace(/^::ffff:/,'');"
    "if(!allow.has(ip)){c.destroy();return}"
    "const u=net.connect(+process.env.TARGET_PORT,process.env.TARGET);"
    "c.pipe(u);u.pipe(c);u.on('error',()=>c.destroy());c.on('error',()=>u.destroy())})"
    f".listen({REACH_PORT},'0.0.0.0')"
)


class NodeUnsafe(RuntimeErrorBase):
    """A swarm node whose engine runs without ``--no-new-privileges`` (Swarm 20.10 cannot set
    it per service), or that says nowhere where its engine answers."""


def _errors(method):
    """Connection failures to any engine of the swarm are EngineUnavailable, other refusals
    RuntimeErrorBase (the per-node DockerRuntime already maps its own)."""

    @functools.wraps(method)
    def wrapper(self: SwarmRuntime, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except RuntimeErrorBase:
            raise
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise EngineUnavailable(self.base_url, type(exc).__name__ + ": " + str(exc)) from exc
        except docker.errors.DockerException as exc:
            if isinstance(exc, docker.errors.APIError):
                raise RuntimeErrorBase(f"{self.base_url}: {exc}") from exc
            raise EngineUnavailable(self.base_url, str(exc)) from exc

    return wrapper


def require_no_new_privileges(engine: DockerRuntime, node: str) -> None:
    """Prove that the engine forces no-new-privileges on every container: a container started
    without asking for it must still report ``NoNewPrivs: 1`` (``docker info`` does not say)."""
    engine.ensure_image(PROBE_IMAGE)
    api = engine.api
    host_config = api.create_host_config(network_mode="none", cap_drop=["ALL"], mem_limit="32m")
    cid = api.create_container(
        PROBE_IMAGE,
        command=["grep", "NoNewPrivs", "/proc/self/status"],
        user=USER,
        labels={HELPER_LABEL: "true"},
        network_disabled=True,
        host_config=host_config,
    )["Id"]
    try:
        api.start(cid)
        api.wait(cid, timeout=60)
        out = api.logs(cid, stdout=True, stderr=True).decode(errors="replace")
    finally:
        with contextlib.suppress(docker.errors.APIError):
            api.remove_container(cid, force=True)
    if out.split() != ["NoNewPrivs:", "1"]:
        raise NodeUnsafe(
            f"swarm node {node} ({engine.base_url}) runs containers without no-new-privileges "
            f"({out.strip() or 'no answer'}): start its dockerd with --no-new-privileges "
            "(Swarm 20.10 cannot set it per service); refusing to place gateways there"
        )


def _task_time(task: dict) -> str:
    return task.get("CreatedAt") or ""


def _latest(tasks: Iterable[dict]) -> dict | None:
    tasks = list(tasks)
    return max(tasks, key=_task_time) if tasks else None


def _task_running(task: dict | None) -> bool:
    """Swarm keeps a task with a healthcheck in "starting" until it is healthy: its container
    runs already (a PID), which is what "running" means to the contract."""
    if task is None:
        return False
    status = task.get("Status") or {}
    state = status.get("State")
    pid = (status.get("ContainerStatus") or {}).get("PID") or 0
    return state == "running" or (state == "starting" and pid > 0)


def _task_address(task: dict | None) -> str | None:
    for att in (task or {}).get("NetworksAttachments") or []:
        for addr in att.get("Addresses") or []:
            return addr.split("/")[0]
    return None


def _replicas(svc: dict) -> int:
    return int(((svc["Spec"].get("Mode") or {}).get("Replicated") or {}).get("Replicas") or 0)


def private_network(service: str) -> str:
    return f"{service}-net"


def reach_name(service: str) -> str:
    return f"{service}-reach"


class SwarmRuntime:
    """One Docker Swarm, reached through a manager's engine (``base_url``)."""

    def __init__(self, base_url: str, *, timeout: int = 60):
        self.base_url = base_url
        self.timeout = timeout
        self.manager = DockerRuntime(base_url, timeout=timeout)
        self._engines: dict[str, DockerRuntime] = {}
        self._volume_nodes: dict[str, str] = {}
        self._control_address: str | None = None
        self._manager_address: str | None = None

    def __repr__(self) -> str:
        return f"SwarmRuntime({self.base_url!r})"

    @property
    def api(self) -> docker.APIClient:
        return self.manager.api

    def close(self) -> None:
        self.manager.close()
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()

    # -- nodes ---------------------------------------------------------------------------------

    def manager_address(self) -> str:
        """The manager's underlay address: the reach ports are published there."""
        if self._manager_address is None:
            addr = (self.api.info().get("Swarm") or {}).get("NodeAddr")
            if not addr:
                raise RuntimeErrorBase(f"{self.base_url} is not a swarm manager")
            self._manager_address = addr
        return self._manager_address

    def control_address(self) -> str:
        """The address the nodes see this control plane by (its source address towards the
        manager): what the reach containers accept and what gateways reach the host by."""
        if self._control_address is None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.connect((self.manager_address(), 9))
                self._control_address = sock.getsockname()[0]
        return self._control_address

    def nodes(self) -> list[dict]:
        """The swarm's nodes (id, hostname, address, engine URL, memory, state, availability)."""
        rows = []
        for node in self.api.nodes():
            desc = node.get("Description") or {}
            rows.append(
                {
                    "id": node["ID"],
                    "hostname": desc.get("Hostname") or "",
                    "address": (node.get("Status") or {}).get("Addr") or "",
                    "engine_url": (node["Spec"].get("Labels") or {}).get(ENGINE_LABEL, ""),
                    "memory_bytes": (desc.get("Resources") or {}).get("MemoryBytes") or 0,
                    "state": (node.get("Status") or {}).get("State") or "unknown",
                    "availability": node["Spec"].get("Availability") or "active",
                    "role": node["Spec"].get("Role") or "",
                }
            )
        return rows

    def _ready_nodes(self) -> list[dict]:
        return [n for n in self.nodes() if n["state"] == "ready"]

    def engine(self, node_id: str) -> DockerRuntime:
        """The engine of one node, checked once per process for no-new-privileges."""
        engine = self._engines.get(node_id)
        if engine is not None:
            return engine
        node = self.api.inspect_node(node_id)
        hostname = (node.get("Description") or {}).get("Hostname") or node_id
        url = (node["Spec"].get("Labels") or {}).get(ENGINE_LABEL)
        if not url:
            raise NodeUnsafe(
                f"swarm node {hostname} has no {ENGINE_LABEL} label: docker node update "
                f"--label-add {ENGINE_LABEL}=<its engine URL> {node_id} (scripts/swarm-lab.sh "
                "does it for the lab)"
            )
        engine = DockerRuntime(url, timeout=self.timeout)
        require_no_new_privileges(engine, hostname)
        self._engines[node_id] = engine
        return engine

    # -- engine and images ---------------------------------------------------------------------

    @_errors
    def ping(self) -> bool:
        if not self.api.ping():
            return False
        self.manager_address()
        return True

    @_errors
    def image_exists(self, ref: str) -> bool:
        """On every ready node: Swarm may place a new volume on any of them."""
        return all(self.engine(n["id"]).image_exists(ref) for n in self._ready_nodes())

    @_errors
    def ensure_image(self, ref: str) -> None:
        for node in self._ready_nodes():
            if not self.engine(node["id"]).image_exists(ref):
                raise ImageMissing(ref, f"{node['hostname']} ({node['engine_url']})")

    # -- networks ------------------------------------------------------------------------------

    @_errors
    def ensure_network(self, name: str) -> str:
        """The family overlay the specs name: no gateway joins it (each gets a private overlay),
        so nobody talks on it. One that is not ours (another driver, or an overlay without our
        label, which others may share) is replaced when nothing is attached, else NetworkUnsafe."""
        net = self._network(name)
        if net is not None and (net.get("Labels") or {}).get(ISOLATION_LABEL) != "per-service":
            attached = sorted(
                (c.get("Name") or cid[:12])
                for cid, c in (net.get("Containers") or {}).items()
                if not cid.startswith("lb-")  # the overlay's own load-balancer endpoint
            )
            if attached:
                raise NetworkUnsafe(
                    f"network {name} on {self.base_url} is not a Clawfleet family overlay and "
                    f"{len(attached)} container(s) use it ({', '.join(attached[:5])}): stop "
                    f"them, remove it (docker network rm {name}) and run again"
                )
            with contextlib.suppress(docker.errors.NotFound):
                self.api.remove_network(net.get("Id") or name)
            # The manager forgets a network asynchronously: a name made again meanwhile would
            # be two networks, and a lookup by name may answer with the old one.
            deadline = time.monotonic() + 30
            while self._network(name) is not None and time.monotonic() < deadline:
                time.sleep(0.2)
            net = None
        if net is None:
            self._create_overlay(name, {ISOLATION_LABEL: "per-service"}, attachable=False)
        return self.control_address()

    def _network(self, name: str) -> dict | None:
        try:
            return self.api.inspect_network(name)
        except docker.errors.NotFound:
            return None

    def _create_overlay(self, name: str, labels: dict, *, attachable: bool) -> None:
        try:
            self.api.create_network(
                name,
                driver="overlay",
                attachable=attachable,
                labels={MANAGED_LABEL: "true", **labels},
                check_duplicate=True,
            )
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # made concurrently
                raise

    @_errors
    def network_gateway(self, name: str) -> str:
        if self._network(name) is None:
            raise RuntimeErrorBase(f"network {name} not found on {self.base_url}")
        return self.control_address()

    @_errors
    def remove_network(self, name: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self.api.remove_network(name)

    # -- volumes -------------------------------------------------------------------------------

    def volume_node(self, name: str) -> str | None:
        """The node holding the volume (cached; checked on that node), None when none does."""
        node_id = self._volume_nodes.get(name)
        if node_id is not None and self.engine(node_id).volume_exists(name):
            return node_id
        self._volume_nodes.pop(name, None)
        holders = [n["id"] for n in self._ready_nodes() if self.engine(n["id"]).volume_exists(name)]
        if len(holders) > 1:
            raise RuntimeErrorBase(f"volume {name} exists on several nodes: {holders}")
        if holders:
            self._volume_nodes[name] = holders[0]
            return holders[0]
        return None

    def _volume_engine(self, name: str) -> DockerRuntime:
        node_id = self.volume_node(name)
        if node_id is None:
            raise VolumeNotFound(name)
        return self.engine(node_id)

    @_errors
    def volume_exists(self, name: str) -> bool:
        return self.volume_node(name) is not None

    @_errors
    def ensure_volume(self, name: str, labels: dict[str, str] | None = None) -> bool:
        """Swarm's scheduler picks the node: a one-shot service reserving the instance's
        memory mounts the volume, and the engine of the node it lands on creates it."""
        if self.volume_node(name) is not None:
            return False
        labels = {**(labels or {}), MANAGED_LABEL: "true"}
        memory_mb = int(labels.pop(MEMORY_LABEL, DEFAULT_RESERVATION_MB))
        place = "cf-place-" + hashlib.sha256(name.encode()).hexdigest()[:16]
        container = docker.types.ContainerSpec(
            PROBE_IMAGE,
            command=["true"],
            user=USER,
            read_only=True,
            cap_drop=["ALL"],
            mounts=[docker.types.Mount(STATE_DIR, name, type="volume", labels=labels)],
        )
        template = docker.types.TaskTemplate(
            container,
            resources=docker.types.Resources(mem_reservation=memory_mb * MIB),
            restart_policy=docker.types.RestartPolicy(condition="none"),
        )
        try:
            self.api.create_service(
                template,
                name=place,
                labels={HELPER_LABEL: "true", VOLUME_LABEL: name},
                mode=docker.types.ServiceMode("replicated", replicas=1),
            )
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # another process is placing it: wait for that one
                raise
        try:
            task = self._wait_tasks(
                place,
                lambda t: (
                    bool(t and t.get("NodeID"))
                    and (t.get("Status") or {}).get("State") in ("complete", "failed", "rejected")
                ),
                timeout=60,
            )
        finally:
            with contextlib.suppress(docker.errors.NotFound):
                self.api.remove_service(place)
        if task is not None and task.get("NodeID"):  # its container holds the volume till gone
            self._wait_containers_gone(task["NodeID"], place)
        if task is None or not task.get("NodeID"):
            raise RuntimeErrorBase(
                f"swarm could not place volume {name}: no node has {memory_mb} MB unreserved "
                "(or none is ready)"
            )
        node_id = task["NodeID"]
        if not self.engine(node_id).volume_exists(name):
            err = (task.get("Status") or {}).get("Err") or (task.get("Status") or {}).get("State")
            raise RuntimeErrorBase(f"placing volume {name} on node {node_id} failed: {err}")
        self._volume_nodes[name] = node_id
        return True

    @_errors
    def remove_volume(self, name: str) -> None:
        node_id = self.volume_node(name)
        if node_id is not None:
            self.engine(node_id).remove_volume(name)
            self._volume_nodes.pop(name, None)

    # -- services ------------------------------------------------------------------------------

    def _service(self, name: str) -> dict | None:
        try:
            svc = self.api.inspect_service(name)
        except docker.errors.NotFound:
            return None
        # Docker matches a name prefix of an ID too: only the service of that name is ours.
        return svc if svc["Spec"].get("Name") == name else None

    def _tasks(self, svc_id: str) -> list[dict]:
        return [t for t in self.api.tasks(filters={"service": svc_id}) if t["ServiceID"] == svc_id]

    def _wait_tasks(self, name: str, done, *, timeout: float, since: str = "") -> dict | None:
        """Poll the service's newest task (created after ``since``) until ``done(task)``."""
        deadline = time.monotonic() + timeout
        while True:
            svc = self._service(name)
            task = None
            if svc is not None:
                task = _latest(t for t in self._tasks(svc["ID"]) if _task_time(t) > since)
            if done(task) or time.monotonic() >= deadline:
                return task
            time.sleep(0.3)

    def _info(self, svc: dict, tasks: list[dict], *, summary: bool) -> ContainerInfo:
        labels = dict(svc["Spec"].get("Labels") or {})
        task = _latest(tasks)
        running = _task_running(task)
        status, exit_code, started, finished = "created", None, None, None
        if task is not None:
            state = (task.get("Status") or {}).get("State")
            cstatus = (task.get("Status") or {}).get("ContainerStatus") or {}
            if running:
                status, started = "running", (task.get("Status") or {}).get("Timestamp")
            elif state in ACTIVE_TASK_STATES:
                status = "created"
            else:
                status, exit_code = "exited", cstatus.get("ExitCode")
                finished = (task.get("Status") or {}).get("Timestamp")
        elif LAST_EXIT_LABEL in labels:  # stopped by us: Swarm deleted the task
            status, exit_code = "exited", int(labels[LAST_EXIT_LABEL])
        host_port = int(labels[HOST_PORT_LABEL]) if labels.get(HOST_PORT_LABEL) else None
        health = None
        if running:  # Swarm holds a task with a healthcheck in "starting" until it is healthy
            checked = (svc["Spec"]["TaskTemplate"]["ContainerSpec"].get("Healthcheck") or {}).get(
                "Test"
            ) != ["NONE"]
            state = (task.get("Status") or {}).get("State")
            health = "starting" if state == "starting" else ("healthy" if checked else None)
        return ContainerInfo(
            name=svc["Spec"]["Name"],
            id=svc["ID"],
            status=status,
            running=running,
            exit_code=exit_code,
            oom_killed=None,
            restart_count=None if summary else max(0, len(tasks) - 1),
            started_at=None if summary else started,
            finished_at=None if summary else finished,
            health=health,
            labels=labels,
            image=svc["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].split("@")[0],
            host_port=host_port if (running or not summary) else None,
            spec_hash=labels.get(SPEC_HASH_LABEL),
            address=_task_address(task) if running else None,
        )

    @_errors
    def inspect(self, name: str) -> ContainerInfo | None:
        svc = self._service(name)
        if svc is None:
            return None
        return self._info(svc, self._tasks(svc["ID"]), summary=False)

    @_errors
    def list_managed(self) -> list[ContainerInfo]:
        """Two manager calls for the whole swarm: the services, then every task."""
        services = self.api.services(filters={"label": f"{MANAGED_LABEL}=true"})
        by_service: dict[str, list[dict]] = {s["ID"]: [] for s in services}
        for task in self.api.tasks():
            if task.get("ServiceID") in by_service:
                by_service[task["ServiceID"]].append(task)
        return [self._info(s, by_service[s["ID"]], summary=True) for s in services]

    @_errors
    def ensure_container(self, spec: ContainerSpec) -> ContainerInfo:
        """The service (replicas 0), its private overlay and its reach container."""
        spec.validate()
        existing = self.inspect(spec.name)
        if existing is not None:
            return existing
        node_id = self.volume_node(spec.volume_name)
        if node_id is None:
            raise VolumeNotFound(spec.volume_name, "call ensure_volume() first")
        engine = self.engine(node_id)
        engine.ensure_image(spec.image)
        self.manager.ensure_image(spec.image)  # the reach container runs the same image
        network = private_network(spec.name)
        self._create_overlay(network, {PRIVATE_FOR_LABEL: spec.name}, attachable=True)
        memory = int(spec.memory_mb) * MIB
        container = docker.types.ContainerSpec(
            spec.image,
            args=list(spec.command) if spec.command is not None else None,
            hostname=spec.hostname,
            env={**BASE_ENV, **spec.env},
            user=USER,
            labels=dict(spec.labels),
            mounts=[
                docker.types.Mount(STATE_DIR, spec.volume_name, type="volume"),
                docker.types.Mount("/tmp", None, type="tmpfs", tmpfs_size=256 * MIB),
                docker.types.Mount(
                    CACHE_DIR, None, type="tmpfs", tmpfs_size=128 * MIB, tmpfs_mode=0o1777
                ),
            ],
            read_only=True,
            init=True,
            cap_drop=["ALL"],
            stop_signal="SIGTERM",
            stop_grace_period=STOP_TIMEOUT * 1_000_000_000,
            hosts={"host.docker.internal": self.control_address()},
            # A trivial command is no gateway: the image's /healthz check would fail it.
            healthcheck=docker.types.Healthcheck(test=["NONE"]) if spec.command else None,
        )
        resources = docker.types.Resources(
            cpu_limit=int(round(float(spec.cpus) * 1e9)), mem_limit=memory, mem_reservation=memory
        )
        resources["Limits"]["Pids"] = int(spec.pids_limit)
        template = docker.types.TaskTemplate(
            container,
            resources=resources,
            restart_policy=docker.types.RestartPolicy(condition="none"),
            placement=docker.types.Placement(constraints=[f"node.id=={node_id}"]),
            log_driver=docker.types.DriverConfig("json-file", {"max-size": "10m", "max-file": "3"}),
            networks=[network],
        )
        labels = {
            **spec.labels,
            MANAGED_LABEL: "true",
            VOLUME_LABEL: spec.volume_name,
            SPEC_HASH_LABEL: spec.spec_hash(),
            HOST_PORT_LABEL: str(int(spec.host_port)),
            NODE_LABEL: node_id,
        }
        try:
            self.api.create_service(
                template,
                name=spec.name,
                labels=labels,
                mode=docker.types.ServiceMode("replicated", replicas=0),
                endpoint_spec=docker.types.EndpointSpec(mode="dnsrr"),
            )
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # created concurrently under that name
                raise
        self._ensure_reach(spec, network)
        info = self.inspect(spec.name)
        if info is None:  # pragma: no cover - removed between create and inspect
            raise ContainerNotFound(spec.name)
        return info

    def _ensure_reach(self, spec: ContainerSpec, network: str) -> None:
        api, name = self.api, reach_name(spec.name)
        try:
            api.inspect_container(name)
        except docker.errors.NotFound:
            host_config = api.create_host_config(
                port_bindings={REACH_PORT: (self.manager_address(), int(spec.host_port))},
                network_mode=network,
                read_only=True,
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                mem_limit="64m",
                pids_limit=64,
                restart_policy={"Name": "unless-stopped"},
                log_config={"Type": "json-file", "Config": {"max-size": "1m", "max-file": "1"}},
            )
            try:
                api.create_container(
                    spec.image,
                    name=name,
                    entrypoint=["node", "-e", FORWARDER],
                    command=[],
                    user=USER,
                    environment={
                        "TARGET": spec.name,
                        "TARGET_PORT": str(GATEWAY_PORT),
                        "ALLOW": self.control_address(),
                    },
                    labels={REACH_LABEL: spec.name},
                    ports=[REACH_PORT],
                    healthcheck={"Test": ["NONE"]},  # the image's checks a gateway, not this
                    host_config=host_config,
                )
            except docker.errors.APIError as exc:
                if exc.status_code != 409:
                    raise
        api.start(name)

    def _update(self, name: str, *, replicas: int | None = None, force: bool = False, labels=None):
        """One service update from its current spec (retried when another update won)."""
        for attempt in range(5):
            svc = self._service(name)
            if svc is None:
                raise ContainerNotFound(name)
            spec = svc["Spec"]
            mode = spec.get("Mode")
            if replicas is not None:
                mode = {"Replicated": {"Replicas": replicas}}
            template = dict(spec["TaskTemplate"])
            if force:
                template["ForceUpdate"] = int(template.get("ForceUpdate") or 0) + 1
            try:
                self.api.update_service(
                    svc["ID"],
                    svc["Version"]["Index"],
                    task_template=template,
                    name=spec["Name"],
                    labels=spec.get("Labels") if labels is None else labels,
                    mode=mode,
                    endpoint_spec=spec.get("EndpointSpec"),
                )
                return
            except docker.errors.APIError as exc:
                if "out of sequence" not in str(exc) or attempt == 4:
                    raise

    def _wait_running(self, name: str, since: str) -> None:
        def settled(task):
            if task is None:
                return False
            state = (task.get("Status") or {}).get("State")
            return _task_running(task) or state not in ACTIVE_TASK_STATES

        self._wait_tasks(name, settled, timeout=TASK_TIMEOUT, since=since)

    @_errors
    def start(self, name: str) -> None:
        svc = self._service(name)
        if svc is None:
            raise ContainerNotFound(name)
        task = _latest(self._tasks(svc["ID"]))
        since = _task_time(task) if task else ""
        if _replicas(svc) == 0:
            labels = dict(svc["Spec"].get("Labels") or {})
            labels.pop(LAST_EXIT_LABEL, None)
            # With restart condition none Swarm does not refill a slot it once emptied: the
            # forced update makes the new task.
            self._update(name, replicas=1, labels=labels, force=True)
        elif task is not None and (task.get("Status") or {}).get("State") in ACTIVE_TASK_STATES:
            since = ""  # it is running or on its way: wait for that task
        else:
            self._update(name, force=True)  # exited: a new task
        self._wait_running(name, since)

    @_errors
    def stop(self, name: str, timeout: int = STOP_TIMEOUT) -> None:
        """Scale to 0. The grace period before SIGKILL is the service's (``STOP_TIMEOUT``, set
        at creation: changing it would replace the task)."""
        svc = self._service(name)
        if svc is None or _replicas(svc) == 0:
            return
        task = _latest(self._tasks(svc["ID"]))
        self._update(name, replicas=0)
        if task is None:
            return
        last = self._wait_for_exit(name, task["ID"], timeout + 30)
        code = ((last or {}).get("Status") or {}).get("ContainerStatus", {}).get("ExitCode")
        svc = self._service(name)
        if svc is not None and code is not None:
            labels = {**(svc["Spec"].get("Labels") or {}), LAST_EXIT_LABEL: str(code)}
            self._update(name, labels=labels)

    def _wait_for_exit(self, name: str, task_id: str, timeout: float) -> dict | None:
        """The task once its container stopped (before Swarm deletes a scaled-down task)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                task = self.api.inspect_task(task_id)
            except docker.errors.NotFound:
                return last
            last = task
            if (task.get("Status") or {}).get("State") not in ACTIVE_TASK_STATES:
                return task
            time.sleep(0.2)
        return last

    @_errors
    def restart(self, name: str, timeout: int = STOP_TIMEOUT) -> None:
        svc = self._service(name)
        if svc is None:
            raise ContainerNotFound(name)
        if _replicas(svc) == 0:
            self.start(name)
            return
        task = _latest(self._tasks(svc["ID"]))
        self._update(name, force=True)
        self._wait_running(name, _task_time(task) if task else "")

    @_errors
    def remove(self, name: str, force: bool = True) -> None:
        """The service, its reach container and its private overlay; never the volume."""
        svc = self._service(name)
        if svc is not None:
            if not force and _task_running(_latest(self._tasks(svc["ID"]))):
                raise RuntimeErrorBase(f"service {name} is running: stop it first, or force")
            node_id = (svc["Spec"].get("Labels") or {}).get(NODE_LABEL)
            with contextlib.suppress(docker.errors.NotFound):
                self.api.remove_service(svc["ID"])
            if node_id:
                self._wait_containers_gone(node_id, name)
        with contextlib.suppress(docker.errors.NotFound):
            self.api.remove_container(reach_name(name), force=True)
        deadline = time.monotonic() + 30
        while self._network(private_network(name)) is not None:
            try:
                self.api.remove_network(private_network(name))
            except docker.errors.NotFound:
                break
            except docker.errors.APIError:  # a task's endpoint still attached: a moment
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.5)

    def _wait_containers_gone(self, node_id: str, service: str, timeout: float = 60) -> None:
        """A removed service's containers go asynchronously; its volume is busy until then."""
        with contextlib.suppress(RuntimeErrorBase):
            api = self.engine(node_id).api
            deadline = time.monotonic() + timeout
            filters = {"label": f"com.docker.swarm.service.name={service}"}
            while api.containers(all=True, filters=filters) and time.monotonic() < deadline:
                time.sleep(0.3)

    # -- commands and logs ---------------------------------------------------------------------

    def _task_container(self, name: str, *, need_running: bool = True) -> tuple[DockerRuntime, str]:
        """(the engine of the node running the task, its container id)."""
        svc = self._service(name)
        if svc is None:
            raise ContainerNotFound(name)
        task = _latest(self._tasks(svc["ID"]))
        cid = (((task or {}).get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
        if need_running and not _task_running(task):
            raise ContainerNotRunning(name)
        if not cid or not task.get("NodeID"):
            raise ContainerNotRunning(name)
        return self.engine(task["NodeID"]), cid

    @_errors
    def exec(
        self,
        name: str,
        cmd: list[str],
        timeout: float = EXEC_TIMEOUT,
        user: str = USER,
        env: dict[str, str] | None = None,
        max_output: int = EXEC_MAX_OUTPUT,
    ) -> tuple[int, bytes, bytes]:
        engine, cid = self._task_container(name)
        return engine.exec(cid, cmd, timeout=timeout, user=user, env=env, max_output=max_output)

    @_errors
    def exec_stream(
        self,
        name: str,
        cmd: list[str],
        timeout: float = STREAM_TIMEOUT,
        user: str = USER,
        max_bytes: int | None = None,
    ) -> Iterator[bytes]:
        engine, cid = self._task_container(name)
        return engine.exec_stream(cid, cmd, timeout=timeout, user=user, max_bytes=max_bytes)

    @_errors
    def logs_tail(self, name: str, lines: int = 200) -> str:
        try:
            engine, cid = self._task_container(name, need_running=False)
        except ContainerNotRunning:
            return ""
        try:
            return engine.logs_tail(cid, lines)
        except ContainerNotFound:
            return ""

    # -- volume files: on the engine of the node holding the volume ----------------------------

    @_errors
    def run_in_volume(
        self,
        volume_name: str,
        image: str,
        cmd: list[str],
        *,
        user: str = USER,
        env: dict[str, str] | None = None,
        timeout: float = HELPER_TIMEOUT,
        files: Mapping[str, bytes | BinaryIO] | None = None,
    ) -> tuple[int, bytes, bytes]:
        return self._volume_engine(volume_name).run_in_volume(
            volume_name, image, cmd, user=user, env=env, timeout=timeout, files=files
        )

    @_errors
    def read_file(self, volume_name: str, image: str, path: str) -> bytes | None:
        return self._volume_engine(volume_name).read_file(volume_name, image, path)

    @_errors
    def write_file(
        self, volume_name: str, image: str, path: str, data: bytes, *, mode: int = 0o600
    ) -> None:
        self._volume_engine(volume_name).write_file(volume_name, image, path, data, mode=mode)

    def write_config(
        self,
        volume_name: str,
        image: str,
        config: dict,
        owned_paths: list[str] | tuple[str, ...],
        *,
        validate: bool = True,
        secrets: Iterable[str] = (),
    ) -> bool:
        from ..openclaw import files as openclaw_files

        return openclaw_files.write_config(
            self, volume_name, image, config, owned_paths, validate=validate, secrets=secrets
        )

    @_errors
    def export_volume(self, volume_name: str, image: str) -> Iterator[bytes]:
        return self._volume_engine(volume_name).export_volume(volume_name, image)

    @_errors
    def import_volume(
        self,
        volume_name: str,
        image: str,
        data: VolumeData,
        *,
        clear: bool = True,
        owner: str | None = USER,
    ) -> None:
        """Into the node holding the volume; an absent one is placed by Swarm first."""
        self.ensure_volume(volume_name, {})
        self._volume_engine(volume_name).import_volume(
            volume_name, image, data, clear=clear, owner=owner
        )

    @_errors
    def copy_volume(self, src: str, dst: str, image: str) -> None:
        """On one node when both are there; across nodes through this process."""
        source = self.volume_node(src)
        if source is None:
            raise VolumeNotFound(src)
        target = self.volume_node(dst)
        if target == source:
            self.engine(source).copy_volume(src, dst, image)
            return
        self.import_volume(dst, image, self.export_volume(src, image), clear=True, owner=None)

    # -- health: through the instance's reach port on the manager -------------------------------

    def probe(self, host_port: int, timeout: float = 2.0) -> dict[str, Any]:
        return probes.probe(host_port, timeout, address=self.manager_address())

    def wait_ready(
        self,
        host_port: int,
        timeout: float = 120,
        *,
        name: str | None = None,
        interval: float = 0.5,
    ) -> float:
        return probes.wait_ready(
            host_port,
            timeout,
            interval=interval,
            check=(lambda: self.inspect(name)) if name else None,
            logs=(lambda: self.logs_tail(name, 40)) if name else None,
            address=self.manager_address(),
        )


__all__ = ["NodeUnsafe", "SwarmRuntime", "require_no_new_privileges", "TMPFS"]
