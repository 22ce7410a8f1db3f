"""What goes into a runtime and what comes out: the container spec, the observed container, the
names every backend shares (labels, the state directory, the gateway port). Pure data, no I/O."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field

GATEWAY_PORT = 18789
STATE_DIR = "/home/node/.openclaw"
CONFIG_FILE = "openclaw.json"
CACHE_DIR = "/home/node/.cache"
USER = "1000:1000"

# Labels on every object a backend creates for the control plane.
MANAGED_LABEL = "clawfleet.managed"
HELPER_LABEL = "clawfleet.helper"
SPEC_HASH_LABEL = "clawfleet.spec-hash"
VOLUME_LABEL = "clawfleet.volume"

SECRET_ENV_RE = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|PRIVATE|CREDENTIAL)", re.I)


@dataclass
class ContainerSpec:
    """Everything that shapes one gateway container. ``command`` overrides the image's command
    (None, the default for gateways: the image's ``openclaw gateway``); the contract suite runs
    a trivial one so that it needs no gateway boot."""

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
    command: list[str] | None = None

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
        """Stable hash of everything that shapes the container (stored as a label). A spec
        without a ``command`` hashes as it did before the field existed, so containers made
        then still match."""
        data = asdict(self)
        data["labels"] = dict(sorted(self.labels.items()))
        if data["command"] is None:
            del data["command"]
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
    # The container's IPv4 address on its (first) Docker network: what the edge proxy dials.
    address: str | None = None

    def matches(self, spec: ContainerSpec) -> bool:
        return self.image == spec.image and self.spec_hash == spec.spec_hash()


def state_path(path: str) -> str:
    """The absolute path of a file in the state volume: relative paths are relative to the
    volume root (STATE_DIR). Refuses anything that leaves the volume."""
    path = path.strip()
    if not path.startswith("/"):
        path = f"{STATE_DIR}/{path}"
    norm = "/".join(p for p in path.split("/") if p not in ("", "."))
    if ".." in norm.split("/") or not ("/" + norm + "/").startswith(STATE_DIR + "/"):
        raise ValueError(f"path {path!r} is not inside the state volume")
    return "/" + norm


# Defaults every backend shares (the contract's signatures use them).
STOP_TIMEOUT = 30
EXEC_TIMEOUT = 60
STREAM_TIMEOUT = 600
# What `exec` reads of a command's stdout + stderr before it gives up (OutputTooLarge).
EXEC_MAX_OUTPUT = 16 * 1024 * 1024
HELPER_TIMEOUT = 120
