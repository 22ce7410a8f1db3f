"""The one in-memory runtime: ``instances.runtime.contract.Runtime`` without an engine.

Handlers, the reconcile loop, views and sessions code run against it in fast tests; the
contract suite (tests/instances/test_runtime_contract.py) runs the same cases against it and
the real Docker engine, so what it does is what DockerRuntime does for every case covered.

Tests get it from the ``fake_runtime`` fixture (tests/fakes/fixtures.py), which points
``FLEET_RUNTIME`` at ``installed`` below: ``runtime_for(host)`` then returns the fixture's fake
for the first engine URL asked for (the local host, in nearly every test) and a separate fake
per further URL (``fake.peers``), as separate engines would be.

What it models: images (the configured OpenClaw versions exist), networks (gateway IP, isolated
or not), volumes holding files (relative path -> bytes, uid and mode), containers (created,
running, exited with a code), a container that "serves" /readyz when it runs the image's own
command (``spec.command is None``) of an image that is not in ``broken_images`` while ``ready``.
Commands (``exec``, ``run_in_volume``) are a few built-in programs (true, false, echo, cat, id)
plus whatever a test registers in ``programs``; an unknown program exits 127 as it does in a
container, but the programs the image has and the fake cannot run (sh, node, openclaw) raise
NotImplementedError so a test never passes by accident.

Docker's healthcheck (the OpenClaw image has one) is modelled as Docker reports it: a started
container's health is "starting" until ``run_healthchecks()`` (the engine's periodic check) sets
every running one to "healthy" or "unhealthy" (serving or not); a stopped one has none. The
summary of ``list_managed`` carries it, as the Docker adapter parses it from the list call.

It holds thousands of containers cheaply (bench/reconcile.py runs 1,000): the spec hash is
computed once per container, and a probe finds its container through a port index.

Knobs for tests: ``ready``, ``broken_images``, ``crash(name)``, ``run_healthchecks()``,
``errors`` ({method: exception} raised when the method is called), ``canned_logs`` (the log
text for any container, even one the fake does not hold: dashboard pages whose instances are
only rows), ``programs``. Every call is recorded in ``calls`` as (method, *key arguments).
"""

from __future__ import annotations

import copy
import io
import json
import posixpath
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from instances.openclaw import files as openclaw_files
from instances.runtime.contract import VolumeData
from instances.runtime.errors import (
    ConfigInvalid,
    ContainerNotFound,
    ContainerNotRunning,
    HelperFailed,
    ImageMissing,
    NetworkUnsafe,
    NotReady,
    OutputTooLarge,
    RuntimeErrorBase,
    VolumeNotFound,
)
from instances.runtime.types import (
    CONFIG_FILE,
    EXEC_MAX_OUTPUT,
    EXEC_TIMEOUT,
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

SCRATCH_DIR = "/tmp"
NOT_EMULATED = frozenset({"sh", "bash", "node", "openclaw"})

Program = Callable[[list[str], "FakeFS"], tuple[int, bytes, bytes]]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())


def _default_images() -> set[str]:
    from django.conf import settings

    return {
        settings.FLEET_OPENCLAW_IMAGE.format(version=v) for v in settings.FLEET_OPENCLAW_VERSIONS
    }


@dataclass
class FakeVolume:
    labels: dict[str, str]
    files: dict[str, bytes] = field(default_factory=dict)  # path relative to the volume root
    meta: dict[str, tuple[int, int]] = field(default_factory=dict)  # path -> (uid, mode)

    def put(self, rel: str, data: bytes, uid: int = 1000, mode: int = 0o600) -> None:
        self.files[rel] = bytes(data)
        self.meta[rel] = (uid, mode)


@dataclass
class FakeNetwork:
    id: str
    gateway: str
    isolated: bool = True
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeContainer:
    spec: ContainerSpec
    id: str
    running: bool = False
    exit_code: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    ever_started: bool = False
    tmp: dict[str, bytes] = field(default_factory=dict)  # its own /tmp
    health: str | None = None  # Docker's healthcheck status while running
    spec_hash: str = ""  # the spec never changes once created: hashed once


