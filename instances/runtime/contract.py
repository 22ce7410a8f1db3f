"""The runtime contract: what the control plane needs from one container engine.

Every method the control plane (handlers, reconcile, sessions, admin and dashboard views,
management commands, benchmarks) calls on a runtime is here, with what "converging" means for
it: calling a converging method twice leaves the engine as calling it once does. A backend is a
class taking the engine's URL (``cls(base_url)``) that provides every method below with the same
signature; ``FLEET_RUNTIME`` names it and ``instances.runtime.runtime_for(host)`` builds it.
Implementations: ``instances.runtime.docker.DockerRuntime`` (one Docker engine) and the
in-memory ``tests.fakes.runtime.FakeRuntime``; ``tests/instances/test_runtime_contract.py``
runs the same cases against both so that they cannot drift.

Objects a backend creates for an instance carry ``spec.labels`` (``clawfleet.instance``,
``clawfleet.org``, the plane label) plus ``clawfleet.managed=true``; volume file operations run
in short-lived helpers that are never ``clawfleet.managed``. Paths "in the volume" are relative
to its root or absolute under ``STATE_DIR`` (``types.state_path``).

Errors (``errors.py``): an engine that does not answer raises ``EngineUnavailable``; any other
engine refusal ``RuntimeErrorBase``; the specific ones are named per method.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, BinaryIO, Protocol, runtime_checkable

from .types import (
    EXEC_MAX_OUTPUT,
    EXEC_TIMEOUT,
    HELPER_TIMEOUT,
    STOP_TIMEOUT,
    STREAM_TIMEOUT,
    USER,
    ContainerInfo,
    ContainerSpec,
)

VolumeData = bytes | BinaryIO | Iterable[bytes]


@runtime_checkable
class Runtime(Protocol):
    base_url: str

    # -- engine and images -------------------------------------------------------------------

    def ping(self) -> bool:
        """True when the engine answers; raises EngineUnavailable otherwise."""
        ...

    def image_exists(self, ref: str) -> bool:
        """Whether the engine holds the image (never pulls)."""
        ...

    def ensure_image(self, ref: str) -> None:
        """Converges: present afterwards (pulled only where the backend allows it for registry
        refs), or ImageMissing naming the command that builds it."""
        ...

    # -- networks ----------------------------------------------------------------------------

    def ensure_network(self, name: str) -> str:
        """Converges to a network of that name on which containers cannot reach each other
        (inter-container traffic off), labelled managed; returns its gateway IPv4. An existing
        network that lets containers talk is replaced when nothing is attached to it, refused
        with NetworkUnsafe when something is."""
        ...

    def network_gateway(self, name: str) -> str:
        """The network's gateway IPv4 (what a container reaches the engine host by).
        RuntimeErrorBase when the network does not exist."""
        ...

    def remove_network(self, name: str) -> None:
        """Converges: absent afterwards (absent already is fine). RuntimeErrorBase while a
        container is attached."""
        ...

    # -- volumes -----------------------------------------------------------------------------

    def volume_exists(self, name: str) -> bool: ...

    def ensure_volume(self, name: str, labels: dict[str, str] | None = None) -> bool:
        """Converges: the volume exists (labelled managed + ``labels``). True only when this
        call created it; an existing volume keeps its content and labels."""
        ...

    def remove_volume(self, name: str) -> None:
        """Converges: absent afterwards (absent already is fine). RuntimeErrorBase while a
        container uses it."""
        ...

    # -- containers --------------------------------------------------------------------------

    def inspect(self, name: str) -> ContainerInfo | None:
        """The container now, or None when there is none of that name."""
        ...

    def list_managed(self) -> list[ContainerInfo]:
        """Every ``clawfleet.managed=true`` container, running or not, in ONE engine call
        (summary data: ``oom_killed``, ``restart_count`` and the times may be None, and
        ``host_port`` is known only while the container runs)."""
        ...

    def ensure_container(self, spec: ContainerSpec) -> ContainerInfo:
        """Converges: a container of that name exists (created, not started) and is returned.
        An existing one is left as it is, even with another spec: callers compare
        ``info.matches(spec)`` and replace it themselves. ``spec.validate()`` first
        (ValueError); ImageMissing when the image is absent; VolumeNotFound when
        ``spec.volume_name`` was not ensured first."""
        ...

    def start(self, name: str) -> None:
        """Converges: running afterwards (a running container stays as it is). A container
        whose process exits at once is reported by ``inspect``, not here.
        ContainerNotFound when absent."""
        ...

    def stop(self, name: str, timeout: int = STOP_TIMEOUT) -> None:
        """Converges: not running afterwards (SIGTERM, SIGKILL after ``timeout`` s). Absent or
        stopped already: nothing to do."""
        ...

    def restart(self, name: str, timeout: int = STOP_TIMEOUT) -> None:
        """Stop (as ``stop``) and start again; a stopped container is started.
        ContainerNotFound when absent."""
        ...

    def remove(self, name: str, force: bool = True) -> None:
        """Converges: absent afterwards, stopping it first when ``force``. Never removes the
        container's named volume. Absent already is fine."""
        ...

    # -- commands and logs -------------------------------------------------------------------

    def exec(
        self,
        name: str,
        cmd: list[str],
        timeout: float = EXEC_TIMEOUT,
        user: str = USER,
        env: dict[str, str] | None = None,
        max_output: int = EXEC_MAX_OUTPUT,
    ) -> tuple[int, bytes, bytes]:
        """Run ``cmd`` in the running container: (exit code, stdout, stderr). 124: it ran out
        of ``timeout``; 127: no such program. ContainerNotFound when absent,
        ContainerNotRunning when stopped; OutputTooLarge when stdout and stderr together pass
        ``max_output`` bytes (the rest is never read into memory)."""
        ...

    def exec_stream(
        self,
        name: str,
        cmd: list[str],
        timeout: float = STREAM_TIMEOUT,
        user: str = USER,
        max_bytes: int | None = None,
    ) -> Iterator[bytes]:
        """Like ``exec`` for large output: stdout as it comes (stderr dropped), e.g. a backup
        archive in the container's /tmp; RuntimeErrorBase at the end when the command exited
        non-zero, OutputTooLarge as soon as more than ``max_bytes`` came. The container
        errors are raised by the call itself, before iteration."""
        ...

    def logs_tail(self, name: str, lines: int = 200) -> str:
        """The last ``lines`` lines of the container's output (customer content: never log
        it). ContainerNotFound when absent."""
        ...

    # -- volume files (helpers: no network, the volume at STATE_DIR) -------------------------

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
        """Run a one-shot command of ``image`` with the volume mounted at STATE_DIR, no
        network: (exit code, stdout, stderr), as ``exec`` (127: no such program). ``files``
        ({path: content}) are in place before it starts, owned by uid 1000, mode 600: paths
        in the volume persist, others (e.g. under /tmp) live as long as the helper.
        VolumeNotFound when the volume is absent; ImageMissing when the image is."""
        ...

    def read_file(self, volume_name: str, image: str, path: str) -> bytes | None:
        """Content of a file in the volume, None when there is none. VolumeNotFound."""
        ...

    def write_file(
        self, volume_name: str, image: str, path: str, data: bytes, *, mode: int = 0o600
    ) -> None:
        """Converges: the file holds ``data`` (uid 1000, ``mode``), replaced atomically
        (staged beside it, then renamed). The parent directory must exist. VolumeNotFound."""
        ...

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
        """Converge ``openclaw.json`` (``instances.openclaw.files.write_config``): absent, the
        whole ``config``; present, only the ``owned_paths`` set from ``config``, the rest kept.
        True when the file was (re)written, False when it already held that. ``validate``:
        OpenClaw checks it first; ConfigInvalid (with ``secrets`` scrubbed) leaves the old file.
        """
        ...

    def export_volume(self, volume_name: str, image: str) -> Iterator[bytes]:
        """A tar stream of the volume's content (entries ``./...``, owners kept). A cold copy:
        stop the gateway first. VolumeNotFound (raised by the call, before iteration)."""
        ...

    def import_volume(
        self,
        volume_name: str,
        image: str,
        data: VolumeData,
        *,
        clear: bool = True,
        owner: str | None = USER,
    ) -> None:
        """Converges: the volume (created if absent) holds the tar ``data`` (as
        ``export_volume`` makes it); ``clear`` empties it first, ``owner`` chowns everything
        afterwards (None keeps the owners in the tar). Importing the same tar twice gives the
        same content."""
        ...

    def copy_volume(self, src: str, dst: str, image: str) -> None:
        """Converges: ``dst`` (created if absent) holds a copy of ``src``'s content, owners
        kept. Cold: stop users of ``src`` first."""
        ...

    # -- health ------------------------------------------------------------------------------

    def probe(self, host_port: int, timeout: float = 2.0) -> dict[str, Any]:
        """{"healthz": bool, "readyz": bool} of the gateway published on ``host_port``."""
        ...

    def wait_ready(
        self,
        host_port: int,
        timeout: float = 120,
        *,
        name: str | None = None,
        interval: float = 0.5,
    ) -> float:
        """Seconds until /readyz answered 200. NotReady at the timeout, or at once when the
        container ``name`` exits meanwhile (``.info``, ``.logs``)."""
        ...


PROTOCOL_METHODS: tuple[str, ...] = tuple(
    name for name, value in vars(Runtime).items() if callable(value) and not name.startswith("_")
)
