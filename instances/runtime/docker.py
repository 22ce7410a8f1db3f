"""Container runtime for OpenClaw gateways on one Docker engine.

THE ONLY module of the project that imports ``docker``. Django-free: callers pass every value in.
Every method converges: calling it twice is harmless (absent things are created once, removing
something absent is fine, starting a running container is fine).

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
- **Helpers**: volume file operations (read/write the config, export/import/copy) run in
  short-lived helper containers of the instance's own image with the volume mounted, no network,
  labelled ``clawfleet.helper=true`` and removed afterwards (never ``clawfleet.managed``).
- **Networking**: every instance joins the network named in its spec; ``ensure_network`` makes a
  user-defined bridge with inter-container communication disabled, so gateways cannot reach each
  other while still reaching the host (its gateway IP) and the outside world.
  ``host.docker.internal`` maps to the host too.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import re
import shlex
import socket
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO

import docker
import docker.errors
import requests.exceptions

from ..openclaw.config import merge_owned

GATEWAY_PORT = 18789
STATE_DIR = "/home/node/.openclaw"
CONFIG_FILE = "openclaw.json"
CACHE_DIR = "/home/node/.cache"
USER = "1000:1000"
MANAGED_LABEL = "clawfleet.managed"
HELPER_LABEL = "clawfleet.helper"
SPEC_HASH_LABEL = "clawfleet.spec-hash"
VOLUME_LABEL = "clawfleet.volume"

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
SECRET_ENV_RE = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|PRIVATE|CREDENTIAL)", re.I)

DEFAULT_API_TIMEOUT = 60
HELPER_TIMEOUT = 120


# --- errors ---------------------------------------------------------------------------------


class RuntimeErrorBase(Exception):
    """Base class of every error this module raises."""


class EngineUnavailable(RuntimeErrorBase):
    def __init__(self, base_url: str, detail: str = ""):
        self.base_url = base_url
        hint = (
            "run scripts/ensure-docker.sh (local engine)"
            if base_url.startswith("unix://")
            else "check that the engine is running and reachable (address, TLS certificates, SSH)"
        )
        msg = f"Docker engine {base_url} is unavailable: {hint}"
        if detail:
            msg += f" [{detail[:300]}]"
        super().__init__(msg)


class ImageMissing(RuntimeErrorBase):
    def __init__(self, ref: str, engine: str = ""):
        self.ref = ref
        version = ref.rsplit(":", 1)[1] if ":" in ref.rsplit("/", 1)[-1] else "VERSION"
        where = f" on engine {engine}" if engine else ""
        super().__init__(
            f"image {ref} is missing{where}: run `images/openclaw/build.sh {version}` on that "
            f"engine's host, or set FLEET_OPENCLAW_IMAGE to an image that exists"
        )


class ContainerNotFound(RuntimeErrorBase):
    def __init__(self, name: str):
        self.name = name
        super().__init__(f"container {name} not found")


class ContainerNotRunning(RuntimeErrorBase):
    def __init__(self, name: str):
        self.name = name
        super().__init__(f"container {name} is not running")


class ConfigInvalid(RuntimeErrorBase):
    """``openclaw config validate`` rejected the config we were about to write."""


class HelperFailed(RuntimeErrorBase):
    """A helper container (volume file operation) exited non-zero."""


class NotReady(RuntimeErrorBase):
    """``wait_ready`` gave up: timeout, or the container exited meanwhile."""

    def __init__(self, message: str, info: ContainerInfo | None = None, logs: str = ""):
        self.info = info
        self.logs = logs
        super().__init__(message)


# --- data -----------------------------------------------------------------------------------


@dataclass
class ContainerSpec:
    name: str
    hostname: str
    image: str
    volume_name: str
    host_port: int
    memory_mb: int = 2048
    cpus: float = 1.0
    pids_limit: int = 512
    labels: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    network: str | None = None

    def validate(self) -> None:
        if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}", self.name):
            raise ValueError(f"invalid container name {self.name!r}")
        if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9-]{0,62}", self.hostname):
            raise ValueError(f"invalid hostname {self.hostname!r}")
        if not 1 <= int(self.host_port) <= 65535:
            raise ValueError(f"invalid host_port {self.host_port!r}")
        if self.memory_mb < 256 or self.cpus <= 0 or self.pids_limit < 64:
            raise ValueError("memory_mb >= 256, cpus > 0 and pids_limit >= 64 are required")
        bad = [k for k in self.env if SECRET_ENV_RE.search(k)]
        if bad:
            raise ValueError(
                f"secrets must not go in container env (docker inspect shows it): {bad}; "
                "put them in openclaw.json with write_config()"
            )

    def spec_hash(self) -> str:
        """Stable hash of everything that shapes the container (stored as a label)."""
        data = asdict(self)
        data["labels"] = dict(sorted(self.labels.items()))
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@dataclass
class ContainerInfo:
    name: str
    id: str
    status: str  # created | running | paused | restarting | removing | exited | dead
    running: bool
    exit_code: int | None
    oom_killed: bool | None
    restart_count: int | None
    started_at: str | None
    finished_at: str | None
    health: str | None  # starting | healthy | unhealthy | None (no healthcheck / unknown)
    labels: dict[str, str]
    image: str
    host_port: int | None = None
    spec_hash: str | None = None

    def matches(self, spec: ContainerSpec) -> bool:
        return self.image == spec.image and self.spec_hash == spec.spec_hash()


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


def _tar_single(name: str, data: bytes, mode: int = 0o600, uid: int = 1000, gid: int = 1000):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = mode
        info.uid, info.gid = uid, gid
        info.uname = info.gname = "node"
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _first_file_from_tar(chunks: Iterable[bytes]) -> bytes | None:
    raw = b"".join(chunks)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        for member in tar.getmembers():
            if member.isfile():
                fh = tar.extractfile(member)
                return fh.read() if fh else None
    return None


def _state_path(path: str) -> str:
    """A path inside the state volume: relative paths are relative to the volume root."""
    path = path.strip()
    if not path.startswith("/"):
        path = f"{STATE_DIR}/{path}"
    norm = "/".join(p for p in path.split("/") if p not in ("", "."))
    if ".." in norm.split("/") or not ("/" + norm).startswith(STATE_DIR):
        raise ValueError(f"path {path!r} is not inside the state volume")
    return "/" + norm


def _tar_dir(name: str, uid: int = 1000, gid: int = 1000) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE
        info.mode = 0o700
        info.uid, info.gid = uid, gid
        info.mtime = int(time.time())
        tar.addfile(info)
    return buf.getvalue()


_RESTORE_DIR = "/tmp/clawfleet-restore"
# Runs as uid 1000 in a helper whose /tmp is in the container layer. The state asset's path in the
# extracted tree comes from the archive's manifest.json (assets[kind=state].archivePath).
_RESTORE_SCRIPT = (
    "set -eu; R=" + _RESTORE_DIR + "; mkdir -p $R/tmp; "
    "openclaw backup restore $R/backup.tar.gz --target $R/out --json > $R/restore.json; "
    "SRC=$(node -e \"const fs=require('fs'),p=require('path');const t=process.argv[1];"
    "const root=fs.readdirSync(t).find(d=>fs.existsSync(p.join(t,d,'manifest.json')));"
    "const m=JSON.parse(fs.readFileSync(p.join(t,root,'manifest.json'),'utf8'));"
    "const a=m.assets.find(a=>a.kind==='state');"
    "if(!a){console.error('no state asset in manifest');process.exit(4)}"
    'process.stdout.write(p.join(t,a.archivePath))" $R/out); '
    'find "$OPENCLAW_STATE_DIR" -mindepth 1 -delete; '
    'cp -a "$SRC"/. "$OPENCLAW_STATE_DIR"/; chmod 700 "$OPENCLAW_STATE_DIR"; '
    'mkdir -p "$OPENCLAW_STATE_DIR/tmp" "$OPENCLAW_STATE_DIR/cache"; '
    "cat $R/restore.json"
)

_JSON5_TO_JSON = (
    "const fs=require('fs');"
    "const tries=['/opt/openclaw/node_modules/json5','/app/node_modules/json5',"
    "'/usr/local/lib/node_modules/openclaw/node_modules/json5','json5'];"
    "let J=null;for(const t of tries){try{J=require(t);break}catch(e){}}"
    "if(!J){console.error('json5 module not found in image');process.exit(3)}"
    "const p=process.argv[1];"
    "try{process.stdout.write(JSON.stringify(J.parse(fs.readFileSync(p,'utf8'))))}"
    "catch(e){console.error('cannot parse '+p+': '+e.message.split('\\n')[0]);process.exit(2)}"
)


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

    # -- clients
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
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- engine
    @_engine_errors
    def ping(self) -> bool:
        return bool(self.api.ping())

    @_engine_errors
    def info(self) -> dict:
        raw = self.api.info()
        return {
            "mem_total": raw.get("MemTotal"),
            "ncpu": raw.get("NCPU"),
            "containers": raw.get("Containers"),
            "containers_running": raw.get("ContainersRunning"),
            "server_version": raw.get("ServerVersion"),
            "api_version": self.api.api_version,
            "name": raw.get("Name"),
            "cgroup_version": raw.get("CgroupVersion"),
        }

    # -- images
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

    @_engine_errors
    def image_labels(self, ref: str) -> dict[str, str]:
        try:
            return dict(self.api.inspect_image(ref)["Config"].get("Labels") or {})
        except docker.errors.ImageNotFound:
            raise ImageMissing(ref, self.base_url)

    # -- networks
    @_engine_errors
    def ensure_network(self, name: str) -> str:
        """User-defined bridge, ICC disabled, labelled managed. Returns its gateway IP."""
        try:
            self.api.inspect_network(name)
        except docker.errors.NotFound:
            try:
                self.api.create_network(
                    name,
                    driver="bridge",
                    options={"com.docker.network.bridge.enable_icc": "false"},
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
            raise RuntimeErrorBase(
                f"volume {spec.volume_name} does not exist: call ensure_volume() first"
            )
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
    def stop(self, name: str, timeout: int = 30) -> None:
        """Stop (SIGTERM, then SIGKILL after ``timeout`` s). Absent or stopped: nothing to do."""
        try:
            self.api.stop(name, timeout=timeout)
        except docker.errors.NotFound:
            return

    @_engine_errors
    def restart(self, name: str, timeout: int = 30) -> None:
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

    @_engine_errors
    def exec(
        self,
        name: str,
        cmd: list[str],
        timeout: float = 60,
        user: str = USER,
        env: dict[str, str] | None = None,
    ) -> tuple[int, bytes, bytes]:
        """Run ``cmd`` in the running container. Returns (exit_code, stdout, stderr).

        The command is wrapped in coreutils ``timeout``: exit code 124 means it timed out.
        """
        wrapped = ["timeout", "-k", "5", str(int(max(1, timeout))), *cmd]
        api = self._long_api(timeout + 10)
        try:
            try:
                exec_id = api.exec_create(
                    name, wrapped, stdout=True, stderr=True, user=user, environment=env or None
                )["Id"]
            except docker.errors.NotFound:
                raise ContainerNotFound(name)
            except docker.errors.APIError as exc:
                if exc.status_code == 409:  # not running
                    raise ContainerNotRunning(name) from exc
                raise
            out, err = api.exec_start(exec_id, demux=True)
            code = api.exec_inspect(exec_id).get("ExitCode")
        finally:
            api.close()
        return (code if code is not None else -1), out or b"", err or b""

    def exec_json(self, name: str, cmd: list[str], timeout: float = 60) -> Any:
        """``exec`` a command that prints JSON (e.g. ``openclaw ... --json``); parse stdout."""
        code, out, err = self.exec(name, cmd, timeout=timeout)
        if code != 0:
            detail = (err or out).decode(errors="replace")[-800:]
            raise RuntimeErrorBase(f"{shlex.join(cmd)} exited {code}: {detail}")
        return json.loads(out)

    @_engine_errors
    def exec_stream(
        self, name: str, cmd: list[str], timeout: float = 600, user: str = USER
    ) -> Iterator[bytes]:
        """Run ``cmd`` in the running container and yield its stdout as it comes (stderr is
        dropped). For large outputs, e.g. ``["cat", "/tmp/backup.tar.gz"]``: Docker's archive API
        cannot read the container's tmpfs /tmp, exec can. Check ``exec`` for the exit status of
        a prior step; a failed ``cat`` yields nothing."""
        wrapped = ["timeout", "-k", "5", str(int(max(1, timeout))), *cmd]
        try:
            exec_id = self.api.exec_create(name, wrapped, stdout=True, stderr=False, user=user)[
                "Id"
            ]
        except docker.errors.NotFound:
            raise ContainerNotFound(name)
        except docker.errors.APIError as exc:
            if exc.status_code == 409:
                raise ContainerNotRunning(name) from exc
            raise
        return self._exec_stream_iter(exec_id, timeout)

    def _exec_stream_iter(self, exec_id: str, timeout: float) -> Iterator[bytes]:
        api = self._long_api(timeout + 10)
        try:
            for chunk in api.exec_start(exec_id, stream=True, demux=True):
                out = chunk[0] if isinstance(chunk, tuple) else chunk
                if out:
                    yield out
            code = api.exec_inspect(exec_id).get("ExitCode")
            if code:
                raise RuntimeErrorBase(f"streamed command exited {code}")
        finally:
            api.close()

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
            raise RuntimeErrorBase(f"volume {volume_name} does not exist")
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
        caps: list[str] | None = None,
    ) -> tuple[int, bytes, bytes]:
        """Run a one-shot command in a helper container with the volume at STATE_DIR (no network).
        For offline OpenClaw commands on a stopped instance (``openclaw sessions --json``,
        ``openclaw sessions cleanup``, ``openclaw doctor``...)."""
        with self._helper(volume_name, image, cmd, user=user, env=env, caps=caps) as cid:
            return self._run_helper(cid, timeout)

    @_engine_errors
    def read_file(self, volume_name: str, image: str, path: str) -> bytes | None:
        """Content of a file in the volume (path relative to the volume root), None if absent."""
        target = _state_path(path)
        with self._helper(volume_name, image, read_only_volume=True) as cid:
            try:
                chunks, _stat = self.api.get_archive(cid, target)
            except docker.errors.NotFound:
                return None
            return _first_file_from_tar(chunks)

    @_engine_errors
    def parse_json5(self, volume_name: str, image: str, path: str) -> Any:
        """Parse a JSON5 file of the volume with the json5 module shipped in the OpenClaw image."""
        target = _state_path(path)
        with self._helper(
            volume_name, image, ["node", "-e", _JSON5_TO_JSON, target], read_only_volume=True
        ) as cid:
            code, out, err = self._run_helper(cid, timeout=60)
        if code != 0:
            raise RuntimeErrorBase(f"cannot parse {path}: {err.decode(errors='replace')[-300:]}")
        return json.loads(out)

    @_engine_errors
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
        """Converge ``openclaw.json`` in the volume. Returns True if the file was (re)written.

        - absent: write ``config`` as is;
        - present: parse it (JSON5: plain JSON first, else node's json5 from the image), set
          only the ``owned_paths`` from ``config`` (``openclaw_config.merge_owned``), keep the rest;
          unchanged result: no write.
        The file is staged next to the real one, checked with ``openclaw config validate``
        (``validate=True``), then renamed over it atomically (a running gateway hot-reloads it).
        It is owned by 1000:1000, mode 600. ``secrets`` are scrubbed from error messages.
        """
        raw = self.read_file(volume_name, image, CONFIG_FILE)
        if raw is None:
            final = config
        else:
            try:
                existing = json.loads(raw)
            except ValueError:
                existing = self.parse_json5(volume_name, image, CONFIG_FILE)
            final = merge_owned(existing, config, owned_paths)
            if final == existing:
                return False
        data = (json.dumps(final, indent=2, ensure_ascii=False) + "\n").encode()
        staged = f".{CONFIG_FILE}.clawfleet-new"
        script = (
            'set -e; cd "$OPENCLAW_STATE_DIR"; '
            + (
                f'OPENCLAW_CONFIG_PATH="$PWD/{staged}" openclaw config validate --json '
                f'|| {{ rc=$?; rm -f "{staged}"; exit $rc; }}; '
                if validate
                else ""
            )
            + f'chmod 600 "{staged}"; mv -f "{staged}" {CONFIG_FILE}'
        )
        with self._helper(volume_name, image, ["sh", "-c", script]) as cid:
            self.api.put_archive(cid, STATE_DIR, _tar_single(staged, data))
            code, out, err = self._run_helper(cid, timeout=120)
        if code != 0:
            text = (out + b"\n" + err).decode(errors="replace")
            for secret in secrets:
                if secret:
                    text = text.replace(secret, "***")
            raise ConfigInvalid(f"openclaw config validate rejected the config: {text[-1500:]}")
        return True

    @_engine_errors
    def restore_openclaw_backup(
        self,
        volume_name: str,
        image: str,
        archive: bytes | BinaryIO | Iterable[bytes] | str,
        *,
        timeout: float = 1800,
    ) -> dict:
        """Replace the volume's content with an ``openclaw backup create`` archive (.tar.gz).

        Stop the instance's gateway first. In a helper container (no network, uid 1000):
        ``openclaw backup restore ARCHIVE --target FRESH --json`` (verifies the archive and its
        SQLite snapshots, extracts to a fresh dir), then the ``state`` asset named by the
        archive's manifest replaces the volume's content. Returns the restore JSON. The restored
        ``openclaw.json`` is the one from the backup: call ``write_config`` afterwards (new
        token, current provider settings). ``archive``: bytes, a binary file, an iterator of
        chunks or a path on this machine."""
        self.ensure_volume(volume_name, {})
        with contextlib.ExitStack() as stack:
            payload = stack.enter_context(tempfile.TemporaryFile())
            src = archive
            if isinstance(archive, str):
                src = stack.enter_context(open(archive, "rb"))  # noqa: SIM115
            with tarfile.open(fileobj=payload, mode="w") as tar:
                info = tarfile.TarInfo("backup.tar.gz")
                info.uid = info.gid = 1000
                info.mode = 0o600
                info.mtime = int(time.time())
                if isinstance(src, bytes | bytearray):
                    info.size = len(src)
                    tar.addfile(info, io.BytesIO(src))
                else:
                    if not hasattr(src, "read"):
                        spool = stack.enter_context(tempfile.TemporaryFile())
                        for chunk in src:
                            spool.write(chunk)
                        src = spool
                    src.seek(0, io.SEEK_END)
                    info.size = src.tell()
                    src.seek(0)
                    tar.addfile(info, src)
            payload.seek(0)
            with self._helper(
                volume_name,
                image,
                ["sh", "-c", _RESTORE_SCRIPT],
                env={"TMPDIR": f"{_RESTORE_DIR}/tmp"},
                writable_rootfs=True,
            ) as cid:
                api = self._long_api(3600)
                try:
                    self.api.put_archive(cid, "/tmp", _tar_dir(_RESTORE_DIR.rsplit("/", 1)[1]))
                    if not api.put_archive(cid, _RESTORE_DIR, payload):
                        raise HelperFailed("could not copy the archive into the restore helper")
                finally:
                    api.close()
                code, out, err = self._run_helper(cid, timeout=timeout)
        if code != 0:
            raise HelperFailed(
                f"openclaw backup restore failed (exit {code}): "
                f"{(out + err).decode(errors='replace')[-1500:]}"
            )
        text = out.decode(errors="replace")
        start = text.find("{")
        return json.loads(text[start:]) if start >= 0 else {}

    @_engine_errors
    def export_volume(self, volume_name: str, image: str) -> Iterator[bytes]:
        """Tar stream of the volume's content (entries relative to the volume root, owners kept).
        A cold copy: stop the gateway first for a consistent SQLite state (or use
        ``openclaw backup create`` inside the running container)."""
        if not self.volume_exists(volume_name):
            raise RuntimeErrorBase(f"volume {volume_name} does not exist")
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
        data: bytes | BinaryIO | Iterable[bytes],
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
            code, _out, err = self.run_in_volume(
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
            code, _out, err = self.run_in_volume(
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

    # -- health (no Docker needed)
    @staticmethod
    def probe(host_port: int, timeout: float = 2.0) -> dict[str, bool]:
        return {
            "healthz": http_ok(host_port, "/healthz", timeout),
            "readyz": http_ok(host_port, "/readyz", timeout),
        }

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
        return wait_ready(
            host_port,
            timeout,
            interval=interval,
            check=(lambda: self.inspect(name)) if name else None,
            logs=(lambda: self.logs_tail(name, 40)) if name else None,
        )


def http_ok(host_port: int, path: str, timeout: float = 2.0) -> bool:
    """True when http://127.0.0.1:PORT/PATH answers 200."""
    url = f"http://127.0.0.1:{int(host_port)}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - fixed host
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def probe(host_port: int, timeout: float = 2.0) -> dict[str, bool]:
    return DockerRuntime.probe(host_port, timeout)


def wait_ready(
    host_port: int,
    timeout: float = 120,
    *,
    interval: float = 0.5,
    check=None,
    logs=None,
) -> float:
    """Poll /readyz on 127.0.0.1:PORT until 200; ``check()`` -> ContainerInfo|None, optional."""
    start = time.monotonic()
    deadline = start + timeout
    polls = 0
    while True:
        if http_ok(host_port, "/readyz", timeout=2.0):
            return time.monotonic() - start
        polls += 1
        if check is not None and polls % 4 == 0:
            info = check()
            if info is None or not info.running:
                tail = logs() if (logs and info is not None) else ""
                state = "absent" if info is None else f"{info.status}, exit {info.exit_code}"
                raise NotReady(
                    f"container stopped while waiting for readiness ({state})", info, tail
                )
        if time.monotonic() >= deadline:
            raise NotReady(f"127.0.0.1:{host_port}/readyz not ready after {timeout:.0f}s")
        time.sleep(interval)


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (tests; the control plane allocates its own)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