class FakeFS:
    """What a command sees: the state volume at STATE_DIR and a scratch /tmp."""

    def __init__(self, volume: FakeVolume | None, scratch: dict[str, bytes]):
        self.volume = volume
        self.scratch = scratch

    def _where(self, path: str) -> tuple[dict[str, bytes], str] | None:
        norm = posixpath.normpath(path)
        if (norm + "/").startswith(SCRATCH_DIR + "/"):
            return self.scratch, norm
        if self.volume is not None and (norm + "/").startswith(STATE_DIR + "/"):
            return self.volume.files, state_path(norm)[len(STATE_DIR) + 1 :]
        return None

    def read(self, path: str) -> bytes | None:
        where = self._where(path)
        return where[0].get(where[1]) if where else None

    def write(self, path: str, data: bytes) -> None:
        where = self._where(path)
        if where is None:
            raise NotImplementedError(f"the fake file system has no {path}")
        store, key = where
        if store is self.scratch:
            store[key] = bytes(data)
        else:
            self.volume.put(key, data)


def _builtin(argv: list[str], fs: FakeFS, user: str) -> tuple[int, bytes, bytes]:
    prog, args = argv[0], argv[1:]
    if prog == "true":
        return 0, b"", b""
    if prog == "false":
        return 1, b"", b""
    if prog == "echo":
        return 0, (" ".join(args) + "\n").encode(), b""
    if prog == "id" and args == ["-u"]:
        return 0, f"{user.split(':')[0]}\n".encode(), b""
    if prog == "cat":
        out = b""
        for path in args:
            data = fs.read(path)
            if data is None:
                return 1, out, f"cat: {path}: No such file or directory\n".encode()
            out += data
        return 0, out, b""
    if prog in NOT_EMULATED:
        raise NotImplementedError(
            f"FakeRuntime cannot run {prog!r}: register fake.programs[{prog!r}] in the test"
        )
    missing = f"timeout: failed to run command '{prog}': No such file or directory\n"
    return 127, b"", missing.encode()


def _fake_validate(config: dict) -> list[str]:
    """The refusals of ``openclaw config validate`` the fake knows (the contract suite checks
    the same case against the real one)."""
    problems = []
    gateway = config.get("gateway") if isinstance(config, dict) else None
    if isinstance(gateway, dict):
        port = gateway.get("port")
        if port is not None and (not isinstance(port, int) or not 1 <= port <= 65535):
            problems.append("gateway.port: Invalid input: expected number")
        if gateway.get("mode") not in (None, "local", "remote"):
            problems.append("gateway.mode: Invalid option")
    return problems


def _read_tar(data: VolumeData) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    if isinstance(data, bytes | bytearray):
        fh: BinaryIO = io.BytesIO(data)
    elif hasattr(data, "read"):
        fh = data  # type: ignore[assignment]
    else:
        fh = io.BytesIO(b"".join(data))  # type: ignore[arg-type]
    entries = []
    with tarfile.open(fileobj=fh, mode="r|*") as tar:
        for member in tar:
            body = tar.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            entries.append((member, body))
    return entries


