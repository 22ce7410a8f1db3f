"""An in-memory stand-in for instances.runtime.DockerRuntime (unit tests of handlers and the
reconcile loop without an engine). Records calls; converges like the real one."""

from __future__ import annotations

from dataclasses import dataclass, field

from instances.runtime import ContainerInfo, NotReady


@dataclass
class FakeContainer:
    spec: object
    id: str
    running: bool = False
    exit_code: int | None = None


@dataclass
class FakeRuntime:
    base_url: str = "unix:///fake.sock"
    containers: dict = field(default_factory=dict)
    volumes: dict = field(default_factory=dict)
    configs: dict = field(default_factory=dict)
    calls: list = field(default_factory=list)
    ready: bool = True
    broken_images: set = field(default_factory=set)
    created: int = 0

    def _info(self, c: FakeContainer) -> ContainerInfo:
        return ContainerInfo(
            name=c.spec.name,
            id=c.id,
            status="running" if c.running else "exited",
            running=c.running,
            exit_code=None if c.running else c.exit_code,
            oom_killed=False,
            restart_count=0,
            started_at=None,
            finished_at=None,
            health=None,
            labels={
                **c.spec.labels,
                "clawfleet.managed": "true",
                "clawfleet.volume": c.spec.volume_name,
            },
            image=c.spec.image,
            host_port=c.spec.host_port,
            spec_hash=c.spec.spec_hash(),
        )

    def ensure_image(self, ref):
        self.calls.append(("ensure_image", ref))

    def ensure_network(self, name):
        self.calls.append(("ensure_network", name))
        return "172.31.0.1"

    def ensure_volume(self, name, labels=None):
        self.calls.append(("ensure_volume", name))
        if name in self.volumes:
            return False
        self.volumes[name] = dict(labels or {})
        return True

    def volume_exists(self, name):
        return name in self.volumes

    def remove_volume(self, name):
        self.calls.append(("remove_volume", name))
        self.volumes.pop(name, None)

    def write_config(self, volume_name, image, config, owned_paths, *, validate=True, secrets=()):
        self.calls.append(("write_config", volume_name, validate))
        self.configs[volume_name] = config
        return True

    def inspect(self, name):
        c = self.containers.get(name)
        return self._info(c) if c else None

    def ensure_container(self, spec):
        if spec.name not in self.containers:
            self.created += 1
            self.containers[spec.name] = FakeContainer(spec=spec, id=f"c{self.created}")
        return self._info(self.containers[spec.name])

    def start(self, name):
        self.calls.append(("start", name))
        c = self.containers[name]
        if c.spec.image in self.broken_images:
            c.running, c.exit_code = False, 1
        else:
            c.running = True

    def stop(self, name, timeout=30):
        self.calls.append(("stop", name, timeout))
        if name in self.containers:
            self.containers[name].running = False
            self.containers[name].exit_code = 0

    def restart(self, name, timeout=30):
        self.calls.append(("restart", name))
        self.start(name)

    def remove(self, name, force=True):
        self.calls.append(("remove", name))
        self.containers.pop(name, None)

    def list_managed(self):
        self.calls.append(("list_managed",))
        return [self._info(c) for c in self.containers.values()]

    def probe(self, host_port, timeout=2.0):
        return {"healthz": self.ready, "readyz": self.ready}

    def wait_ready(self, host_port, timeout=120, *, name=None, interval=0.5):
        c = self.containers.get(name)
        if c is None or not c.running or not self.ready:
            raise NotReady("container stopped while waiting for readiness (exited, exit 1)")
        return 1.0

    def crash(self, name, exit_code=137):
        c = self.containers[name]
        c.running, c.exit_code = False, exit_code
