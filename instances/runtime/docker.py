"""Container runtime for OpenClaw gateways on one Docker engine.

THE ONLY module of the project that imports ``docker``. Django-free: callers pass every value in.
It implements ``instances.runtime.contract.Runtime`` (what each method promises, what converging
means for it). OpenClaw-specific scripts (config merge and validation, JSON5, backup restore) live
in ``instances.openclaw``, which composes the generic primitives here (a command in a helper with
the volume, read/write a file of the volume, export/import a volume, exec).

Decisions (details and measurements: docs/openclaw-runtime.md):

- **Restart policy "no".** Docker never restarts a gateway by itself. The control plane's reconcile
  loop sees an exited container (``inspect``/``list_managed``: ``exit_code``, ``oom_killed``,
  ``finished_at``), decides whether to start it again, and counts restarts itself, so it can
  detect a crash loop (a broken image, a bad config, the OOM killer) and stop retrying, alert, or
  roll an upgrade back. ``unless-stopped`` would hide all of that behind Docker's own
  exponential back-off and make ``restart_count`` the only (resettable) signal.
- **Hardened profile** (all measured to work with OpenClaw 2026.9.x): read-only root fs, tmpfs
  ``/tmp`` and ``/home/node/.cache`` (Node's compile cache), ``cap_drop=ALL`` with nothing added
  back, ``no-new-privileges``, user 1000:1000, ``init=True`` (docker-init as PID 1 reaps the
  gateway's children and forwards SIGTERM), pids/cpu/memory limits (swap = memory), stable
  hostname (a new hostname after a crash meets OpenClaw's 5-minute owner lease and crash-loops),
  port 18789 published on 127.0.0.1 only, capped json-file logs (the gateway logs reply text).
- **Secrets never in the environment**: ``docker inspect`` shows env to anyone with engine access.
  The gateway token and the provider API key live in ``openclaw.json`` in the state volume
  (uid 1000, mode 600), written by ``write_config``. ``ContainerSpec.env`` refuses names that look
  like secrets.
- **State**: one named volume per instance mounted at ``/home/node/.openclaw`` (OpenClaw's state
  dir: config, SQLite session store, workspace). ``TMPDIR`` and ``XDG_CACHE_HOME`` point inside it
  (OpenClaw stages SQLite snapshots and backup verification there; a small tmpfs is not enough).
- **Helpers**: volume file operations (read/write a file, export/import/copy) run in
  short-lived helper containers of the instance's own image with the volume mounted, no network,
  labelled ``clawfleet.helper=true`` and removed afterwards (never ``clawfleet.managed``).
- **Networking**: every instance joins the network named in its spec; ``ensure_network`` makes a
  user-defined bridge with inter-container communication disabled, so gateways cannot reach each
  other while still reaching the host (its gateway IP) and the outside world. An existing network
  of that name with ICC on is replaced when no running container is attached (stopped ones
  re-attach by name when started), refused with NetworkUnsafe otherwise. ``host.docker.internal``
  maps to the host too.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import posixpath
import re
import socket
import tarfile
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, BinaryIO

import docker
import docker.errors
import docker.utils.socket
import requests.exceptions

from . import probes
from .contract import VolumeData
from .errors import (
    ContainerNotFound,
    ContainerNotRunning,
    EngineUnavailable,
    HelperFailed,
    ImageMissing,
    NetworkUnsafe,
    OutputTooLarge,
    RuntimeErrorBase,
    VolumeNotFound,
)
from .types import (
    CACHE_DIR,
    CONFIG_FILE,
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
    state_path,
)

# Runtime environment of every gateway container. Non-secret by construction.
BASE_ENV: dict[str, str] = {
    "HOME": "/home/node",
    "OPENCLAW_STATE_DIR": STATE_DIR,
    "OPENCLAW_CONFIG_PATH": f"{STATE_DIR}/{CONFIG_FILE}",
    "OPENCLAW_DISABLE_BONJOUR": "1",
    "OPENCLAW_NO_RESPAWN": "1",
    "OPENCLAW_NO_AUTO_UPDATE": "1",
    # Without a writable cache dir OpenClaw exits 78 ("shared state database is unreadable").
    "XDG_CACHE_HOME": f"{STATE_DIR}/cache",
    # `openclaw backup create --verify` needs real disk for its temp files, not a small tmpfs.
    "TMPDIR": f"{STATE_DIR}/tmp",
    # Node's compile cache (~28 MB) stays out of the state dir and out of backups.
    "NODE_COMPILE_CACHE": f"{CACHE_DIR}/node-compile-cache",
}
TMPFS: dict[str, str] = {
    "/tmp": "rw,nosuid,nodev,size=256m",
    CACHE_DIR: "rw,nosuid,nodev,size=128m,uid=1000,gid=1000,mode=0700",
}
LOG_CONFIG = {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}
ICC_OPTION = "com.docker.network.bridge.enable_icc"
# Set in the environment of every command we run in a container, to find it again and end it.
EXEC_MARKER = "CLAWFLEET_EXEC"
SCRATCH_DIR = "/tmp"  # helper files outside the volume go here (the helper's own layer)

DEFAULT_API_TIMEOUT = 60


# --- helpers --------------------------------------------------------------------------------


def _engine_errors(method):
    """Turn connection-level failures into EngineUnavailable."""

    @functools.wraps(method)
    def wrapper(self: DockerRuntime, *args, **kwargs):
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


def _has_registry_host(ref: str) -> bool:
    first = ref.split("/", 1)[0] if "/" in ref else ""
    return bool(first) and ("." in first or ":" in first or first == "localhost")


def _nano_cpus(cpus: float) -> int:
    return int(round(float(cpus) * 1_000_000_000))


def _parse_summary_status(status: str) -> tuple[int | None, str | None]:
    """('Exited (137) 2 minutes ago' | 'Up 3 minutes (healthy)') -> (exit_code, health)."""
    exit_code = None
    m = re.match(r"Exited \((-?\d+)\)", status or "")
    if m:
        exit_code = int(m.group(1))
    health = None
    m = re.search(r"\((healthy|unhealthy|health: starting)\)", status or "")
    if m:
        health = "starting" if m.group(1) == "health: starting" else m.group(1)
    return exit_code, health


STDERR = 2


@contextlib.contextmanager
def _exec_socket(api, exec_id: str):
    """The frames (stream id, bytes) of a started exec, read from its raw socket, which is shut
    down on the way out: a reader that stops early must not leave the engine writing into a
    connection nobody reads (that stalls further execs of the container)."""
    sock = api.exec_start(exec_id, socket=True)
    try:
        yield docker.utils.socket.frames_iter(sock, tty=False)
    finally:
        raw = getattr(sock, "_sock", sock)
        with contextlib.suppress(OSError):
            raw.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()


def _network_isolated(net: dict) -> bool:
    """A bridge on which containers cannot reach each other."""
    options = net.get("Options") or {}
    return net.get("Driver") == "bridge" and str(options.get(ICC_OPTION, "")).lower() == "false"


def _address_of(raw: dict) -> str | None:
    """The first IPv4 address of a container (inspect or summary data): the edge dials it."""
    networks = (raw.get("NetworkSettings") or {}).get("Networks") or {}
    for net in networks.values():
        if (net or {}).get("IPAddress"):
            return net["IPAddress"]
    return None


def _first_file_from_tar(chunks: Iterable[bytes]) -> bytes | None:
    raw = b"".join(chunks)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        for member in tar.getmembers():
            if member.isfile():
                fh = tar.extractfile(member)
                return fh.read() if fh else None
    return None


def _size_of(content: bytes | BinaryIO) -> int:
    if isinstance(content, bytes | bytearray):
        return len(content)
    content.seek(0, os.SEEK_END)
    size = content.tell()
    content.seek(0)
    return size


def _files_tar(base: str, files: dict[str, bytes | BinaryIO], *, with_parents: bool) -> BinaryIO:
    """A tar (spooled to disk when large) of ``files`` relative to ``base``: uid 1000, mode 600;
    with ``with_parents``, directory entries (uid 1000, mode 700) for the directories between
    ``base`` and each file."""
    import tempfile

    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115 - returned
    now = int(time.time())
    with tarfile.open(fileobj=spool, mode="w") as tar:
        dirs: set[str] = set()
        for path, content in files.items():
            rel = posixpath.relpath(path, base)
            if with_parents:
                parent = posixpath.dirname(rel)
                chain = []
                while parent and parent not in dirs:
                    chain.append(parent)
                    parent = posixpath.dirname(parent)
                for d in reversed(chain):
                    info = tarfile.TarInfo(d)
                    info.type = tarfile.DIRTYPE
                    info.mode, info.uid, info.gid, info.mtime = 0o700, 1000, 1000, now
                    tar.addfile(info)
                    dirs.add(d)
            info = tarfile.TarInfo(rel)
            info.size = _size_of(content)
            info.mode, info.uid, info.gid, info.mtime = 0o600, 1000, 1000, now
            info.uname = info.gname = "node"
            body = io.BytesIO(content) if isinstance(content, bytes | bytearray) else content
            tar.addfile(info, body)
    spool.seek(0)
    return spool


def _split_files(
    files: Mapping[str, bytes | BinaryIO] | None,
) -> tuple[dict[str, bytes | BinaryIO], dict[str, bytes | BinaryIO]]:
    """({volume path: content}, {scratch path: content}); anything else is a ValueError."""
    in_volume: dict[str, bytes | BinaryIO] = {}
    scratch: dict[str, bytes | BinaryIO] = {}
    for path, content in (files or {}).items():
        norm = posixpath.normpath(path) if path.startswith("/") else None
        if norm and (norm + "/").startswith(SCRATCH_DIR + "/") and norm != SCRATCH_DIR:
            scratch[norm] = content
        else:
            in_volume[state_path(path)] = content
    return in_volume, scratch


# --- the runtime ----------------------------------------------------------------------------


class DockerRuntime:
    """One Docker engine. ``base_url``: ``unix:///var/run/docker.sock``, ``tcp://host:2376``
    (pass ``tls=docker.tls.TLSConfig(...)`` or ``tls=True``), ``ssh://user@host``."""

    def __init__(
        self,
        base_url: str = "unix:///var/run/docker.sock",
        *,
        timeout: int = DEFAULT_API_TIMEOUT,
        tls: Any = False,
        use_ssh_client: bool = False,
        allow_pull: bool = False,
    ):
        self.base_url = base_url
        self.timeout = timeout
        self.tls = tls
        self.use_ssh_client = use_ssh_client
        self.allow_pull = allow_pull
        self._client: docker.DockerClient | None = None

    def __repr__(self) -> str:
        return f"DockerRuntime({self.base_url!r})"

    # -- clients (Docker-specific: tests and cleanup scripts may use them, the control plane not)
    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            try:
                self._client = docker.DockerClient(
                    base_url=self.base_url,
                    timeout=self.timeout,
                    tls=self.tls,
                    use_ssh_client=self.use_ssh_client,
                    version="auto",
                )
            except docker.errors.DockerException as exc:
                raise EngineUnavailable(self.base_url, str(exc)) from exc
        return self._client

    @property
    def api(self) -> docker.APIClient:
        return self.client.api

    def _long_api(self, seconds: float) -> docker.APIClient:
        """A low-level client whose HTTP timeout fits a long call (exec, helper wait)."""
        return docker.APIClient(
            base_url=self.base_url,
            timeout=int(seconds) + 15,
            tls=self.tls,
            use_ssh_client=self.use_ssh_client,
            version=self.api.api_version,
        )

    def close(self) -> None:
        """Release the engine connection (``instances.runtime.reset_runtimes`` calls it)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- engine and images
    @_engine_errors
    def ping(self) -> bool:
        return bool(self.api.ping())

    @_engine_errors
    def image_exists(self, ref: str) -> bool:
        try:
            self.api.inspect_image(ref)
            return True
        except docker.errors.ImageNotFound:
            return False

    @_engine_errors
    def ensure_image(self, ref: str) -> None:
        if self.image_exists(ref):
            return
        if self.allow_pull and _has_registry_host(ref):
            repo, _, tag = ref.rpartition(":")
            try:
                self.api.pull(repo, tag=tag or "latest")
            except docker.errors.APIError as exc:
                raise ImageMissing(ref, self.base_url) from exc
            if self.image_exists(ref):
                return
        raise ImageMissing(ref, self.base_url)

    # -- networks
    @_engine_errors
    def ensure_network(self, name: str) -> str:
        """User-defined bridge, ICC disabled, labelled managed. Returns its gateway IP.

        An existing network of that name that lets containers reach each other (ICC on, or not
        a bridge) is removed and made again when no running container is attached to it
        (stopped containers re-attach by name when they start); otherwise NetworkUnsafe."""
        try:
            net = self.api.inspect_network(name)
        except docker.errors.NotFound:
            net = None
        if net is not None and not _network_isolated(net):
            attached = sorted(
                (c.get("Name") or cid[:12]) for cid, c in (net.get("Containers") or {}).items()
            )
            if attached:
                raise NetworkUnsafe(
                    f"network {name} on {self.base_url} lets containers reach each other "
                    f"({ICC_OPTION} is not false) and {len(attached)} running container(s) "
                    f"use it ({', '.join(attached[:5])}): stop them, remove the network "
                    f"(docker network rm {name}) and run again; it is then made with ICC off"
                )
            with contextlib.suppress(docker.errors.NotFound):
                self.api.remove_network(net.get("Id") or name)
            net = None
        if net is None:
            try:
                self.api.create_network(
                    name,
                    driver="bridge",
                    options={ICC_OPTION: "false"},
                    labels={MANAGED_LABEL: "true"},
                    check_duplicate=True,
                )
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # created concurrently: fine
                    raise
        return self.network_gateway(name)

    @_engine_errors
    def network_gateway(self, name: str) -> str:
        try:
            net = self.api.inspect_network(name)
        except docker.errors.NotFound:
            raise RuntimeErrorBase(f"network {name} not found on {self.base_url}")
        for cfg in (net.get("IPAM") or {}).get("Config") or []:
            if cfg.get("Gateway"):
                return cfg["Gateway"].split("/")[0]
        raise RuntimeErrorBase(f"network {name} has no IPv4 gateway")

    @_engine_errors
    def remove_network(self, name: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self.api.remove_network(name)

    # -- volumes
    @_engine_errors
    def volume_exists(self, name: str) -> bool:
        try:
            self.api.inspect_volume(name)
            return True
        except docker.errors.NotFound:
            return False

    @_engine_errors
    def ensure_volume(self, name: str, labels: dict[str, str] | None = None) -> bool:
        """Create the volume if absent. Returns True when it was created now."""
        if self.volume_exists(name):
            return False
        self.api.create_volume(
            name, driver="local", labels={**(labels or {}), MANAGED_LABEL: "true"}
        )
        return True

    @_engine_errors
    def remove_volume(self, name: str) -> None:
        """Remove the volume (absent is fine). Raises RuntimeErrorBase if a container uses it."""
        with contextlib.suppress(docker.errors.NotFound):
            self.api.remove_volume(name)

    # -- containers
    @_engine_errors
    def inspect(self, name: str) -> ContainerInfo | None:
        try:
            raw = self.api.inspect_container(name)
        except docker.errors.NotFound:
            return None
        state = raw.get("State") or {}
        config = raw.get("Config") or {}
        labels = dict(config.get("Labels") or {})
        ports = ((raw.get("HostConfig") or {}).get("PortBindings") or {}).get(
            f"{GATEWAY_PORT}/tcp"
        ) or []
        host_port = int(ports[0]["HostPort"]) if ports and ports[0].get("HostPort") else None
        status = state.get("Status") or "unknown"
        return ContainerInfo(
            name=(raw.get("Name") or name).lstrip("/"),
            id=raw["Id"],
            status=status,
            running=bool(state.get("Running")),
            exit_code=state.get("ExitCode") if status in ("exited", "dead") else None,
            oom_killed=bool(state.get("OOMKilled")),
            restart_count=raw.get("RestartCount"),
            started_at=state.get("StartedAt") or None,
            finished_at=None
            if (state.get("FinishedAt") or "").startswith("0001-")
            else state.get("FinishedAt"),
            health=(state.get("Health") or {}).get("Status"),
            labels=labels,
            image=config.get("Image") or "",
            host_port=host_port,
            spec_hash=labels.get(SPEC_HASH_LABEL),
            address=_address_of(raw),
        )

    @_engine_errors
    def list_managed(self) -> list[ContainerInfo]:
        """Every container labelled clawfleet.managed=true, with ONE API call (summary data:
        exit_code and health are parsed from the status text; oom_killed/times are None)."""
        rows = self.api.containers(all=True, filters={"label": f"{MANAGED_LABEL}=true"})
        result = []
        for row in rows:
            exit_code, health = _parse_summary_status(row.get("Status") or "")
            labels = dict(row.get("Labels") or {})
            host_port = None
            for port in row.get("Ports") or []:
                if port.get("PrivatePort") == GATEWAY_PORT and port.get("PublicPort"):
                    host_port = int(port["PublicPort"])
            state = row.get("State") or "unknown"
            result.append(
                ContainerInfo(
                    name=(row.get("Names") or ["/?"])[0].lstrip("/"),
                    id=row["Id"],
                    status=state,
                    running=state == "running",
                    exit_code=exit_code,
                    oom_killed=None,
                    restart_count=None,
                    started_at=None,
                    finished_at=None,
                    health=health,
                    labels=labels,
                    image=row.get("Image") or "",
                    host_port=host_port,
                    spec_hash=labels.get(SPEC_HASH_LABEL),
                    address=_address_of(row),
                )
            )
        return result

    def _host_config(self, spec: ContainerSpec) -> dict:
        memory = f"{int(spec.memory_mb)}m"
        return self.api.create_host_config(
            binds={spec.volume_name: {"bind": STATE_DIR, "mode": "rw"}},
            port_bindings={f"{GATEWAY_PORT}/tcp": ("127.0.0.1", int(spec.host_port))},
            read_only=True,
            tmpfs=dict(TMPFS),
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            init=True,
            pids_limit=int(spec.pids_limit),
            nano_cpus=_nano_cpus(spec.cpus),
            mem_limit=memory,
            memswap_limit=memory,
            restart_policy={"Name": "no"},
            extra_hosts={"host.docker.internal": "host-gateway"},
            network_mode=spec.network or "bridge",
            log_config=LOG_CONFIG,
        )

    @_engine_errors
    def ensure_container(self, spec: ContainerSpec) -> ContainerInfo:
        """Create the container if absent (not started). If one exists under that name, leave it
        as it is, even with another image or spec: compare ``info.matches(spec)`` and decide."""
        spec.validate()
        existing = self.inspect(spec.name)
        if existing is not None:
            return existing
        self.ensure_image(spec.image)
        if not self.volume_exists(spec.volume_name):
            raise VolumeNotFound(spec.volume_name, "call ensure_volume() first")
        labels = {
            **spec.labels,
            MANAGED_LABEL: "true",
            VOLUME_LABEL: spec.volume_name,
            SPEC_HASH_LABEL: spec.spec_hash(),
        }
        env = {**BASE_ENV, **spec.env}
        try:
            self.api.create_container(
                image=spec.image,
                name=spec.name,
                hostname=spec.hostname,
                user=USER,
                command=list(spec.command) if spec.command is not None else None,
                environment=env,
                labels=labels,
                ports=[GATEWAY_PORT],
                host_config=self._host_config(spec),
                stop_signal="SIGTERM",
            )
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: created concurrently under that name
                raise
        info = self.inspect(spec.name)
        if info is None:  # pragma: no cover - removed between create and inspect
            raise ContainerNotFound(spec.name)
        return info

    @_engine_errors
    def start(self, name: str) -> None:
        try:
            self.api.start(name)
        except docker.errors.NotFound:
            raise ContainerNotFound(name)

    @_engine_errors
    def stop(self, name: str, timeout: int = STOP_TIMEOUT) -> None:
        """Stop (SIGTERM, then SIGKILL after ``timeout`` s). Absent or stopped: nothing to do."""
        try:
            self.api.stop(name, timeout=timeout)
        except docker.errors.NotFound:
            return

    @_engine_errors
    def restart(self, name: str, timeout: int = STOP_TIMEOUT) -> None:
        try:
            self.api.restart(name, timeout=timeout)
        except docker.errors.NotFound:
            raise ContainerNotFound(name)

    @_engine_errors
    def remove(self, name: str, force: bool = True) -> None:
        """Remove the container (never its named volume). Absent is fine."""
        try:
            self.api.remove_container(name, force=force, v=False)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            if exc.status_code == 409 and "already in progress" in str(exc):
                return
            raise

    # -- commands and logs
    def _exec_create(self, api, name: str, wrapped: list[str], **kwargs) -> str:
        try:
            return api.exec_create(name, wrapped, **kwargs)["Id"]
        except docker.errors.NotFound:
            raise ContainerNotFound(name)
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # not running
                raise ContainerNotRunning(name) from exc
            raise

    def _end_exec(self, name: str, marker: str) -> None:
        """Stop a command whose output we stopped reading (Engine API 1.41 has no exec kill):
        every process of the container carrying our marker in its environment gets SIGTERM
        (coreutils `timeout` passes it on and SIGKILLs after 5 s). Best effort."""
        script = (
            'for p in /proc/[0-9]*; do grep -qsz "^$0$" "$p/environ" && '
            'kill -TERM "${p#/proc/}" 2>/dev/null; done; true'
        )
        with contextlib.suppress(Exception):
            exec_id = self._exec_create(
                self.api, name, ["sh", "-c", script, f"{EXEC_MARKER}={marker}"], user=USER
            )
            self.api.exec_start(exec_id)

    @_engine_errors
    def exec(
        self,
        name: str,
        cmd: list[str],
        timeout: float = EXEC_TIMEOUT,
        user: str = USER,
        env: dict[str, str] | None = None,
        max_output: int = EXEC_MAX_OUTPUT,
    ) -> tuple[int, bytes, bytes]:
        """Run ``cmd`` in the running container. Returns (exit_code, stdout, stderr).

        The command is wrapped in coreutils ``timeout``: exit code 124 means it timed out.
        Output is read as it comes and at most ``max_output`` bytes of it (OutputTooLarge
        past that: the connection is closed, the command dies on its next write or at its
        timeout).
        """
        wrapped = ["timeout", "-k", "5", str(int(max(1, timeout))), *cmd]
        marker = os.urandom(8).hex()
        environment = {**(env or {}), EXEC_MARKER: marker}
        api = self._long_api(timeout + 10)
        out, err, total, capped = [], [], 0, False
        try:
            exec_id = self._exec_create(
                api, name, wrapped, stdout=True, stderr=True, user=user, environment=environment
            )
            with _exec_socket(api, exec_id) as frames:
                for stream_id, data in frames:
                    total += len(data)
                    if total > max_output:
                        capped = True
                        raise OutputTooLarge(name, max_output)
                    (err if stream_id == STDERR else out).append(data)
            code = api.exec_inspect(exec_id).get("ExitCode")
        finally:
            api.close()
            if capped:
                self._end_exec(name, marker)
        return (code if code is not None else -1), b"".join(out), b"".join(err)

    @_engine_errors
    def exec_stream(
        self,
        name: str,
        cmd: list[str],
        timeout: float = STREAM_TIMEOUT,
        user: str = USER,
        max_bytes: int | None = None,
    ) -> Iterator[bytes]:
        """Run ``cmd`` in the running container and yield its stdout as it comes (stderr is
        dropped). For large outputs, e.g. ``["cat", "/tmp/backup.tar.gz"]``: Docker's archive API
        cannot read the container's tmpfs /tmp, exec can. A non-zero exit raises
        RuntimeErrorBase after the last chunk."""
        wrapped = ["timeout", "-k", "5", str(int(max(1, timeout))), *cmd]
        marker = os.urandom(8).hex()
        exec_id = self._exec_create(
            self.api,
            name,
            wrapped,
            stdout=True,
            stderr=False,
            user=user,
            environment={EXEC_MARKER: marker},
        )
        return self._exec_stream_iter(name, exec_id, timeout, max_bytes, marker)

    def _exec_stream_iter(
        self, name: str, exec_id: str, timeout: float, max_bytes: int | None, marker: str
    ) -> Iterator[bytes]:
        api = self._long_api(timeout + 10)
        total = 0
        done = False
        try:
            with _exec_socket(api, exec_id) as frames:
                for stream_id, data in frames:
                    if stream_id == STDERR or not data:
                        continue
                    total += len(data)
                    if max_bytes is not None and total > max_bytes:
                        raise OutputTooLarge(name, max_bytes)
                    yield data
            done = True
            code = api.exec_inspect(exec_id).get("ExitCode")
            if code:
                raise RuntimeErrorBase(f"streamed command exited {code}")
        finally:
            api.close()
            if not done:  # capped, or the reader stopped early: end the command too
                self._end_exec(name, marker)

    @_engine_errors
    def logs_tail(self, name: str, lines: int = 200) -> str:
        try:
            raw = self.api.logs(name, stdout=True, stderr=True, tail=int(lines), timestamps=False)
        except docker.errors.NotFound:
            raise ContainerNotFound(name)
        return raw.decode("utf-8", errors="replace")

    # -- helper containers (volume file operations)
    @contextlib.contextmanager
    def _helper(
        self,
        volume_name: str,
        image: str,
        cmd: list[str] | None = None,
        *,
        user: str = USER,
        env: dict[str, str] | None = None,
        caps: list[str] | None = None,
        read_only_volume: bool = False,
        writable_rootfs: bool = False,
    ) -> Iterator[str]:
        """A created (not started) helper container with the volume at STATE_DIR; removed on
        exit. No network, no capabilities unless ``caps``, read-only root fs unless
        ``writable_rootfs`` (then /tmp is in the container layer, so ``put_archive`` can drop
        files there: Docker's archive API cannot see tmpfs mounts)."""
        self.ensure_image(image)
        if not self.volume_exists(volume_name):
            raise VolumeNotFound(volume_name)
        host_config = self.api.create_host_config(
            binds={volume_name: {"bind": STATE_DIR, "mode": "ro" if read_only_volume else "rw"}},
            network_mode="none",
            read_only=not writable_rootfs,
            tmpfs={CACHE_DIR: TMPFS[CACHE_DIR]}
            if writable_rootfs
            else {"/tmp": "rw,nosuid,nodev,size=64m", CACHE_DIR: TMPFS[CACHE_DIR]},
            cap_drop=["ALL"],
            cap_add=caps or None,
            security_opt=["no-new-privileges"],
            mem_limit="1g",
            pids_limit=256,
            log_config={"Type": "json-file", "Config": {"max-size": "1m", "max-file": "1"}},
        )
        created = self.api.create_container(
            image=image,
            entrypoint=[cmd[0]] if cmd else ["true"],
            command=cmd[1:] if cmd else [],
            user=user,
            environment={**BASE_ENV, **(env or {})},
            labels={HELPER_LABEL: "true", VOLUME_LABEL: volume_name},
            network_disabled=True,
            host_config=host_config,
        )
        cid = created["Id"]
        try:
            yield cid
        finally:
            with contextlib.suppress(docker.errors.APIError, requests.exceptions.RequestException):
                self.api.remove_container(cid, force=True, v=True)

    def _run_helper(self, cid: str, timeout: float = HELPER_TIMEOUT) -> tuple[int, bytes, bytes]:
        api = self._long_api(timeout)
        try:
            api.start(cid)
            try:
                result = api.wait(cid, timeout=timeout)
            except requests.exceptions.ReadTimeout as exc:
                raise HelperFailed(f"helper container timed out after {timeout}s") from exc
            out = api.logs(cid, stdout=True, stderr=False)
            err = api.logs(cid, stdout=False, stderr=True)
        finally:
            api.close()
        return int(result.get("StatusCode", -1)), out, err

    def _put_files(self, cid: str, base: str, files: dict, *, with_parents: bool) -> None:
        if not files:
            return
        payload = _files_tar(base, files, with_parents=with_parents)
        api = self._long_api(3600)
        try:
            if not api.put_archive(cid, base, payload):
                raise HelperFailed(f"could not copy files into the helper at {base}")
        finally:
            api.close()
            payload.close()

    def _in_volume(
        self,
        volume_name: str,
        image: str,
        cmd: list[str],
        *,
        user: str = USER,
        env: dict[str, str] | None = None,
        timeout: float = HELPER_TIMEOUT,
        files: Mapping[str, bytes | BinaryIO] | None = None,
        caps: list[str] | None = None,
    ) -> tuple[int, bytes, bytes]:
        in_volume, scratch = _split_files(files)
        # coreutils timeout: 124 when out of time, 127 for a missing program (as exec).
        wrapped = ["timeout", "-k", "5", str(int(max(1, timeout))), *cmd]
        helper = self._helper(
            volume_name,
            image,
            wrapped,
            user=user,
            env=env,
            caps=caps,
            writable_rootfs=bool(scratch),
        )
        with helper as cid:
            self._put_files(cid, STATE_DIR, in_volume, with_parents=False)
            self._put_files(cid, SCRATCH_DIR, scratch, with_parents=True)
            return self._run_helper(cid, timeout + 10)

    @_engine_errors
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
        """Run a one-shot command in a helper container with the volume at STATE_DIR (no network).
        For offline OpenClaw commands on a stopped instance (``openclaw sessions --json``,
        ``openclaw sessions cleanup``, ``openclaw doctor``...). ``files`` under /tmp are put in
        the helper's own (then writable) root fs, the others in the volume."""
        return self._in_volume(
            volume_name, image, cmd, user=user, env=env, timeout=timeout, files=files
        )

    @_engine_errors
    def read_file(self, volume_name: str, image: str, path: str) -> bytes | None:
        """Content of a file in the volume (path relative to the volume root), None if absent."""
        target = state_path(path)
        with self._helper(volume_name, image, read_only_volume=True) as cid:
            try:
                chunks, _stat = self.api.get_archive(cid, target)
            except docker.errors.NotFound:
                return None
            return _first_file_from_tar(chunks)

    @_engine_errors
    def write_file(
        self, volume_name: str, image: str, path: str, data: bytes, *, mode: int = 0o600
    ) -> None:
        """Stage ``data`` beside ``path`` (uid 1000), chmod it and rename it over ``path``."""
        target = state_path(path)
        staged = posixpath.join(
            posixpath.dirname(target), f".{posixpath.basename(target)}.clawfleet-new"
        )
        script = 'chmod "$1" "$2" && mv -f "$2" "$3"'
        code, _out, err = self._in_volume(
            volume_name,
            image,
            ["sh", "-c", script, "sh", f"{mode:o}", staged, target],
            files={staged: bytes(data)},
        )
        if code != 0:
            raise HelperFailed(f"writing {path} in {volume_name} failed: {err[-300:]!r}")

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
        """Converge ``openclaw.json``: OpenClaw's part (merge, JSON5, validation) is
        ``instances.openclaw.files.write_config``, which composes the primitives above."""
        from ..openclaw import files as openclaw_files

        return openclaw_files.write_config(
            self, volume_name, image, config, owned_paths, validate=validate, secrets=secrets
        )

    @_engine_errors
    def export_volume(self, volume_name: str, image: str) -> Iterator[bytes]:
        """Tar stream of the volume's content (entries relative to the volume root, owners kept).
        A cold copy: stop the gateway first for a consistent SQLite state (or use
        ``openclaw backup create`` inside the running container)."""
        if not self.volume_exists(volume_name):
            raise VolumeNotFound(volume_name)
        return self._export_iter(volume_name, image)

    def _export_iter(self, volume_name: str, image: str) -> Iterator[bytes]:
        with self._helper(volume_name, image, read_only_volume=True) as cid:
            api = self._long_api(3600)
            try:
                chunks, _stat = api.get_archive(cid, f"{STATE_DIR}/.", chunk_size=1024 * 1024)
                yield from chunks
            finally:
                api.close()

    @_engine_errors
    def import_volume(
        self,
        volume_name: str,
        image: str,
        data: VolumeData,
        *,
        clear: bool = True,
        owner: str | None = USER,
    ) -> None:
        """Restore a tar (as made by ``export_volume``) into the volume (created if absent).
        ``clear``: empty the volume first (a restore replaces the content). ``owner``: chown
        everything afterwards (None keeps the owners recorded in the tar)."""
        self.ensure_volume(volume_name, {})
        caps = ["CHOWN", "DAC_OVERRIDE", "FOWNER"]
        if clear:
            code, _out, err = self._in_volume(
                volume_name,
                image,
                ["find", STATE_DIR, "-mindepth", "1", "-delete"],
                user="0:0",
                caps=caps,
                timeout=600,
            )
            if code != 0:
                raise HelperFailed(f"clearing {volume_name} failed: {err[-300:]!r}")
        with self._helper(volume_name, image) as cid:
            api = self._long_api(3600)
            try:
                ok = api.put_archive(cid, STATE_DIR, data)
            finally:
                api.close()
            if not ok:
                raise HelperFailed(f"import into {volume_name} failed")
        if owner:
            code, _out, err = self._in_volume(
                volume_name,
                image,
                ["chown", "-R", owner, STATE_DIR],
                user="0:0",
                caps=caps,
                timeout=600,
            )
            if code != 0:
                raise HelperFailed(f"chown in {volume_name} failed: {err[-300:]!r}")

    @_engine_errors
    def copy_volume(self, src: str, dst: str, image: str) -> None:
        """Replace ``dst``'s content with a copy of ``src`` (cold: stop users of ``src`` first)."""
        self.import_volume(dst, image, self.export_volume(src, image), clear=True, owner=None)

    # -- health (HTTP on the published loopback port, no Docker call)
    def probe(self, host_port: int, timeout: float = 2.0) -> dict[str, Any]:
        return probes.probe(host_port, timeout)

    def wait_ready(
        self,
        host_port: int,
        timeout: float = 120,
        *,
        name: str | None = None,
        interval: float = 0.5,
    ) -> float:
        """Poll http://127.0.0.1:PORT/readyz until 200. Returns the seconds waited.

        With ``name``, also watch the container and fail at once if it exits (a crash loop or a
        broken image should not cost the whole timeout). Raises NotReady."""
        return probes.wait_ready(
            host_port,
            timeout,
            interval=interval,
            check=(lambda: self.inspect(name)) if name else None,
            logs=(lambda: self.logs_tail(name, 40)) if name else None,
        )
