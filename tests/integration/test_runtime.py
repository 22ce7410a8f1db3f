"""DockerRuntime (instances/runtime/) and the OpenClaw scripts composed on it
(instances/openclaw/) against the REAL Docker engine and the real OpenClaw image.

No Django and no database: the runtime, the config builder and the mock LLM are Django-free.
One gateway container is shared by the whole module (a boot costs ~15-20 s, more on a busy host).
A missing engine or image FAILS with the command that fixes it; nothing here is ever skipped.

Engine: FLEET_DOCKER_URL (default unix:///var/run/docker.sock).
Image: FLEET_TEST_OPENCLAW_IMAGE (default clawfleet/openclaw:2026.9.6; build it with
images/openclaw/build.sh --all).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
import uuid

import pytest
import requests

from instances.openclaw import backup as oc_backup
from instances.openclaw import config as oc
from instances.openclaw import files as oc_files
from instances.openclaw.client import extract_json
from instances.runtime import (
    ContainerNotFound,
    ContainerSpec,
    DockerRuntime,
    ImageMissing,
    NotReady,
    RuntimeErrorBase,
    free_port,
    probe,
)
from mockllm import start_mock_llm

pytestmark = [pytest.mark.docker]

ENGINE = os.environ.get("FLEET_DOCKER_URL", "unix:///var/run/docker.sock")
IMAGE = os.environ.get("FLEET_TEST_OPENCLAW_IMAGE", "clawfleet/openclaw:2026.9.6")
BROKEN_IMAGE = "clawfleet/openclaw:0.0.0-broken"
PROVIDER = "clawfleet"
MODEL = "mock-model"
API_KEY = "sk-mock-" + uuid.uuid4().hex
READY_TIMEOUT = 240


def _engine_or_fail() -> DockerRuntime:
    rt = DockerRuntime(ENGINE)
    try:
        rt.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means: no engine
        pytest.fail(
            f"No Docker engine at {ENGINE} ({exc}). Run scripts/ensure-docker.sh "
            "(or set FLEET_DOCKER_URL).",
            pytrace=False,
        )
    return rt


def _image_or_fail(rt: DockerRuntime, ref: str) -> None:
    try:
        rt.ensure_image(ref)
    except ImageMissing as exc:
        pytest.fail(f"{exc} (images/openclaw/build.sh --all builds every test image)", False)


class Deployment:
    """What the module fixture deployed (and must clean up)."""

    def __init__(self, rt: DockerRuntime):
        self.rt = rt
        self.tag = uuid.uuid4().hex[:8]
        self.network = f"cf-rt-test-{self.tag}"
        self.volume = f"cf-rt-test-{self.tag}-state"
        self.name = f"cf-rt-test-{self.tag}"
        self.hostname = f"oc-rt-{self.tag}"
        self.token = "gw-" + uuid.uuid4().hex + uuid.uuid4().hex
        self.port = free_port()
        self.extra_containers: list[str] = []
        self.extra_volumes: list[str] = []
        self.mock = None
        self.gateway_ip = ""

    def desired_config(self, **overrides) -> dict:
        params = {
            "gateway_token": self.token,
            "provider_id": PROVIDER,
            "base_url": self.mock.url_for(self.gateway_ip),
            "api_key": API_KEY,
            "model_id": MODEL,
            "model_name": "Mock model",
            "prices": {"input": 3, "output": 15, "cacheRead": 0.3, "cacheWrite": 3.75},
            "context_window": 128000,
            "max_tokens": 4096,
            "session_maintenance": None,
        }
        params.update(overrides)
        return oc.build_config(**params)

    def spec(self, **overrides) -> ContainerSpec:
        fields = {
            "name": self.name,
            "hostname": self.hostname,
            "image": IMAGE,
            "volume_name": self.volume,
            "host_port": self.port,
            "memory_mb": 2048,
            "cpus": 2.0,
            "pids_limit": 512,
            "labels": {"clawfleet.test": self.tag},
            "env": {"CLAWFLEET_INSTANCE": self.tag},
            "network": self.network,
        }
        fields.update(overrides)
        return ContainerSpec(**fields)

    def chat(self, text: str, session_key: str, token: str | None = None) -> requests.Response:
        return requests.post(
            f"http://127.0.0.1:{self.port}/v1/chat/completions",
            headers={
                "Authorization": f"Bearer {token or self.token}",
                "x-openclaw-session-key": session_key,
            },
            json={"model": "openclaw", "messages": [{"role": "user", "content": text}]},
            timeout=180,
        )

    def openclaw_json(self, *args: str, timeout: float = 90):
        """`openclaw ... --json` inside the gateway container, as uid 1000."""
        code, out, err = self.rt.exec(self.name, ["openclaw", *args, "--json"], timeout=timeout)
        if code != 0:
            detail = (err or out).decode(errors="replace")[-800:]
            raise RuntimeErrorBase(f"openclaw {' '.join(args)} exited {code}: {detail}")
        return extract_json(out)

    def gateway_call(self, method: str, params: dict | None = None, timeout: float = 60):
        """`openclaw gateway call METHOD --params JSON --json` (the CLI's own timeout is 10 s
        by default: too short on a busy host)."""
        return self.openclaw_json(
            "gateway",
            "call",
            method,
            "--params",
            json.dumps(params or {}),
            "--timeout",
            str(int(timeout * 1000)),
            timeout=timeout + 30,
        )

    def cleanup(self) -> None:
        for name in [self.name, *self.extra_containers]:
            self.rt.remove(name)
        for volume in [self.volume, *self.extra_volumes]:
            self.rt.remove_volume(volume)
        self.rt.remove_network(self.network)
        if self.mock is not None:
            self.mock.stop()


@pytest.fixture(scope="module")
def dep():
    rt = _engine_or_fail()
    _image_or_fail(rt, IMAGE)
    d = Deployment(rt)
    try:
        d.gateway_ip = rt.ensure_network(d.network)
        # The mock listens on the network's gateway (reachable from the container) and loopback.
        d.mock = start_mock_llm(["127.0.0.1", d.gateway_ip], 0, model_id=MODEL)
        assert rt.ensure_volume(d.volume, {"clawfleet.test": d.tag}) is True
        assert rt.ensure_volume(d.volume, {"clawfleet.test": d.tag}) is False
        assert rt.write_config(
            d.volume, IMAGE, d.desired_config(), oc.owned_paths(PROVIDER), secrets=[d.token]
        )
        first = rt.ensure_container(d.spec())
        again = rt.ensure_container(d.spec())
        assert first.id == again.id and first.matches(d.spec())
        started = time.monotonic()
        rt.start(d.name)
        rt.start(d.name)  # converges
        d.first_boot_seconds = rt.wait_ready(d.port, READY_TIMEOUT, name=d.name)
        d.first_boot_total = time.monotonic() - started
        print(f"\nfirst boot: ready after {d.first_boot_total:.1f}s")
        yield d
    finally:
        d.cleanup()


# --- pure parts (no engine needed, but cheap enough to live here) ----------------------------


def test_merge_owned_sets_only_owned_paths():
    desired = oc.build_config(
        gateway_token="t" * 32,
        provider_id="p1",
        base_url="http://127.0.0.1:9/v1",  # never contacted; on this machine anyway
        api_key="k",
        model_id="m",
        model_name="M",
        prices={"input": 1, "output": 2},
        context_window=1000,
        max_tokens=100,
    )
    existing = {
        "gateway": {"auth": {"token": "old", "mode": "token"}, "controlUi": {"x": 1}},
        "models": {"providers": {"user": {"baseUrl": "u"}, "p1": {"stale": True}}},
        "agents": {"defaults": {"model": {"primary": "user/x", "fallbacks": ["a/b"]}}},
        "session": {"maintenance": {"pruneAfter": "1d"}, "dmScope": "main"},
        "custom": [1, 2],
    }
    merged = oc.merge_owned(existing, desired, oc.owned_paths("p1"))
    assert merged["gateway"]["auth"]["token"] == "t" * 32
    assert merged["gateway"]["controlUi"] == {"x": 1}
    assert merged["models"]["providers"]["user"] == {"baseUrl": "u"}
    assert merged["models"]["providers"]["p1"] == desired["models"]["providers"]["p1"]
    assert merged["agents"]["defaults"]["model"] == {"primary": "p1/m", "fallbacks": ["a/b"]}
    assert merged["session"]["dmScope"] == "main"
    assert merged["session"]["maintenance"] == oc.DEFAULT_SESSION_MAINTENANCE
    assert merged["custom"] == [1, 2]
    assert existing["gateway"]["auth"]["token"] == "old"  # input untouched
    assert oc.merge_owned(merged, desired, oc.owned_paths("p1")) == merged


def test_spec_refuses_secrets_in_env():
    spec = ContainerSpec(
        name="x", hostname="x", image=IMAGE, volume_name="v", host_port=1, env={"MY_API_KEY": "s"}
    )
    with pytest.raises(ValueError, match="secrets must not go in container env"):
        spec.validate()


# --- the real engine -------------------------------------------------------------------------


def test_hardened_profile_and_no_secret_in_inspect(dep):
    raw = dep.rt.api.inspect_container(dep.name)
    host = raw["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd")
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["Init"] is True
    assert host["PidsLimit"] == 512
    assert host["NanoCpus"] == 2_000_000_000
    assert host["Memory"] == host["MemorySwap"] == 2048 * 1024 * 1024
    assert host["RestartPolicy"]["Name"] == "no"
    assert host["PortBindings"] == {
        "18789/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(dep.port)}]
    }
    assert set(host["Tmpfs"]) == {"/tmp", "/home/node/.cache"}
    assert host["ExtraHosts"] == ["host.docker.internal:host-gateway"]
    assert host["NetworkMode"] == dep.network
    assert raw["Config"]["User"] == "1000:1000"
    assert raw["Config"]["Hostname"] == dep.hostname
    env = dict(e.split("=", 1) for e in raw["Config"]["Env"])
    assert env["OPENCLAW_NO_RESPAWN"] == "1"
    assert env["TMPDIR"].startswith("/home/node/.openclaw/")
    assert env["NODE_COMPILE_CACHE"].startswith("/home/node/.cache/")
    dumped = json.dumps(raw)
    assert dep.token not in dumped
    assert API_KEY not in dumped
    net = dep.rt.api.inspect_network(dep.network)
    assert net["Options"]["com.docker.network.bridge.enable_icc"] == "false"
    assert net["Labels"]["clawfleet.managed"] == "true"
    # Secrets are in the volume's config file only: uid 1000, mode 600.
    code, out, _ = dep.rt.run_in_volume(
        dep.volume, IMAGE, ["stat", "-c", "%u:%g %a", "/home/node/.openclaw/openclaw.json"]
    )
    assert code == 0 and out.decode().strip() == "1000:1000 600"
    # ... and never in the logs.
    assert dep.token not in dep.rt.logs_tail(dep.name, 2000)


def test_chat_through_the_gateway_reaches_the_mock(dep):
    dep.mock.clear()
    resp = dep.chat("hello from the runtime test", "rt-one")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["choices"][0]["message"]["content"] == "Mock reply: hello from the runtime test"
    calls = dep.mock.requests()
    assert calls and calls[-1]["last_user_message"] == "hello from the runtime test"
    assert calls[-1]["stream"] is True and calls[-1]["include_usage"] is True
    assert calls[-1]["model"] == MODEL
    assert calls[-1]["client"] != "127.0.0.1"  # came over the docker network
    # The provider received our API key (the mock keeps only a hash prefix).
    assert calls[-1]["auth_sha256"] == hashlib.sha256(API_KEY.encode()).hexdigest()[:12]
    # OpenClaw passes the usage through (needs compat.supportsUsageInStreaming, see config).
    assert body["usage"]["prompt_tokens"] == calls[-1]["prompt_tokens"]

    wrong = dep.chat("should not pass", "rt-one", token="not-the-token-" + "x" * 20)
    assert wrong.status_code == 401


def test_probe_and_wait_ready_when_up(dep):
    assert dep.rt.probe(dep.port) == {"healthz": True, "readyz": True}
    assert dep.rt.wait_ready(dep.port, 5) < 5
    assert probe(free_port()) == {"healthz": False, "readyz": False}


def test_exec_runs_as_node_and_reports_exit_codes(dep):
    code, out, err = dep.rt.exec(dep.name, ["id", "-u"])
    assert (code, out.strip()) == (0, b"1000")
    code, _out, _err = dep.rt.exec(dep.name, ["sh", "-c", "exit 3"])
    assert code == 3
    code, _out, _err = dep.rt.exec(dep.name, ["sleep", "10"], timeout=1)
    assert code == 124  # coreutils timeout
    with pytest.raises(ContainerNotFound):
        dep.rt.exec("cf-rt-test-absent-" + dep.tag, ["true"])


def test_write_config_merges_and_keeps_user_changes(dep):
    rt = dep.rt
    # A user (or the agent) changes something we do not own, through OpenClaw's own CLI
    # (gateway.controlUi.allowedOrigins is owned since the edge proxy: docs/edge.md).
    code, out, err = rt.exec(
        dep.name,
        ["openclaw", "config", "set", "gateway.controlUi.communityInvite", "false"],
        timeout=90,
    )
    assert code == 0, (out + err).decode(errors="replace")[-800:]
    # We change an owned path: session maintenance.
    maintenance = {"mode": "enforce", "pruneAfter": "45d", "maxEntries": 4000}
    desired = dep.desired_config(session_maintenance=maintenance)
    owned = oc.owned_paths(PROVIDER)
    assert rt.write_config(dep.volume, IMAGE, desired, owned, secrets=[dep.token]) is True
    assert rt.write_config(dep.volume, IMAGE, desired, owned) is False  # converged
    current = json.loads(rt.read_file(dep.volume, IMAGE, "openclaw.json"))
    assert current["session"]["maintenance"] == maintenance
    assert current["gateway"]["controlUi"]["communityInvite"] is False
    assert current["gateway"]["auth"] == {"mode": "token", "token": dep.token}
    assert rt.read_file(dep.volume, IMAGE, "no/such/file") is None
    # JSON5 (comments, unquoted keys, trailing commas) is parsed with the image's own json5.
    rt.run_in_volume(
        dep.volume,
        IMAGE,
        ["sh", "-c", "printf '{a: 1, // c\\n b: [2,],}' > /home/node/.openclaw/tmp/t.json5"],
    )
    assert oc_files.parse_json5(rt, dep.volume, IMAGE, "tmp/t.json5") == {"a": 1, "b": [2]}
    # The running gateway hot-reloads the file and stays ready.
    time.sleep(2)
    assert dep.rt.probe(dep.port)["readyz"]
    assert dep.chat("still there", "rt-one").status_code == 200


def test_list_managed_is_one_api_call(dep):
    api = dep.rt.api
    calls = []
    original = api._get

    def counting_get(*args, **kwargs):
        calls.append(args[0] if args else kwargs.get("url"))
        return original(*args, **kwargs)

    api._get = counting_get
    try:
        managed = dep.rt.list_managed()
    finally:
        api._get = original
    assert len(calls) == 1, calls
    mine = [c for c in managed if c.labels.get("clawfleet.test") == dep.tag]
    assert len(mine) == 1
    info = mine[0]
    assert info.name == dep.name and info.running and info.host_port == dep.port
    assert info.image == IMAGE and info.spec_hash == dep.spec().spec_hash()


def test_restart_continues_the_session_and_usage_adds_up(dep):
    rt = dep.rt
    before = dep.gateway_call("chat.history", _params("rt-one"))
    started = time.monotonic()
    rt.restart(dep.name, timeout=30)
    rt.wait_ready(dep.port, READY_TIMEOUT, name=dep.name)
    print(f"\nrestart: ready after {time.monotonic() - started:.1f}s")
    resp = dep.chat("after the restart", "rt-one")
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == "Mock reply: after the restart"

    after = dep.gateway_call("chat.history", _params("rt-one"))
    assert after["sessionId"] == before["sessionId"]  # the same transcript, continued
    users = [m["content"] for m in after["messages"] if m["role"] == "user"]
    assert users[0] == "hello from the runtime test" and users[-1] == "after the restart"
    assert after["totalMessages"] == before["totalMessages"] + 2

    listed = dep.gateway_call("sessions.list")
    assert "agent:main:rt-one" in [s["key"] for s in listed["sessions"]]

    # sessions.usage answers from a cache that may be stale right after activity: ask again.
    deadline = time.monotonic() + 120
    while True:
        try:
            usage = dep.gateway_call("sessions.usage", {})
        except RuntimeErrorBase:
            if time.monotonic() > deadline:
                raise
            usage = None
        if usage and (usage["cacheStatus"]["status"] == "fresh" or time.monotonic() > deadline):
            break
        time.sleep(2)
    row = next(s for s in usage["sessions"] if s["key"] == "agent:main:rt-one")
    prompt = sum(c["prompt_tokens"] for c in dep.mock.requests() if c["status"] == 200)
    assert row["usage"]["input"] == prompt
    assert row["usage"]["inputCost"] == pytest.approx(prompt * 3 / 1_000_000)


def test_openclaw_backup_restores_into_a_fresh_volume(dep):
    rt = dep.rt
    archive = "/tmp/cf-rt-test-backup.tar.gz"
    rt.exec(dep.name, ["rm", "-f", archive])
    meta = dep.openclaw_json("backup", "create", "--verify", "--output", archive, timeout=180)
    assert meta["verified"] is True and meta["archivePath"] == archive
    data = b"".join(rt.exec_stream(dep.name, ["cat", archive]))
    rt.exec(dep.name, ["rm", "-f", archive])
    assert data[:2] == b"\x1f\x8b"  # gzip
    restored = f"{dep.volume}-restored"
    dep.extra_volumes.append(restored)
    result = oc_backup.restore_backup(rt, restored, IMAGE, data)
    assert result["ok"] is True
    code, out, err = rt.run_in_volume(restored, IMAGE, ["openclaw", "sessions", "--json"])
    assert code == 0, err[-500:]
    assert "agent:main:rt-one" in [s["key"] for s in json.loads(out)["sessions"]]


def test_crashing_image_is_detected_fast(dep):
    rt = dep.rt
    _image_or_fail(rt, BROKEN_IMAGE)
    name, volume = f"{dep.name}-broken", f"{dep.volume}-broken"
    dep.extra_containers.append(name)
    dep.extra_volumes.append(volume)
    rt.ensure_volume(volume, {"clawfleet.test": dep.tag})
    port = free_port()
    rt.ensure_container(
        dep.spec(
            name=name,
            hostname=f"{dep.hostname}-b",
            image=BROKEN_IMAGE,
            volume_name=volume,
            host_port=port,
        )
    )
    rt.start(name)
    started = time.monotonic()
    with pytest.raises(NotReady) as caught:
        rt.wait_ready(port, 120, name=name)
    assert time.monotonic() - started < 30
    info = caught.value.info
    assert info is not None and not info.running and info.exit_code == 1
    assert "exiting 1" in caught.value.logs
    rt.remove(name)
    rt.remove(name)


def test_stop_export_import_remove_converge(dep):
    rt = dep.rt
    rt.stop(dep.name, timeout=30)
    rt.stop(dep.name, timeout=30)
    info = rt.inspect(dep.name)
    assert info.status == "exited" and not info.running and info.exit_code == 0
    assert info.oom_killed is False

    raw = b"".join(rt.export_volume(dep.volume, IMAGE))
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["./openclaw.json"].uid == 1000
    assert any(n.startswith("./agents/main/agent/openclaw-agent.sqlite") for n in members)

    copy = f"{dep.volume}-copy"
    dep.extra_volumes.append(copy)
    rt.import_volume(copy, IMAGE, raw)
    rt.import_volume(copy, IMAGE, io.BytesIO(raw))  # again: replaces, converges
    assert rt.read_file(copy, IMAGE, "openclaw.json") == rt.read_file(
        dep.volume, IMAGE, "openclaw.json"
    )
    code, out, err = rt.run_in_volume(copy, IMAGE, ["openclaw", "sessions", "--json"])
    assert code == 0, err[-500:]
    assert "agent:main:rt-one" in [s["key"] for s in json.loads(out)["sessions"]]
    copy2 = f"{dep.volume}-copy2"
    dep.extra_volumes.append(copy2)
    rt.copy_volume(copy, copy2, IMAGE)
    assert rt.read_file(copy2, IMAGE, "openclaw.json") == rt.read_file(copy, IMAGE, "openclaw.json")

    rt.remove(dep.name)
    rt.remove(dep.name)
    assert rt.inspect(dep.name) is None
    assert dep.tag not in [c.labels.get("clawfleet.test") for c in rt.list_managed()]
    for volume in (copy, copy2):
        rt.remove_volume(volume)
        rt.remove_volume(volume)
        assert not rt.volume_exists(volume)
    # No helper container was left behind.
    leftovers = rt.api.containers(all=True, filters={"label": "clawfleet.helper=true"})
    assert not [c for c in leftovers if dep.volume in c["Labels"].get("clawfleet.volume", "")]


def _params(session_key: str) -> dict:
    return {"sessionKey": f"agent:main:{session_key}", "limit": 50}