class FakeRuntime:
    def __init__(self, base_url: str = "unix:///fake.sock"):
        self.base_url = base_url
        self.containers: dict[str, FakeContainer] = {}
        self.volumes: dict[str, FakeVolume] = {}
        self.networks: dict[str, FakeNetwork] = {}
        self.images: set[str] = _default_images()
        self.broken_images: set[str] = set()
        self.ready = True
        self.calls: list[tuple] = []
        self.errors: dict[str, Exception] = {}
        self.canned_logs: str | None = None
        self.logs: dict[str, str] = {}
        self.programs: dict[str, Program] = {}
        self.peers: dict[str, FakeRuntime] = {}
        self.created = 0
        self._ids = 0
        self._ports: dict[int, set[str]] = {}  # host port -> names of containers publishing it

    def __repr__(self) -> str:
        return f"FakeRuntime({self.base_url!r})"

    # -- bookkeeping
    def _enter(self, method: str, *key) -> None:
        self.calls.append((method, *key))
        exc = self.errors.get(method)
        if exc is not None:
            raise exc

    def _next_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}{self._ids}"

    def _volume(self, name: str) -> FakeVolume:
        volume = self.volumes.get(name)
        if volume is None:
            raise VolumeNotFound(name)
        return volume

    def _container(self, name: str) -> FakeContainer:
        c = self.containers.get(name)
        if c is None:
            raise ContainerNotFound(name)
        return c

    def _serving(self, c: FakeContainer | None) -> bool:
        return bool(
            c is not None
            and c.running
            and c.spec.command is None
            and c.spec.image not in self.broken_images
            and self.ready
        )

    def _run(self, argv: list[str], fs: FakeFS, user: str) -> tuple[int, bytes, bytes]:
        if not argv:
            raise ValueError("empty command")
        program = self.programs.get(argv[0])
        if program is not None:
            return program(list(argv), fs)
        return _builtin(list(argv), fs, user)

    def _info(self, c: FakeContainer, *, summary: bool = False) -> ContainerInfo:
        status = "running" if c.running else ("exited" if c.ever_started else "created")
        spec_hash = c.spec_hash or c.spec.spec_hash()
        return ContainerInfo(
            name=c.spec.name,
            id=c.id,
            status=status,
            running=c.running,
            exit_code=c.exit_code if status == "exited" else None,
            oom_killed=None if summary else False,
            restart_count=None if summary else 0,
            started_at=None if summary else c.started_at,
            finished_at=None if summary else c.finished_at,
            health=c.health if c.running else None,
            labels={
                **c.spec.labels,
                MANAGED_LABEL: "true",
                VOLUME_LABEL: c.spec.volume_name,
                SPEC_HASH_LABEL: spec_hash,
            },
            image=c.spec.image,
            host_port=c.spec.host_port if (c.running or not summary) else None,
            spec_hash=spec_hash,
        )

    def _check_image(self, image: str) -> None:
        if image not in self.images:
            raise ImageMissing(image, self.base_url)

    # -- test knobs
    def crash(self, name: str, exit_code: int = 137) -> None:
        """The container's process dies (as a kill -9 or the OOM killer would do it)."""
        c = self.containers[name]
        c.running, c.exit_code, c.finished_at, c.health = False, exit_code, _now(), None

    def run_healthchecks(self) -> None:
        """The engine runs every running container's healthcheck: healthy while it serves."""
        for c in self.containers.values():
            if c.running:
                c.health = "healthy" if self._serving(c) else "unhealthy"

    @property
    def configs(self) -> dict[str, dict]:
        """{volume: parsed openclaw.json} of every volume holding one."""
        return {
            name: json.loads(v.files[CONFIG_FILE])
            for name, v in self.volumes.items()
            if CONFIG_FILE in v.files
        }

    # -- engine and images
    def ping(self) -> bool:
        self._enter("ping")
        return True

    def image_exists(self, ref: str) -> bool:
        self._enter("image_exists", ref)
        return ref in self.images

    def ensure_image(self, ref: str) -> None:
        self._enter("ensure_image", ref)
        self._check_image(ref)

    # -- networks
    def ensure_network(self, name: str) -> str:
        self._enter("ensure_network", name)
        net = self.networks.get(name)
        if net is not None and not net.isolated:
            attached = [c.spec.name for c in self.containers.values() if self._on(c, name)]
            if attached:
                raise NetworkUnsafe(
                    f"network {name} on {self.base_url} lets containers reach each other and "
                    f"{len(attached)} running container(s) use it ({', '.join(attached[:5])})"
                )
            del self.networks[name]
            net = None
        if net is None:
            net = FakeNetwork(
                id=self._next_id("n"),
                gateway=f"172.31.{len(self.networks)}.1",
                labels={MANAGED_LABEL: "true"},
            )
            self.networks[name] = net
        return net.gateway

    @staticmethod
    def _on(c: FakeContainer, network: str) -> bool:
        return c.running and (c.spec.network or "bridge") == network

    def network_gateway(self, name: str) -> str:
        self._enter("network_gateway", name)
        net = self.networks.get(name)
        if net is None:
            raise RuntimeErrorBase(f"network {name} not found on {self.base_url}")
        return net.gateway

    def remove_network(self, name: str) -> None:
        self._enter("remove_network", name)
        if name not in self.networks:
            return
        if any(self._on(c, name) for c in self.containers.values()):
            raise RuntimeErrorBase(f"{self.base_url}: network {name} has active endpoints")
        del self.networks[name]

    # -- volumes
    def volume_exists(self, name: str) -> bool:
        self._enter("volume_exists", name)
        return name in self.volumes

    def ensure_volume(self, name: str, labels: dict[str, str] | None = None) -> bool:
        self._enter("ensure_volume", name)
        if name in self.volumes:
            return False
        self.volumes[name] = FakeVolume(labels={**(labels or {}), MANAGED_LABEL: "true"})
        return True

    def remove_volume(self, name: str) -> None:
        self._enter("remove_volume", name)
        if name not in self.volumes:
            return
        users = [c.spec.name for c in self.containers.values() if c.spec.volume_name == name]
        if users:
            raise RuntimeErrorBase(f"{self.base_url}: volume {name} is in use by {users}")
        del self.volumes[name]

    # -- containers
    def inspect(self, name: str) -> ContainerInfo | None:
        self._enter("inspect", name)
        c = self.containers.get(name)
        return self._info(c) if c else None

    def list_managed(self) -> list[ContainerInfo]:
        self._enter("list_managed")
        return [self._info(c, summary=True) for c in self.containers.values()]

    def ensure_container(self, spec: ContainerSpec) -> ContainerInfo:
        self._enter("ensure_container", spec.name)
        spec.validate()
        existing = self.containers.get(spec.name)
        if existing is not None:
            return self._info(existing)
        self._check_image(spec.image)
        if spec.volume_name not in self.volumes:
            raise VolumeNotFound(spec.volume_name, "call ensure_volume() first")
        self.created += 1
        c = FakeContainer(spec=copy.deepcopy(spec), id=self._next_id("c"))
        c.spec_hash = c.spec.spec_hash()
        self.containers[spec.name] = c
        self._ports.setdefault(int(spec.host_port), set()).add(spec.name)
        return self._info(c)

    def start(self, name: str) -> None:
        self._enter("start", name)
        c = self._container(name)
        if c.running:
            return
        c.ever_started, c.started_at, c.tmp = True, _now(), {}
        if c.spec.image in self.broken_images:  # its process exits at once
            c.running, c.exit_code, c.finished_at, c.health = False, 1, _now(), None
        else:
            c.running, c.exit_code, c.health = True, None, "starting"

    def stop(self, name: str, timeout: int = STOP_TIMEOUT) -> None:
        self._enter("stop", name, timeout)
        c = self.containers.get(name)
        if c is not None and c.running:
            c.running, c.exit_code, c.finished_at, c.health = False, 0, _now(), None

    def restart(self, name: str, timeout: int = STOP_TIMEOUT) -> None:
        self._enter("restart", name)
        self._container(name)
        self.stop(name, timeout)
        self.start(name)

    def remove(self, name: str, force: bool = True) -> None:
        self._enter("remove", name)
        c = self.containers.get(name)
        if c is None:
            return
        if c.running and not force:
            raise RuntimeErrorBase(
                f"{self.base_url}: cannot remove running container {name}: stop it or force"
            )
        del self.containers[name]
        self._ports.get(int(c.spec.host_port), set()).discard(name)

    # -- commands and logs
    def _running(self, name: str) -> FakeContainer:
        c = self._container(name)
        if not c.running:
            raise ContainerNotRunning(name)
        return c

    def exec(
        self,
        name: str,
        cmd: list[str],
        timeout: float = EXEC_TIMEOUT,
        user: str = USER,
        env: dict[str, str] | None = None,
        max_output: int = EXEC_MAX_OUTPUT,
    ) -> tuple[int, bytes, bytes]:
        self._enter("exec", name, tuple(cmd))
        c = self._running(name)
        code, out, err = self._run(cmd, FakeFS(self.volumes.get(c.spec.volume_name), c.tmp), user)
        if len(out) + len(err) > max_output:
            raise OutputTooLarge(name, max_output)
        return code, out, err

    def exec_stream(
        self,
        name: str,
        cmd: list[str],
        timeout: float = STREAM_TIMEOUT,
        user: str = USER,
        max_bytes: int | None = None,
    ) -> Iterator[bytes]:
        self._enter("exec_stream", name, tuple(cmd))
        c = self._running(name)
        code, out, _err = self._run(cmd, FakeFS(self.volumes.get(c.spec.volume_name), c.tmp), user)
        return self._stream(name, code, out, max_bytes)

    @staticmethod
    def _stream(name: str, code: int, out: bytes, max_bytes: int | None) -> Iterator[bytes]:
        if max_bytes is not None and len(out) > max_bytes:
            raise OutputTooLarge(name, max_bytes)
        if out:
            yield out
        if code:
            raise RuntimeErrorBase(f"streamed command exited {code}")

    def logs_tail(self, name: str, lines: int = 200) -> str:
        self._enter("logs_tail", name)
        if self.canned_logs is not None:
            return self.canned_logs
        self._container(name)
        text = self.logs.get(name, "")
        return "".join(text.splitlines(keepends=True)[-int(lines) :]) if lines else ""

    # -- volume files
    def _helper_fs(
        self, volume_name: str, image: str, files: Mapping[str, bytes | BinaryIO] | None
    ) -> FakeFS:
        self._check_image(image)
        fs = FakeFS(self._volume(volume_name), {})
        for path, content in (files or {}).items():
            data = content if isinstance(content, bytes | bytearray) else content.read()
            norm = posixpath.normpath(path) if path.startswith("/") else None
            if norm and (norm + "/").startswith(SCRATCH_DIR + "/"):
                fs.write(norm, data)
            else:
                fs.write(state_path(path), data)
        return fs

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
        self._enter("run_in_volume", volume_name, tuple(cmd))
        return self._run(cmd, self._helper_fs(volume_name, image, files), user)

    def read_file(self, volume_name: str, image: str, path: str) -> bytes | None:
        self._enter("read_file", volume_name, path)
        self._check_image(image)
        return self._volume(volume_name).files.get(state_path(path)[len(STATE_DIR) + 1 :])

    def write_file(
        self, volume_name: str, image: str, path: str, data: bytes, *, mode: int = 0o600
    ) -> None:
        self._enter("write_file", volume_name, path)
        self._check_image(image)
        self._volume(volume_name).put(state_path(path)[len(STATE_DIR) + 1 :], data, mode=mode)

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
        """The same decisions as ``openclaw.files.write_config`` (it shares its merge), with
        the fake's own validation; the file must be plain JSON (JSON5 needs the image's node)."""
        self._enter("write_config", volume_name, validate)
        self._check_image(image)
        volume = self._volume(volume_name)
        raw = volume.files.get(CONFIG_FILE)
        existing = json.loads(raw) if raw is not None else None
        final = openclaw_files.desired_file(existing, config, owned_paths)
        if final is None:
            return False
        if validate:
            problems = _fake_validate(final)
            if problems:
                text = openclaw_files.scrub("; ".join(problems), secrets)
                raise ConfigInvalid(f"openclaw config validate rejected the config: {text}")
        volume.put(CONFIG_FILE, openclaw_files.render(final), mode=0o600)
        return True

    def export_volume(self, volume_name: str, image: str) -> Iterator[bytes]:
        self._enter("export_volume", volume_name)
        self._check_image(image)
        volume = self._volume(volume_name)
        buf = io.BytesIO()
        now = int(time.time())
        with tarfile.open(fileobj=buf, mode="w") as tar:
            dirs = {"."}
            for rel in sorted(volume.files):
                parts = rel.split("/")[:-1]
                for i in range(len(parts)):
                    dirs.add("./" + "/".join(parts[: i + 1]))
            for d in sorted(dirs):
                info = tarfile.TarInfo(d)
                info.type, info.mode, info.uid, info.gid, info.mtime = (
                    tarfile.DIRTYPE,
                    0o700,
                    1000,
                    1000,
                    now,
                )
                tar.addfile(info)
            for rel, data in sorted(volume.files.items()):
                uid, mode = volume.meta.get(rel, (1000, 0o600))
                info = tarfile.TarInfo(f"./{rel}")
                info.size, info.mode, info.uid, info.gid, info.mtime = (
                    len(data),
                    mode,
                    uid,
                    uid,
                    now,
                )
                tar.addfile(info, io.BytesIO(data))
        return iter([buf.getvalue()])

    def import_volume(
        self,
        volume_name: str,
        image: str,
        data: VolumeData,
        *,
        clear: bool = True,
        owner: str | None = USER,
    ) -> None:
        self._enter("import_volume", volume_name, clear)
        self._check_image(image)
        self.ensure_volume(volume_name, {})
        volume = self.volumes[volume_name]
        try:
            entries = _read_tar(data)
        except tarfile.TarError as exc:
            raise HelperFailed(f"import into {volume_name} failed: {exc}") from exc
        if clear:
            volume.files.clear()
            volume.meta.clear()
        uid = int(owner.split(":")[0]) if owner else None
        for member, body in entries:
            rel = posixpath.normpath(member.name).lstrip("/")
            if body is None or rel in ("", "."):
                continue
            volume.put(rel, body, uid=member.uid if uid is None else uid, mode=member.mode)

    def copy_volume(self, src: str, dst: str, image: str) -> None:
        self._enter("copy_volume", src, dst)
        self.import_volume(dst, image, self.export_volume(src, image), clear=True, owner=None)

    # -- health
    def _by_port(self, host_port: int) -> FakeContainer | None:
        for name in self._ports.get(int(host_port), ()):
            c = self.containers.get(name)
            if c is not None and c.running and c.spec.host_port == host_port:
                return c
        return None

    def probe(self, host_port: int, timeout: float = 2.0) -> dict[str, Any]:
        self._enter("probe", host_port)
        serving = self._serving(self._by_port(host_port))
        return {"healthz": serving, "readyz": serving}

    def wait_ready(
        self,
        host_port: int,
        timeout: float = 120,
        *,
        name: str | None = None,
        interval: float = 0.5,
    ) -> float:
        self._enter("wait_ready", host_port, name)
        c = self.containers.get(name) if name else self._by_port(host_port)
        if self._serving(c) and c.spec.host_port == host_port:
            return 1.0
        if name is not None and (c is None or not c.running):
            info = self._info(c) if c is not None else None
            state = "absent" if info is None else f"{info.status}, exit {info.exit_code}"
            raise NotReady(f"container stopped while waiting for readiness ({state})", info, "")
        # Nothing would ever answer: the real one polls until the timeout, the fake says so now.
        raise NotReady(f"127.0.0.1:{host_port}/readyz not ready after {timeout:.0f}s")


# --- the FLEET_RUNTIME target of the fake_runtime fixture ---------------------------------------

_installed: FakeRuntime | None = None


def install() -> FakeRuntime:
    """A fresh fake that ``installed`` hands out (bound to the first engine URL asked for)."""
    global _installed
    _installed = FakeRuntime(base_url="")
    return _installed


def uninstall() -> None:
    global _installed
    _installed = None


def installed(base_url: str) -> FakeRuntime:
    """``FLEET_RUNTIME = "tests.fakes.runtime.installed"``: the installed fake for its engine,
    a peer fake (kept in ``fake.peers``) for any other engine URL."""
    primary = _installed
    if primary is None:
        raise RuntimeError("no fake runtime installed: request the fake_runtime fixture")
    if not primary.base_url:
        primary.base_url = base_url
    if base_url == primary.base_url:
        return primary
    return primary.peers.setdefault(base_url, FakeRuntime(base_url))
