"""Discord and Slack in the real image: their plugins sit in OpenClaw's bundled plugin root, so
they load with origin "bundled" (the origin 2026.9.6 trusts at run time: a plugins.load.paths
copy has origin "config" and is refused openKeyedStore, "record-missing"), and the config a
channel writes (channels.<kind> + plugins.entries.<kind>) passes OpenClaw's own validator.

Run in one-off helper containers without any network (runtime.run_in_volume): a configured
Discord or Slack account would otherwise try to reach its provider, and no packet of a test
leaves the machine.
"""

from __future__ import annotations

import json
import uuid

import pytest

from instances import specs
from instances.openclaw import config as oc
from instances.openclaw import files

pytestmark = [pytest.mark.docker, pytest.mark.django_db]

IMAGE_VERSION = "2026.9.6"
BUNDLED_ROOT = "/opt/openclaw/node_modules/openclaw/dist/extensions/"


@pytest.fixture
def volume(docker_runtime, fleet_plane):
    name = f"clawfleet-test-plugins-{uuid.uuid4().hex[:8]}"
    docker_runtime.ensure_volume(name, {specs.PLANE_LABEL: fleet_plane})
    yield name
    docker_runtime.remove_volume(name)


def _json(out: bytes) -> dict:
    text = out.decode()
    return json.loads(text[text.index("{") :])


def test_discord_and_slack_plugins_load_from_the_config_a_channel_writes(
    docker_runtime, openclaw_image, volume
):
    image = openclaw_image[IMAGE_VERSION]
    labels = docker_runtime.api.inspect_image(image)["Config"]["Labels"]
    assert labels.get("clawfleet.channel-plugins") == "discord,slack@bundled", (
        "rebuild the image: images/openclaw/build.sh 2026.9.6"
    )
    config = oc.build_config(
        gateway_token="t" * 32,
        provider_id="custom",
        base_url="http://127.0.0.1:9/v1",
        api_key="x",
        model_id="m",
        model_name="m",
        prices={},
        context_window=1000,
        max_tokens=100,
    )
    discord = oc.build_channel_config(
        "discord", token="MTIz.GhIj.abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH"
    )
    slack = oc.build_channel_config("slack", token="xoxb-1-2-abc", extra_token="xapp-1-A-2-b")
    for part in (discord, slack):
        config = oc.merge_owned(config, part, oc.channel_owned_paths(next(iter(part["channels"]))))
    docker_runtime.write_file(volume, image, files.CONFIG_FILE, files.render(config))

    code, out, err = docker_runtime.run_in_volume(
        volume, image, ["openclaw", "config", "validate", "--json"], timeout=180
    )
    assert code == 0, (out + err).decode()[-2000:]
    code, out, err = docker_runtime.run_in_volume(
        volume, image, ["openclaw", "plugins", "list", "--json"], timeout=180
    )
    assert code == 0, err.decode()[-2000:]
    plugins = {p["id"]: p for p in _json(out)["plugins"]}
    for kind in ("discord", "slack"):
        assert plugins[kind]["status"] == "loaded", plugins[kind]
        assert plugins[kind]["origin"] == "bundled", plugins[kind]
        assert plugins[kind]["source"].startswith(BUNDLED_ROOT + kind), plugins[kind]
