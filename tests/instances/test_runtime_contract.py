"""The runtime contract (instances/runtime/contract.py), the same cases against the in-memory
fake (tests/fakes/runtime.py), the real Docker engine and the Swarm backend on the three-node
lab (tests/swarm_lab.py), so that none of them can drift.

The real backends' cases are marked docker and share one container (on Swarm: one service) per
module: the OpenClaw image running a trivial shell loop (no gateway boot), on the module's own
network and volume, all removed at the end. Only this module's objects are touched (names start
with its prefix). The swarm cases stay in this one file: one xdist worker owns the lab.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import tarfile
import uuid
from dataclasses import dataclass, field

import pytest
from django.conf import settings

from instances.openclaw import config as oc
from instances.runtime import (
    PROTOCOL_METHODS,
    ConfigInvalid,
    ContainerNotFound,
    ContainerNotRunning,
    ContainerSpec,
    DockerRuntime,
    ImageMissing,
    NetworkUnsafe,
    NotReady,
    OutputTooLarge,
    Runtime,
    RuntimeErrorBase,
    VolumeNotFound,
    free_port,
)
from instances.runtime.swarm import (
    ISOLATION_LABEL,
    MEMORY_LABEL,
    NodeUnsafe,
    SwarmRuntime,
    require_no_new_privileges,
)
from instances.runtime.types import GATEWAY_PORT, MANAGED_LABEL, STATE_DIR
from tests.fakes.runtime import FakeNetwork, FakeRuntime

MISSING_IMAGE = "clawfleet/openclaw:0.0.0-absent"
# A process that stays up, answers nothing on 18789 and exits 0 on SIGTERM (within a second).
IDLE = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
SECRET = "gw-" + "s3cret" * 6


def image() -> str:
    return settings.FLEET_OPENCLAW_IMAGE.format(version=settings.FLEET_DEFAULT_VERSION)


# --- the two backends ---------------------------------------------------------------------------


@dataclass
class Engine:
    """One backend plus what the suite needs that the contract does not offer (making a network
    the contract would never make, reading a network's isolation)."""

    kind: str
    rt: Runtime
    prefix: str = field(default_factory=lambda: f"cf-contract-{uuid.uuid4().hex[:8]}")

    def name(self, suffix: str) -> str:
        return f"{self.prefix}-{suffix}"

    def spec(self, suffix: str = "box", **overrides) -> ContainerSpec:
        fields = {
            "name": self.name(suffix),
            "hostname": self.name(suffix)[-30:].strip("-"),
            "image": image(),
            "volume_name": self.name("vol"),
            "host_port": free_port(),
            "memory_mb": 256,
            "cpus": 0.5,
            "pids_limit": 64,
            "labels": {"clawfleet.contract": self.prefix},
            "network": self.name("net"),
            "command": IDLE,
        }
        fields.update(overrides)
        return ContainerSpec(**fields)

    def make_leaky_network(self, name: str) -> None:
        """A network on which containers may talk to each other: a bridge with ICC on
        (Docker's default); on Swarm an attachable overlay anyone may join."""
        if self.kind == "docker":
            self.rt.api.create_network(name, driver="bridge", labels={MANAGED_LABEL: "true"})
        elif self.kind == "swarm":
            self.rt.api.create_network(
                name, driver="overlay", attachable=True, labels={MANAGED_LABEL: "true"}
            )
        else:
            self.rt.networks[name] = FakeNetwork(id="leaky", gateway="172.30.0.1", isolated=False)

    def isolated(self, name: str) -> bool:
        if self.kind == "docker":
            net = self.rt.api.inspect_network(name)
            return net["Options"].get("com.docker.network.bridge.enable_icc") == "false"
        if self.kind == "swarm":  # a family overlay no gateway joins (each has its own)
            net = self.rt.api.inspect_network(name)
            return (
                net["Driver"] == "overlay" and net["Labels"].get(ISOLATION_LABEL) == "per-service"
            )
        return self.rt.networks[name].isolated

    def occupy(self, network: str, volume_name: str) -> str:
        """A running container on ``network``: through the runtime where it attaches
        containers to the spec's network; on Swarm (which never attaches a gateway to it)
        someone else's container on the manager."""
        spec = self.spec("on-leaky", network=network, volume_name=volume_name)
        if self.kind != "swarm":
            self.rt.ensure_container(spec)
            self.rt.start(spec.name)
            return spec.name
        api = self.rt.api
        api.create_container(
            image(),
            name=spec.name,
            entrypoint=IDLE[:1],
            command=IDLE[1:],
            host_config=api.create_host_config(network_mode=network),
        )
        api.start(spec.name)
        return spec.name

    def occupant_running(self, name: str) -> bool:
        if self.kind != "swarm":
            return self.rt.inspect(name).running
        return self.rt.api.inspect_container(name)["State"]["Running"]

    def vacate(self, name: str) -> None:
        if self.kind != "swarm":
            self.rt.remove(name)
        else:
            self.rt.api.remove_container(name, force=True)

    def cleanup(self) -> None:
        if self.kind == "swarm":
            self._cleanup_swarm()
            return
        if self.kind != "docker":
            return
        api = self.rt.api
        for row in api.containers(all=True, filters={"name": self.prefix}):
            with contextlib.suppress(Exception):
                api.remove_container(row["Id"], force=True)
        for vol in (api.volumes(filters={"name": self.prefix}) or {}).get("Volumes") or []:
            with contextlib.suppress(Exception):
                api.remove_volume(vol["Name"], force=True)
        for net in api.networks(names=[self.prefix]):
            with contextlib.suppress(Exception):
                api.remove_network(net["Id"])

    def _cleanup_swarm(self) -> None:
        rt = self.rt
        for svc in rt.api.services(filters={"name": self.prefix}):
            with contextlib.suppress(Exception):
                rt.remove(svc["Spec"]["Name"])
        for row in rt.api.containers(all=True, filters={"name": self.prefix}):
            with contextlib.suppress(Exception):
                rt.api.remove_container(row["Id"], force=True)
        for node in rt.nodes():
            api = rt.engine(node["id"]).api
            for vol in (api.volumes(filters={"name": self.prefix}) or {}).get("Volumes") or []:
                with contextlib.suppress(Exception):
                    api.remove_volume(vol["Name"], force=True)
        for net in rt.api.networks(names=[self.prefix]):
            with contextlib.suppress(Exception):
                rt.api.remove_network(net["Id"])


BACKENDS = [
    "fake",
    pytest.param("docker", marks=pytest.mark.docker),
    pytest.param("swarm", marks=pytest.mark.docker),
]


@pytest.fixture(scope="module", params=BACKENDS)
def engine(request):
    if request.param == "docker":
        from tests.fleet_fixtures import connect_runtime

        rt = connect_runtime(settings.FLEET_DOCKER_URL)
        if not rt.image_exists(image()):
            pytest.fail(f"{image()} is absent: run images/openclaw/build.sh --all", False)
        eng = Engine("docker", rt)
    elif request.param == "swarm":
        lab = request.getfixturevalue("swarm_lab")
        rt = SwarmRuntime(lab.manager_url)
        rt.ensure_image(image())
        eng = Engine("swarm", rt)
    else:
        eng = Engine("fake", FakeRuntime())
    try:
        yield eng
    finally:
        eng.cleanup()


@pytest.fixture(scope="module")
def box(engine):
    """The module's container (created, not started), with its volume and network."""
    rt = engine.rt
    spec = engine.spec()
    rt.ensure_network(spec.network)
    rt.ensure_volume(spec.volume_name, {"clawfleet.contract": engine.prefix})
    info = rt.ensure_container(spec)
    return spec, info


def running(engine, box):
    spec, _info = box
    engine.rt.start(spec.name)
    return spec


# --- the shape of the contract ------------------------------------------------------------------


def _shape(fn):
    sig = inspect.signature(fn)
    return [(p.name, p.kind, p.default) for p in sig.parameters.values()]


@pytest.mark.parametrize("backend", [DockerRuntime, SwarmRuntime, FakeRuntime])
@pytest.mark.parametrize("method", PROTOCOL_METHODS)
def test_every_backend_provides_every_contract_method_with_its_signature(backend, method):
    assert callable(getattr(backend, method, None)), f"{backend.__name__} lacks {method}"
    assert _shape(getattr(backend, method)) == _shape(getattr(Runtime, method))


def test_the_contract_lists_what_the_control_plane_calls():
    assert {"ensure_volume", "write_config", "list_managed", "exec", "export_volume"} <= set(
        PROTOCOL_METHODS
    )
    assert isinstance(FakeRuntime(), Runtime) and isinstance(DockerRuntime(), Runtime)
    assert isinstance(SwarmRuntime("unix:///run/clawfleet-swarm/node-1.sock"), Runtime)


# --- images and volumes -------------------------------------------------------------------------


def test_a_missing_image_is_image_missing(engine):
    rt = engine.rt
    assert rt.image_exists(image()) and not rt.image_exists(MISSING_IMAGE)
    rt.ensure_image(image())
    with pytest.raises(ImageMissing, match="build.sh"):
        rt.ensure_image(MISSING_IMAGE)


def test_ensuring_a_volume_twice_creates_it_once_and_removing_twice_is_fine(engine):
    rt, name = engine.rt, engine.name("once")
    assert not rt.volume_exists(name)
    assert rt.ensure_volume(name, {"clawfleet.contract": engine.prefix}) is True
    assert rt.ensure_volume(name, {"clawfleet.contract": engine.prefix}) is False
    assert rt.volume_exists(name)
    rt.remove_volume(name)
    rt.remove_volume(name)
    assert not rt.volume_exists(name)


# --- containers ---------------------------------------------------------------------------------


def test_ensure_container_converges_and_matches_its_spec(engine, box):
    rt, (spec, first) = engine.rt, box
    assert first.status == "created" and not first.running and first.exit_code is None
    again = rt.ensure_container(spec)
    assert again.id == first.id and again.matches(spec)
    other = ContainerSpec(**{**spec.__dict__, "memory_mb": 512})
    assert not again.matches(other)
    assert rt.ensure_container(other).id == first.id  # an existing one is left as it is
    assert first.labels["clawfleet.contract"] == engine.prefix
    assert first.labels[MANAGED_LABEL] == "true" and first.host_port == spec.host_port


def test_ensure_container_refuses_a_missing_image_a_missing_volume_and_a_bad_spec(engine):
    rt = engine.rt
    with pytest.raises(ImageMissing):
        rt.ensure_container(engine.spec("noimage", image=MISSING_IMAGE))
    with pytest.raises(VolumeNotFound):
        rt.ensure_container(engine.spec("novolume", volume_name=engine.name("absent")))
    with pytest.raises(ValueError, match="secrets must not go in container env"):
        rt.ensure_container(engine.spec("secret", env={"MY_API_KEY": "x"}))
    assert rt.inspect(engine.name("noimage")) is None
    assert rt.inspect(engine.name("novolume")) is None


def test_list_managed_finds_the_container_by_label(engine, box):
    spec, info = box
    mine = [c for c in engine.rt.list_managed() if c.labels.get("clawfleet.contract")]
    assert [(c.name, c.id) for c in mine] == [(spec.name, info.id)]
    assert mine[0].spec_hash == spec.spec_hash() and mine[0].image == spec.image
    assert mine[0].host_port is None  # summary data: the published port shows while running


def test_start_stop_restart_converge(engine, box):
    rt, (spec, _info) = engine.rt, box
    rt.start(spec.name)
    rt.start(spec.name)
    assert rt.inspect(spec.name).running
    rt.stop(spec.name, timeout=10)
    rt.stop(spec.name, timeout=10)
    stopped = rt.inspect(spec.name)
    # 0 once the gateway handles SIGTERM; 143 (killed by it) when the stop came earlier in its
    # boot, as it does on a loaded machine: either way the engine reports the real exit code.
    assert (stopped.status, stopped.running) == ("exited", False)
    assert stopped.exit_code in (0, 143)
    rt.restart(spec.name, timeout=10)  # a stopped container is started
    assert rt.inspect(spec.name).running
    rt.restart(spec.name, timeout=10)
    assert rt.inspect(spec.name).running
    listed = {c.name: c for c in rt.list_managed()}
    assert listed[spec.name].running and listed[spec.name].status == "running"
    assert listed[spec.name].host_port == spec.host_port


def test_a_missing_container_gives_the_documented_results(engine):
    rt, name = engine.rt, engine.name("ghost")
    assert rt.inspect(name) is None
    rt.stop(name)
    rt.remove(name)
    for call in (rt.start, rt.restart, rt.logs_tail):
        with pytest.raises(ContainerNotFound):
            call(name)
    with pytest.raises(ContainerNotFound):
        rt.exec(name, ["true"])
    with pytest.raises(ContainerNotFound):
        rt.exec_stream(name, ["true"])


# --- commands -----------------------------------------------------------------------------------


def test_exec_reports_exit_codes_and_output(engine, box):
    rt = engine.rt
    spec = running(engine, box)
    assert rt.exec(spec.name, ["echo", "hello", "contract"]) == (0, b"hello contract\n", b"")
    assert rt.exec(spec.name, ["id", "-u"])[:2] == (0, b"1000\n")
    assert rt.exec(spec.name, ["false"])[0] == 1
    code, _out, err = rt.exec(spec.name, ["no-such-program-here"])
    assert code == 127 and b"no-such-program-here" in err
    code, out, err = rt.exec(spec.name, ["cat", "/tmp/absent-file"])
    assert code == 1 and out == b"" and b"No such file" in err
    assert isinstance(rt.logs_tail(spec.name, 10), str)


def test_exec_streams_large_output_and_fails_at_the_end(engine, box):
    rt = engine.rt
    spec = running(engine, box)
    rt.write_file(spec.volume_name, image(), "stream.bin", b"x" * 300_000)
    data = b"".join(rt.exec_stream(spec.name, ["cat", f"{STATE_DIR}/stream.bin"]))
    assert data == b"x" * 300_000
    with pytest.raises(RuntimeErrorBase, match="exited 1"):
        b"".join(rt.exec_stream(spec.name, ["cat", "/tmp/absent-file"]))


def test_exec_reads_no_more_than_its_cap_of_a_tenants_output(engine, box):
    """A hostile gateway can print without end: exec gives up at its cap and says so."""
    rt = engine.rt
    spec = running(engine, box)
    rt.write_file(spec.volume_name, image(), "big.bin", b"y" * 300_000)
    path = f"{STATE_DIR}/big.bin"
    with pytest.raises(OutputTooLarge, match="100000 bytes"):
        rt.exec(spec.name, ["cat", path], max_output=100_000)
    assert rt.exec(spec.name, ["cat", path], max_output=300_000)[1] == b"y" * 300_000
    with pytest.raises(OutputTooLarge):
        b"".join(rt.exec_stream(spec.name, ["cat", path], max_bytes=100_000))
    if engine.kind != "fake":
        # Output that never ends: the cap ends the read, not the command's own timeout.
        with pytest.raises(OutputTooLarge):
            rt.exec(spec.name, ["sh", "-c", "yes"], timeout=600, max_output=1_000_000)
        with pytest.raises(OutputTooLarge):
            b"".join(rt.exec_stream(spec.name, ["sh", "-c", "yes"], max_bytes=1_000_000))
        assert rt.exec(spec.name, ["echo", "still", "answers"])[1] == b"still answers\n"


def test_exec_in_a_stopped_container_is_not_running(engine, box):
    rt, (spec, _info) = engine.rt, box
    rt.stop(spec.name, timeout=10)
    with pytest.raises(ContainerNotRunning):
        rt.exec(spec.name, ["true"])
    with pytest.raises(ContainerNotRunning):
        rt.exec_stream(spec.name, ["true"])
    rt.start(spec.name)


# --- files in a volume --------------------------------------------------------------------------


def test_a_file_written_into_a_volume_reads_back_and_is_seen_by_the_container(engine, box):
    rt, img = engine.rt, image()
    spec = running(engine, box)
    volume = spec.volume_name
    assert rt.read_file(volume, img, "contract.txt") is None
    rt.write_file(volume, img, "contract.txt", b"first\n")
    rt.write_file(volume, img, "contract.txt", b"second\n")  # replaced, not appended
    assert rt.read_file(volume, img, "contract.txt") == b"second\n"
    assert rt.read_file(volume, img, f"{STATE_DIR}/contract.txt") == b"second\n"
    assert rt.exec(spec.name, ["cat", f"{STATE_DIR}/contract.txt"])[:2] == (0, b"second\n")
    with pytest.raises(ValueError, match="not inside the state volume"):
        rt.read_file(volume, img, "../../../etc/passwd")
    with pytest.raises(VolumeNotFound):
        rt.read_file(engine.name("absent"), img, "contract.txt")
    with pytest.raises(VolumeNotFound):
        rt.write_file(engine.name("absent"), img, "contract.txt", b"x")


def test_a_command_in_a_volume_sees_it_and_the_files_handed_to_it(engine, box):
    rt, img, (spec, _info) = engine.rt, image(), box
    volume = spec.volume_name
    rt.write_file(volume, img, "helper.txt", b"from the volume\n")
    assert rt.run_in_volume(volume, img, ["cat", f"{STATE_DIR}/helper.txt"])[:2] == (
        0,
        b"from the volume\n",
    )
    code, out, _err = rt.run_in_volume(
        volume,
        img,
        ["cat", "/tmp/handed/in.txt", f"{STATE_DIR}/kept.txt"],
        files={"/tmp/handed/in.txt": b"scratch,", "kept.txt": io.BytesIO(b"kept")},
    )
    assert (code, out) == (0, b"scratch,kept")
    assert rt.read_file(volume, img, "kept.txt") == b"kept"  # volume files persist
    assert rt.run_in_volume(volume, img, ["cat", "/tmp/handed/in.txt"])[0] == 1  # scratch not
    assert rt.run_in_volume(volume, img, ["no-such-program-here"])[0] == 127
    with pytest.raises(VolumeNotFound):
        rt.run_in_volume(engine.name("absent"), img, ["true"])
    with pytest.raises(ImageMissing):
        rt.run_in_volume(volume, MISSING_IMAGE, ["true"])


def test_export_and_import_round_trip_and_converge(engine, box):
    rt, img, (spec, _info) = engine.rt, image(), box
    rt.write_file(spec.volume_name, img, "round.txt", b"trip")
    raw = b"".join(rt.export_volume(spec.volume_name, img))
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["./round.txt"].uid == 1000 and members["./round.txt"].mode & 0o777 == 0o600
    copy = engine.name("copy")
    rt.import_volume(copy, img, raw)
    rt.write_file(copy, img, "extra.txt", b"only in the copy")
    rt.import_volume(copy, img, io.BytesIO(raw))  # again: replaces (extra.txt goes), converges
    assert rt.read_file(copy, img, "round.txt") == b"trip"
    assert rt.read_file(copy, img, "extra.txt") is None
    rt.import_volume(copy, img, iter([raw]), clear=False)
    assert rt.read_file(copy, img, "round.txt") == b"trip"
    second = engine.name("copy2")
    rt.copy_volume(copy, second, img)
    assert rt.read_file(second, img, "round.txt") == b"trip"
    for volume in (copy, second):
        rt.remove_volume(volume)
    with pytest.raises(VolumeNotFound):
        rt.export_volume(engine.name("absent"), img)


def test_write_config_merges_owned_paths_converges_and_refuses_an_invalid_file(engine):
    rt, img, volume = engine.rt, image(), engine.name("config")
    rt.ensure_volume(volume, {"clawfleet.contract": engine.prefix})
    params = {
        "gateway_token": SECRET,
        "provider_id": "contract",
        "base_url": "http://127.0.0.1:9/v1",  # never contacted: nothing runs the gateway
        "api_key": "k",
        "model_id": "m",
        "model_name": "M",
        "prices": {"input": 1, "output": 2},
        "context_window": 1000,
        "max_tokens": 100,
    }
    owned = oc.owned_paths("contract")
    desired = oc.build_config(**params)
    assert rt.write_config(volume, img, desired, owned, validate=False) is True
    assert rt.write_config(volume, img, desired, owned, validate=False) is False
    assert json.loads(rt.read_file(volume, img, "openclaw.json")) == desired
    # Someone else changes a path we do not own; we change one we own.
    user = json.loads(rt.read_file(volume, img, "openclaw.json"))
    user["gateway"]["controlUi"] = {"communityInvite": False}  # (allowedOrigins is owned)
    rt.write_file(volume, img, "openclaw.json", json.dumps(user).encode())
    maintenance = {"mode": "enforce", "pruneAfter": "45d", "maxEntries": 4000}
    changed = oc.build_config(**{**params, "session_maintenance": maintenance})
    assert rt.write_config(volume, img, changed, owned, secrets=[SECRET]) is True
    current = json.loads(rt.read_file(volume, img, "openclaw.json"))
    assert current["session"]["maintenance"] == maintenance
    assert current["gateway"]["controlUi"] == {"communityInvite": False}
    # OpenClaw refuses a port that is not a number: the old file stays.
    broken = json.loads(json.dumps(changed))
    broken["gateway"]["port"] = "not-a-port"
    with pytest.raises(ConfigInvalid) as caught:
        rt.write_config(volume, img, broken, owned, secrets=[SECRET])
    assert SECRET not in str(caught.value)
    assert json.loads(rt.read_file(volume, img, "openclaw.json")) == current
    rt.remove_volume(volume)


# --- health -------------------------------------------------------------------------------------


def test_probe_and_wait_ready_report_a_container_that_serves_nothing(engine, box):
    rt = engine.rt
    spec = running(engine, box)
    assert rt.probe(spec.host_port) == {"healthz": False, "readyz": False}
    assert rt.probe(free_port()) == {"healthz": False, "readyz": False}
    with pytest.raises(NotReady, match="not ready after"):
        rt.wait_ready(spec.host_port, 3, name=spec.name, interval=0.5)
    rt.stop(spec.name, timeout=10)
    with pytest.raises(NotReady, match="container stopped") as caught:
        rt.wait_ready(spec.host_port, 60, name=spec.name, interval=0.5)
    assert caught.value.info is not None and not caught.value.info.running
    rt.start(spec.name)


# --- networks -----------------------------------------------------------------------------------


def test_ensure_network_converges_with_inter_container_traffic_off(engine, box):
    rt, (spec, _info) = engine.rt, box
    gateway = rt.ensure_network(spec.network)
    assert rt.ensure_network(spec.network) == gateway == rt.network_gateway(spec.network)
    assert engine.isolated(spec.network)
    with pytest.raises(RuntimeErrorBase):
        rt.network_gateway(engine.name("no-net"))
    rt.remove_network(engine.name("no-net"))


def test_ensure_network_replaces_a_leaky_network_nobody_uses(engine):
    rt, name = engine.rt, engine.name("leaky")
    engine.make_leaky_network(name)
    assert not engine.isolated(name)
    rt.ensure_network(name)
    assert engine.isolated(name)
    rt.remove_network(name)
    rt.remove_network(name)


def test_ensure_network_refuses_a_leaky_network_with_a_running_container(engine, box):
    rt, (box_spec, _info) = engine.rt, box
    name = engine.name("leaky-used")
    engine.make_leaky_network(name)
    occupant = engine.occupy(name, box_spec.volume_name)
    try:
        with pytest.raises(NetworkUnsafe, match=occupant):
            rt.ensure_network(name)
        assert not engine.isolated(name)  # left as it was: the container keeps its network
        assert engine.occupant_running(occupant)
    finally:
        engine.vacate(occupant)
    rt.ensure_network(name)  # nobody on it any more: replaced
    assert engine.isolated(name)
    rt.remove_network(name)


# --- removal (last: the module's container goes) ------------------------------------------------


def test_remove_converges_and_keeps_the_volume(engine, box):
    rt, (spec, _info) = engine.rt, box
    rt.start(spec.name)
    with pytest.raises(RuntimeErrorBase):
        rt.remove(spec.name, force=False)  # running: refused without force
    rt.remove(spec.name)
    rt.remove(spec.name)
    assert rt.inspect(spec.name) is None
    assert spec.name not in [c.name for c in rt.list_managed()]
    assert rt.volume_exists(spec.volume_name)
    rt.remove_volume(spec.volume_name)
    rt.remove_network(spec.network)


# --- Swarm only: what the backend adds on top of the contract (the lab's worker owns them) ------


# A stand-in gateway: answers every path with its name (so /readyz is 200), on the gateway port.
def serving(tag: str) -> list[str]:
    script = f"require('http').createServer((q,r)=>r.end('{tag}')).listen({GATEWAY_PORT})"
    return ["node", "-e", script]


def fetch_from(rt, service: str, url: str) -> str:
    """What a tenant's container gets for ``url``: "OK <body>" or "ERR <code>"."""
    script = (
        f"fetch('{url}',{{signal:AbortSignal.timeout(4000)}}).then(r=>r.text())"
        ".then(t=>console.log('OK '+t),e=>console.log('ERR '+((e.cause&&e.cause.code)||e.name)))"
    )
    return rt.exec(service, ["node", "-e", script], timeout=30)[1].decode().strip()


@pytest.fixture(scope="module")
def swarm(swarm_lab):
    eng = Engine("swarm", SwarmRuntime(swarm_lab.manager_url))
    eng.rt.ensure_network(eng.name("net"))
    try:
        yield eng
    finally:
        eng.cleanup()


def test_a_swarm_gateway_runs_hardened_on_the_node_that_holds_its_volume(swarm):
    rt = swarm.rt
    spec = swarm.spec("hard", volume_name=swarm.name("hard-vol"), env={"GATEWAY_MODE": "lan"})
    assert rt.ensure_volume(spec.volume_name, {MEMORY_LABEL: "256"}) is True
    node = rt.volume_node(spec.volume_name)
    rt.ensure_container(spec)
    rt.write_config(
        spec.volume_name, image(), {"gateway": {"auth": {"token": SECRET}}}, [], validate=False
    )
    rt.start(spec.name)
    service = rt.api.inspect_service(spec.name)
    assert service["Spec"]["TaskTemplate"]["Placement"]["Constraints"] == [f"node.id=={node}"]
    assert service["Spec"]["EndpointSpec"]["Mode"] == "dnsrr"
    (task,) = [t for t in rt.api.tasks(filters={"service": spec.name}) if t["NodeID"] == node]
    container = rt.engine(node).api.inspect_container(
        task["Status"]["ContainerStatus"]["ContainerID"]
    )
    host = container["HostConfig"]
    assert host["ReadonlyRootfs"] and host["Init"] and host["CapDrop"] == ["ALL"]
    assert (host["PidsLimit"], host["Memory"], host["NanoCpus"]) == (64, 256 * 2**20, 500_000_000)
    assert container["Config"]["User"] == "1000:1000"
    assert container["Config"]["Hostname"] == spec.hostname
    assert {m["Destination"] for m in container["Mounts"] if m["Type"] == "tmpfs"} == {
        "/tmp",
        "/home/node/.cache",
    }
    _code, out, _err = rt.exec(
        spec.name, ["sh", "-c", "grep -E '^(NoNewPrivs|CapEff)' /proc/1/status"]
    )
    assert sorted(out.split()) == sorted([b"NoNewPrivs:", b"1", b"CapEff:", b"0" * 16])
    assert rt.exec(spec.name, ["touch", "/etc/x"])[0] != 0  # read-only root
    assert rt.exec(spec.name, ["cat", f"{STATE_DIR}/openclaw.json"])[1].count(SECRET.encode()) == 1
    # The secret is in the volume only: not in the service, the container or its environment.
    assert SECRET not in json.dumps(service) + json.dumps(container)
    assert SECRET.encode() not in rt.exec(spec.name, ["cat", "/proc/1/environ"])[1]
    rt.remove(spec.name)
    rt.remove_volume(spec.volume_name)


def test_a_node_whose_engine_allows_new_privileges_is_refused():
    """The host's own engine runs without --no-new-privileges (scripts/ensure-docker.sh): as a
    swarm node it would be refused, with the fix in the message."""
    from tests.fleet_fixtures import connect_runtime

    host_engine = connect_runtime(settings.FLEET_DOCKER_URL)
    with pytest.raises(NodeUnsafe, match="start its dockerd with --no-new-privileges"):
        require_no_new_privileges(host_engine, "the host")


def test_the_control_plane_reaches_each_swarm_gateway_and_tenants_reach_no_one_else(swarm):
    rt = swarm.rt
    specs = []
    for tag in ("alpha", "bravo"):
        spec = swarm.spec(tag, volume_name=swarm.name(f"{tag}-vol"), command=serving(tag))
        rt.ensure_volume(spec.volume_name, {MEMORY_LABEL: "256"})
        rt.ensure_container(spec)
        rt.start(spec.name)
        specs.append(spec)
    alpha, bravo = specs
    for spec in specs:  # through the instance's reach port on the manager, as probes go
        rt.wait_ready(spec.host_port, 60, name=spec.name)
        assert rt.probe(spec.host_port) == {"healthz": True, "readyz": True}
    nodes = {rt.volume_node(s.volume_name) for s in specs}
    print(f"alpha and bravo on {len(nodes)} node(s)")
    bravo_address = rt.inspect(bravo.name).address
    assert fetch_from(rt, bravo.name, f"http://{bravo_address}:18789/") == "OK bravo"
    # alpha cannot reach bravo: not its task address, not its name, not its reach port.
    assert fetch_from(rt, alpha.name, f"http://{bravo_address}:18789/").startswith("ERR")
    assert fetch_from(rt, alpha.name, f"http://{bravo.name}:18789/").startswith("ERR")
    reach = f"http://{rt.manager_address()}:{bravo.host_port}/"
    assert fetch_from(rt, alpha.name, reach).startswith("ERR")
    assert fetch_from(rt, bravo.name, reach).startswith("ERR")  # its own, too: not from a tenant
    for spec in specs:
        rt.remove(spec.name)
        rt.remove_volume(spec.volume_name)


def test_runtime_for_picks_the_backend_by_the_hosts_kind(settings):
    from instances.models import Host
    from instances.runtime import reset_runtimes, runtime_for

    settings.FLEET_RUNTIME = "instances.runtime.DockerRuntime"
    reset_runtimes()
    try:
        swarm_host = Host(name="s", kind=Host.Kind.SWARM, base_url="unix:///nonexistent/s.sock")
        engine_host = Host(name="d", kind=Host.Kind.DOCKER, base_url="unix:///nonexistent/d.sock")
        assert type(runtime_for(swarm_host)) is SwarmRuntime
        assert type(runtime_for(engine_host)) is DockerRuntime
    finally:
        reset_runtimes()


def test_a_swarm_hosts_nodes_are_mirrored_from_the_real_swarm(swarm, db):
    from instances import services
    from instances.models import Host

    host = Host.objects.create(name="lab", kind=Host.Kind.SWARM, base_url=swarm.rt.base_url)
    rows = services.host_nodes_sync(host=host, nodes=swarm.rt.nodes())
    assert sorted((r.hostname, r.role, r.state) for r in rows) == [
        ("cf-swarm-1", "manager", "ready"),
        ("cf-swarm-2", "worker", "ready"),
        ("cf-swarm-3", "worker", "ready"),
    ]
    assert all(r.engine_url.startswith("unix:///run/clawfleet-swarm/") for r in rows)
    assert all(r.memory_mb > 1024 for r in rows)


def swarm_chat(address: str, instance, text: str) -> str:
    """One turn through the instance's reach port (tests/instances/helpers.chat dials loopback)."""
    import urllib.request

    body = json.dumps({"model": "openclaw", "messages": [{"role": "user", "content": text}]})
    request = urllib.request.Request(
        f"http://{address}:{instance.host_port}/v1/chat/completions",
        data=body.encode(),
        method="POST",
        headers={
            "Authorization": f"Bearer {instance.gateway_token}",
            "Content-Type": "application/json",
            "x-openclaw-session-key": "swarm-1",
        },
    )
    with urllib.request.urlopen(request, timeout=180) as resp:
        return json.loads(resp.read())["choices"][0]["message"]["content"]


def test_a_swarm_gateway_deployed_by_the_handler_chats_and_survives_a_crash_via_reconcile(
    swarm, alice_org, entitled_org, settings
):
    """The real OpenClaw image, deployed by the same handler as on one engine (no edge proxy
    for a swarm yet), answers through its reach port with the mock LLM's reply."""
    from accounts.services import SYSTEM
    from fleet import hooks
    from instances import operations, services
    from instances.models import Host, Instance
    from instances.reconcile import reconcile_host
    from mockllm.server import start_mock_llm
    from tests.fleet_fixtures import MOCK_MODEL
    from tests.instances.helpers import requests_with, wait_until

    rt = swarm.rt
    control = rt.control_address()
    mock = start_mock_llm([control], 0, model_id=MOCK_MODEL)
    mock.keep_bodies = True  # the earlier turns OpenClaw sends back are what the test reads
    settings.FLEET_EGRESS_ALLOW = [*settings.FLEET_EGRESS_ALLOW, f"{control}:{mock.port}"]
    settings.FLEET_EDGE_ADMIN_URL = ""  # the edge proxy does not route to a swarm yet
    settings.FLEET_NETWORK = swarm.name("family")
    entitled_org(alice_org)
    Host.objects.update(is_active=False)  # the swarm takes this deploy
    host = Host.objects.create(name="lab-swarm", kind=Host.Kind.SWARM, base_url=rt.base_url)
    instance = None
    try:
        with hooks.only("instance.ready"), hooks.only("operation.finished"):
            op = services.instance_deploy(
                actor=SYSTEM,
                organization=alice_org,
                name="swarm-bot",
                provider="custom",
                model_name=MOCK_MODEL,
                api_key="",
                model_base_url=mock.url_for(control),
            )
            instance = Instance.objects.get(pk=op.instance_id)
            op = operations.run_operation(op.pk)
        assert op.state == "succeeded", op.error_detail
        instance.refresh_from_db()
        assert (instance.host, instance.status) == (host, "running")
        node = rt.volume_node(instance.volume_name)
        assert (
            rt.api.inspect_service(instance.container_name)["Spec"]["Labels"]["clawfleet.node"]
            == node
        )
        address = rt.manager_address()
        assert swarm_chat(address, instance, "hello swarm") == "Mock reply: hello swarm"
        # The task's container dies (a crash): one reconcile pass starts a new task, on the same
        # node with the same volume, and the same conversation goes on.
        (task,) = rt.api.tasks(filters={"service": instance.container_name})
        rt.engine(node).api.kill(task["Status"]["ContainerStatus"]["ContainerID"])
        wait_until(lambda: not rt.inspect(instance.container_name).running, 60, what="exit")
        reconcile_host(host)
        assert rt.inspect(instance.container_name).running
        (task,) = [
            t
            for t in rt.api.tasks(filters={"service": instance.container_name})
            if t["Status"]["State"] in ("starting", "running")
        ]
        assert task["NodeID"] == node
        rt.wait_ready(instance.host_port, 240, name=instance.container_name)
        assert swarm_chat(address, instance, "still there?") == "Mock reply: still there?"
        (after,) = requests_with(mock, "still there?")
        assert "hello swarm" in str(after["body"]["messages"])
    finally:
        mock.stop()
        if instance is not None:
            rt.remove(instance.container_name)
            rt.remove_volume(instance.volume_name)
        rt.remove_network(settings.FLEET_NETWORK)
