import pytest

from instances.models import Host, Instance
from sessions_mgmt.services import access
from tests.factories import InstanceFactory

from .helpers import FakeOpenClaw, VolumeOpenClaw, offline_sessions_program


@pytest.fixture(autouse=True)
def _backup_dir(settings, tmp_path):
    from sessions_mgmt import backup_store

    settings.FLEET_BACKUP_DIR = str(tmp_path / "backups")
    backup_store.backup_storage.cache_clear()
    yield
    backup_store.backup_storage.cache_clear()


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on a free loopback port, for the whole session (tests/fakes/s3.py)."""
    import logging

    from tests.fakes.s3 import S3Server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture
def s3_store(s3_server, settings, tmp_path):
    """Backups go to a fresh bucket of the loopback S3 server; the local directory is not used
    for storage (only for scratch). The server is running again when the test ends."""
    import uuid

    from sessions_mgmt import backup_store

    if not s3_server.running:
        s3_server.start()
    bucket = s3_server.create_bucket(f"backups-{uuid.uuid4().hex[:12]}")
    for key, value in s3_server.settings_for(bucket).items():
        setattr(settings, key, value)
    settings.FLEET_BACKUP_SCRATCH_DIR = str(tmp_path / "scratch")
    backup_store.backup_storage.cache_clear()
    s3_server.bucket = bucket
    yield s3_server
    if not s3_server.running:
        s3_server.start()
    backup_store.backup_storage.cache_clear()


@pytest.fixture
def host(db):
    return Host.objects.create(name="test-host", base_url="unix:///nonexistent.sock")


def make_instance(org, host, name="assistant", **kwargs):
    """A running instance row (the sessions suite's presets over tests/factories.py), in an
    organization with a plan (restores need one) unless it already has a subscription."""
    from billing.models import Subscription
    from tests.fleet_fixtures import make_entitled

    if not Subscription.objects.filter(organization=org).exists():
        make_entitled(org)
    presets = {
        "host_port": 19500 + Instance.objects.count(),
        "model_name": "mock-model",
        "gateway_token": "t" * 32,
        "health": "unknown",
        "running_since": None,
    }
    return InstanceFactory(organization=org, host=host, name=name, **{**presets, **kwargs})


@pytest.fixture
def alice_instance(alice_org, host):
    return make_instance(alice_org, host)


@pytest.fixture
def charlie_instance(charlie_org, host):
    return make_instance(charlie_org, host, name="charlies")


@pytest.fixture
def fake_openclaw(monkeypatch):
    fakes: dict = {}

    def client_for(instance, **kwargs):
        return fakes.setdefault(instance.pk, FakeOpenClaw())

    monkeypatch.setattr(access, "client_for", client_for)

    def get(instance):
        return client_for(instance)

    return get


@pytest.fixture
def volume_openclaw(fake_runtime, monkeypatch):
    """OpenClaw on the fake runtime: each instance's session store is a file in its volume (a
    backup copies it, a restore brings it back), and `openclaw sessions --json` in a helper
    container lists it. Returns get(instance) -> its VolumeOpenClaw."""
    fakes: dict = {}
    fake_runtime.programs["openclaw"] = offline_sessions_program

    def client_for(instance, **kwargs):
        return fakes.setdefault(instance.pk, VolumeOpenClaw(fake_runtime, instance.volume_name))

    monkeypatch.setattr(access, "client_for", client_for)
    return client_for


@pytest.fixture
def price(db):
    from decimal import Decimal

    from billing.models import ModelPrice

    return ModelPrice.objects.create(
        provider="custom",
        model="mock-model",
        input_per_mtok=Decimal("3"),
        output_per_mtok=Decimal("15"),
        effective_from="2020-01-01",
    )
