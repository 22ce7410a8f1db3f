"""Fixtures for the real Docker engine, OpenClaw image, mock LLM and Celery worker (a pytest
plugin listed in tests/conftest.py).

Never skipped: a missing engine or image FAILS with the command that fixes it.

Isolation of one test session from anything else on the machine (a `make run`, another test run):
- containers and volumes carry the control plane label of the *test* database
  (instances.specs.plane_id()), so the session cleans up exactly its own objects and the reconcile
  loop of another database never removes them;
- instances join a per-session network (FLEET_NETWORK=clawfleet-test-<tag>), removed at the end;
- the broker keys get a per-session prefix (kombu's global_keyprefix), so another run's worker
  never takes our tasks.

Tests that use the worker must be `@pytest.mark.django_db(transaction=True)`: the worker is
another process and only sees committed rows. pytest-django flushes the tables after each such
test, so share a deployment inside one scenario test, not across tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings

BASE_DIR = Path(__file__).resolve().parent.parent
BROKEN_VERSION = "0.0.0-broken"
TEST_VERSIONS = ("2026.9.5", "2026.9.6", BROKEN_VERSION)
SESSION_TAG = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
TEST_NETWORK = f"clawfleet-test-{SESSION_TAG}"
BROKER_PREFIX = f"clawfleet-test-{SESSION_TAG}:"
MOCK_MODEL = "mock-model"
DEPLOY_TIMEOUT = 420  # a hang guard, not a speed check: a loaded machine boots OpenClaw slowly
OPERATION_TIMEOUT = 420  # generous: other test runs may share the engine and the CPUs

# What this session created on the engine (cleaned up at the end).
_planes: set[str] = set()


# --- engine and image -------------------------------------------------------------------------


def connect_runtime(base_url: str):
    """A DockerRuntime that answers, or pytest.fail with the command that starts an engine."""
    from instances.runtime import DockerRuntime

    rt = DockerRuntime(base_url, timeout=10)
    try:
        rt.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "no engine"
        pytest.fail(
            f"Docker engine not reachable at {base_url}: run `bash scripts/ensure-docker.sh` "
            f"({type(exc).__name__})",
            pytrace=False,
        )
    return rt


def require_images(rt, versions=TEST_VERSIONS) -> dict[str, str]:
    """{version: image ref} for images present on the engine, or pytest.fail naming the fix."""
    images = {v: settings.FLEET_OPENCLAW_IMAGE.format(version=v) for v in versions}
    missing = [v for v, ref in images.items() if not rt.image_exists(ref)]
    if missing:
        refs = ", ".join(images[v] for v in missing)
        flags = " ".join("--broken" if v == BROKEN_VERSION else v for v in missing)
        pytest.fail(
            f"OpenClaw image(s) {refs} absent on {rt.base_url}: run images/openclaw/build.sh "
            f"{flags} (or images/openclaw/build.sh --all)",
            pytrace=False,
        )
    return images


def remove_engine_objects(rt, planes) -> None:
    """Remove every container and volume labelled with one of `planes` (this session's)."""
    from instances import specs

    for plane in planes:
        label = f"{specs.PLANE_LABEL}={plane}"
        for row in rt.api.containers(all=True, filters={"label": label}):
            try:
                rt.api.remove_container(row["Id"], force=True, v=False)
            except Exception:  # noqa: BLE001, S112 - best effort cleanup
                continue
        for vol in (rt.api.volumes(filters={"label": label}) or {}).get("Volumes") or []:
            try:
                rt.api.remove_volume(vol["Name"], force=True)
            except Exception:  # noqa: BLE001, S112
                continue


def remove_stale_test_networks(rt) -> None:
    """Networks of earlier sessions whose pytest process is gone and nothing uses any more
    (a session killed, or an engine restarted under it, cannot clean up after itself)."""
    for net in rt.api.networks(names=["clawfleet-test-"]):
        name = net.get("Name", "")
        try:
            pid = int(name.split("-")[2])
        except (IndexError, ValueError):
            continue
        if pid == os.getpid() or Path(f"/proc/{pid}").exists():
            continue
        with contextlib.suppress(Exception):
            rt.remove_network(name)  # refused while a container is still attached


@pytest.fixture(scope="session")
def fleet_test_settings():
    """Point this process at the session's network and allow the broken test image."""
    saved = settings.FLEET_NETWORK, list(settings.FLEET_OPENCLAW_VERSIONS)
    settings.FLEET_NETWORK = TEST_NETWORK
    settings.FLEET_OPENCLAW_VERSIONS = list(
        dict.fromkeys([*settings.FLEET_OPENCLAW_VERSIONS, *TEST_VERSIONS])
    )
    yield
    settings.FLEET_NETWORK, settings.FLEET_OPENCLAW_VERSIONS = saved


@pytest.fixture(scope="session")
def docker_runtime(fleet_test_settings):
    """The engine at settings.FLEET_DOCKER_URL; fails (never skips) when none answers."""
    rt = connect_runtime(settings.FLEET_DOCKER_URL)
    remove_stale_test_networks(rt)
    rt.ensure_network(TEST_NETWORK)
    yield rt
    remove_engine_objects(rt, _planes)
    # Still in use only if a container another run left behind sits on it.
    with contextlib.suppress(Exception):
        rt.remove_network(TEST_NETWORK)


@pytest.fixture(scope="session")
def openclaw_image(docker_runtime):
    """{version: image} for 2026.9.5, 2026.9.6 and the broken test image; fails when absent."""
    return require_images(docker_runtime)


@pytest.fixture
def fleet_plane(db):
    """This test database's plane id (labels on every engine object it creates)."""
    from instances import specs

    plane = specs.plane_id()
    _planes.add(plane)
    return plane


# --- mock LLM -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mock_llm(docker_runtime):
    """The mock LLM on 127.0.0.1 (tests), the test network's gateway and the default bridge's
    gateway (what host.docker.internal → host-gateway resolves to in a container).

    `mock_llm.container_url` is the base URL an instance config uses."""
    from mockllm.server import start_mock_llm

    hosts = ["127.0.0.1", docker_runtime.network_gateway(TEST_NETWORK)]
    try:
        bridge = docker_runtime.network_gateway("bridge")
    except Exception:  # noqa: BLE001 - no default bridge on this engine
        bridge = None
    if bridge and bridge not in hosts:
        hosts.append(bridge)
    mock = start_mock_llm(hosts, 0, model_id=MOCK_MODEL)
    mock.keep_bodies = True  # tests read the history OpenClaw sends (no key: headers dropped)
    mock.container_url = (
        f"http://host.docker.internal:{mock.port}/v1" if bridge else mock.url_for(hosts[1])
    )
    # The mock LLM is the one endpoint on this machine the tests' instances may reach: allowed
    # by the egress policy (deploy validation and the firewall), and every Docker test runs
    # behind the firewall on the test network.
    from instances import egress

    settings.FLEET_EGRESS_ALLOW = [*settings.FLEET_EGRESS_ALLOW, *egress.mock_llm_allow(mock.port)]
    egress.install(TEST_NETWORK, runtime=docker_runtime)
    yield mock
    mock.stop()
    with contextlib.suppress(Exception):
        egress.remove(TEST_NETWORK, runtime=docker_runtime)


# --- Celery worker ------------------------------------------------------------------------------


def _database_url(settings_dict: dict) -> str:
    user = settings_dict.get("USER") or ""
    password = settings_dict.get("PASSWORD") or ""
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or "5432"
    return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"


class WorkerProcess:
    """A real `celery -A fleet worker` subprocess (its own process group)."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, *, visibility_timeout: float | None = None, timeout: float = 60):
        env = dict(self.env)
        options = json.loads(env["CELERY_BROKER_TRANSPORT_OPTIONS"])
        if visibility_timeout is not None:
            # Redelivery of a dead worker's unacked task: restored at start-up once it is older
            # than the visibility timeout, and swept every few seconds afterwards.
            options.update(
                visibility_timeout=visibility_timeout,
                unacked_restore_interval=2,
                unacked_restore_throttle=1,
            )
        env["CELERY_BROKER_TRANSPORT_OPTIONS"] = json.dumps(options)
        self.starts += 1
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        log.write(f"\n--- worker start {self.starts} ---\n".encode())
        log.flush()
        offset = self.log_path.stat().st_size
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "fleet",
                "worker",
                "-Q",
                "operations,maintenance,billing",
                "--concurrency",
                "2",
                "-P",
                "prefork",
                "-l",
                "INFO",
                "-n",
                f"test-{SESSION_TAG}-{self.starts}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"celery worker exited at start; see {self.log_path}", pytrace=False)
            with open(self.log_path, "rb") as fh:
                fh.seek(offset)
                if b" ready." in fh.read():
                    return self
            time.sleep(0.3)
        pytest.fail(f"celery worker not ready after {timeout}s; see {self.log_path}")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL the whole worker (main process and its prefork children)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def restart(self, **env: str) -> None:
        """Stop, then start with these variables added to the environment (a fixture that
        brings up a peer the worker must know about)."""
        self.env.update(env)
        self.stop()
        self.start()

    def stop(self) -> None:
        if not self.alive:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.kill9()


def _configure_producer(options: dict) -> None:
    """This process publishes with the same broker options as the worker consumes."""
    from fleet.celery import app

    app.conf.broker_transport_options = options
    pool = app._pool
    if pool is not None:
        pool.force_close_all()
        app._pool = None
    # The producer pool wraps the connection pool closed above: drop it too, or the next
    # publish fails with "Acquire on closed pool".
    app.amqp._producer_pool = None


@pytest.fixture(scope="session")
def celery_worker_process(
    django_db_setup, django_db_blocker, docker_runtime, mock_llm, edge_proxy, tmp_path_factory
):
    """A real worker on the operations, maintenance and billing queues, against the test
    database and a per-session broker prefix, writing routes into the session's edge proxy
    (tests/edge/proxy.py: its settings are in os.environ). `.kill9()` and `.start()` for the
    crash test. It is the session's only worker: a second one on the same queues would take
    tasks meant for this one; fixtures that need other settings in it call `.restart(**env)`."""
    from django.db import connection

    from instances import specs

    with django_db_blocker.unblock():
        _planes.add(specs.plane_id())
    options = {"visibility_timeout": 3600, "global_keyprefix": BROKER_PREFIX}
    _configure_producer(options)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "fleet.settings",
        "DATABASE_URL": _database_url(connection.settings_dict),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_BROKER_TRANSPORT_OPTIONS": json.dumps(options),
        "CACHE_URL": settings.CACHES["default"]["LOCATION"],
        "FIELD_ENCRYPTION_KEYS": ",".join(settings.FIELD_ENCRYPTION_KEYS),
        "BACKUP_ENCRYPTION_KEY": ",".join(settings.BACKUP_ENCRYPTION_KEYS),
        "SECRET_KEY": settings.SECRET_KEY,
        "FLEET_NETWORK": TEST_NETWORK,
        "FLEET_DOCKER_URL": settings.FLEET_DOCKER_URL,
        "FLEET_OPENCLAW_VERSIONS": ",".join(settings.FLEET_OPENCLAW_VERSIONS),
        "FLEET_EGRESS_ALLOW": ",".join(settings.FLEET_EGRESS_ALLOW),
        # A shared 2-core machine under load boots a gateway in 15 s or in 100 s: be patient.
        "FLEET_READY_TIMEOUT": str(max(settings.FLEET_READY_TIMEOUT, 300)),
        # Webhook deliveries (tests/notifications): the receivers listen on loopback, and
        # "500 three times, then 200" takes seconds with a 0.5 s back-off base.
        "WEBHOOK_ALLOW_LOOPBACK": "true",
        "WEBHOOK_RETRY_BASE_SECONDS": "0.5",
        "PYTHONUNBUFFERED": "1",
    }
    log_path = tmp_path_factory.mktemp("worker") / "celery-worker.log"
    worker = WorkerProcess(env, log_path)
    worker.start()
    yield worker
    worker.stop()


# --- organizations with a plan ------------------------------------------------------------------


def make_entitled(org, **plan_fields):
    """Give `org` a comped subscription on a plan (defaults: 5 instances, 2 GB, 2 CPUs)."""
    from billing.models import Plan, Subscription

    slug = plan_fields.pop("slug", f"test-{uuid.uuid4().hex[:8]}")
    defaults = {
        "name": "Test plan",
        "monthly_price_cents": 2900,
        "max_instances": 5,
        "max_memory_mb": 2048,
        "max_cpus": Decimal("2"),
    }
    plan = Plan.objects.create(slug=slug, **{**defaults, **plan_fields})
    Subscription.objects.update_or_create(
        organization=org, defaults={"plan": plan, "status": Subscription.Status.COMPED}
    )
    return plan


@pytest.fixture
def entitled_org(db):
    """entitled_org(org, **plan_fields) -> Plan (a comped subscription)."""
    return make_entitled


@pytest.fixture
def mock_prices(db):
    """Our price for the mock model, so OpenClaw's cost estimate is deterministic."""
    from billing.models import ModelPrice

    return ModelPrice.objects.create(
        provider="custom",
        model=MOCK_MODEL,
        input_per_mtok=Decimal("3"),
        output_per_mtok=Decimal("15"),
        effective_from="2020-01-01",
    )


# --- deploy and wait ----------------------------------------------------------------------------


def wait_for_operation(op, timeout: float = DEPLOY_TIMEOUT, worker: WorkerProcess | None = None):
    """Poll the database until the operation is no longer queued/running; returns it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        op.refresh_from_db()
        if not op.is_active:
            return op
        if worker is not None and not worker.alive:
            raise AssertionError(f"the worker died while {op} ran; see {worker.log_path}")
        time.sleep(0.5)
    raise AssertionError(f"{op} still {op.state} after {timeout}s; steps: {op.steps}")


def deploy_and_wait(
    org,
    *,
    name: str,
    base_url: str,
    version: str | None = None,
    timeout: float = DEPLOY_TIMEOUT,
    expect: str = "succeeded",
    **kwargs,
):
    """instance_deploy through the service (a custom provider on the mock LLM by default) and
    wait for the operation. Returns (instance, operation)."""
    from accounts.services import SYSTEM
    from instances import services, specs

    _planes.add(specs.plane_id())
    fields = {
        "provider": "custom",
        "model_name": MOCK_MODEL,
        "api_key": "",
        "model_base_url": base_url,
        **kwargs,
    }
    op = services.instance_deploy(
        actor=SYSTEM, organization=org, name=name, openclaw_version=version, **fields
    )
    op = wait_for_operation(op, timeout)
    if expect and op.state != expect:
        raise AssertionError(
            f"deploy of {name} {op.state}: {op.error} / {op.error_detail}; steps {op.steps}"
        )
    instance = op.instance
    instance.refresh_from_db()
    return instance, op
