"""The errors every runtime backend raises (the contract names which method raises which)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .types import ContainerInfo


class RuntimeErrorBase(Exception):
    """Base class of every error a runtime raises (an engine API error not covered below)."""


class OutputTooLarge(RuntimeErrorBase):
    """A command in a container printed more than the caller's cap: the rest was not read (a
    hostile tenant can make its gateway print gigabytes; the control plane reads a bounded
    amount and gives up)."""

    def __init__(self, name: str, limit: int):
        self.name = name
        self.limit = limit
        super().__init__(f"output of a command in {name} passed {limit} bytes")


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


class VolumeNotFound(RuntimeErrorBase):
    def __init__(self, name: str, hint: str = ""):
        self.name = name
        super().__init__(f"volume {name} does not exist" + (f": {hint}" if hint else ""))


class NetworkUnsafe(RuntimeErrorBase):
    """A network of that name exists but lets containers talk to each other (or is not a
    bridge), and containers are attached, so it cannot be replaced safely."""


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
