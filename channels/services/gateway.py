"""Channel config into a running gateway through OpenClaw's config RPCs (no restart).

`config.get` gives the current hash; `config.patch` sends a JSON merge patch of the channel's
owned paths (instances.openclaw.config.channel_owned_paths) with that `baseHash`; OpenClaw
validates it, writes openclaw.json and hot-reloads `channels.<kind>` (only that channel
restarts). Removal patches the section to null. OpenClaw keeps the previous file as
openclaw.json.bak (with the removed token in it): we delete those copies after a removal, so no
secret of a removed channel stays in the volume.

A stopped instance is not touched: `instance.ready` applies its channels when it runs again.
The token travels in the `--params` argument of `openclaw gateway call` inside the tenant's
own container (the file is the only place it is written); errors never carry the output.
"""

from __future__ import annotations

import json
import logging

from django.conf import settings

from instances.openclaw import config as oc
from instances.openclaw.client import DROP_CONFIG_BACKUPS, OpenClawClient

from ..models import Channel

log = logging.getLogger(__name__)
PATCH_TIMEOUT = 90


def client_for(instance, timeout: int = PATCH_TIMEOUT) -> OpenClawClient:
    return OpenClawClient.for_instance(instance, timeout=timeout)


def desired_config(channel: Channel) -> dict:
    api_root = settings.FLEET_TELEGRAM_INSTANCE_API_ROOT if channel.kind == "telegram" else ""
    return oc.build_channel_config(
        channel.kind,
        token=channel.secret,
        extra_token=channel.secret_extra,
        dm_policy=channel.dm_policy,
        allow_from=list(channel.allow_from or []),
        api_root=api_root,
    )


def _patch(client: OpenClawClient, patch: dict, replace_paths: list[str]) -> list[str]:
    current = client.call("config.get", {})
    params = {"raw": json.dumps(patch), "baseHash": current.get("hash") or "", "note": "clawfleet"}
    if replace_paths:
        params["replacePaths"] = replace_paths
    answer = client.call("config.patch", params, retries=1)
    return list(answer.get("changedPaths") or [])


def apply(channel: Channel, client: OpenClawClient | None = None) -> list[str]:
    """Set the channel's owned paths in the running gateway. Returns OpenClaw's changedPaths.

    The whole section is replaced (null first for keys we no longer want, e.g. an allowlist
    dropped), so what runs is exactly desired_config(channel)."""
    client = client or client_for(channel.instance)
    desired = desired_config(channel)
    section = desired["channels"][channel.kind]
    current = client.call("config.get", {})
    existing = oc.get_path(current.get("config") or {}, f"channels.{channel.kind}") or {}
    patch_section = {key: None for key in existing if key not in section}
    patch_section.update(section)
    patch = {"channels": {channel.kind: patch_section}, "plugins": dict(desired["plugins"])}
    replace = oc.channel_array_paths(channel.kind)
    paths = _without_legacy_plugin_dir(current, channel.kind)
    if paths is not None:
        patch["plugins"]["load"] = {"paths": paths}
        replace.append(oc.PLUGIN_LOAD_PATHS)
    params = {"raw": json.dumps(patch), "baseHash": current.get("hash") or "", "note": "clawfleet"}
    params["replacePaths"] = replace
    answer = client.call("config.patch", params, retries=1)
    return list(answer.get("changedPaths") or [])


def remove(channel: Channel, client: OpenClawClient | None = None) -> list[str]:
    """Take the channel's owned paths out of the running gateway and its backup copies."""
    client = client or client_for(channel.instance)
    patch: dict = {}
    for path in oc.channel_owned_paths(channel.kind):
        oc.set_path(patch, path, None)
    replace = oc.channel_array_paths(channel.kind)
    if channel.kind in oc.CHANNEL_PLUGIN_DIRS:
        paths = _without_legacy_plugin_dir(client.call("config.get", {}), channel.kind)
        if paths is not None:
            oc.set_path(patch, oc.PLUGIN_LOAD_PATHS, paths)
            replace.append(oc.PLUGIN_LOAD_PATHS)
    changed = _patch(client, patch, replace)
    drop_backup_copies(client)
    return changed


def _without_legacy_plugin_dir(current: dict, kind: str) -> list[str] | None:
    """plugins.load.paths without the entry an earlier release added for this channel's plugin
    (None when it is not there). The image now ships Discord and Slack in OpenClaw's bundled
    root (origin "bundled", trusted); a load-path copy has origin "config", which 2026.9.6
    refuses at run time, so the entry must go."""
    legacy = oc.CHANNEL_PLUGIN_DIRS.get(kind)
    paths = list(oc.get_path(current.get("config") or {}, oc.PLUGIN_LOAD_PATHS) or [])
    if not legacy or legacy not in paths:
        return None
    return [p for p in paths if p != legacy]


def drop_backup_copies(client: OpenClawClient) -> None:
    code = client.drop_config_backups()
    if code != 0:
        log.warning("could not remove openclaw.json backup copies (exit %s)", code)


def remove_from_volume(channel: Channel) -> bool:
    """A stopped instance: rewrite openclaw.json in the volume without the channel's paths
    (owned-paths merge, validated by OpenClaw) and delete the backup copies. True if written."""
    from instances import specs
    from instances.openclaw import files
    from instances.runtime import runtime_for

    instance = channel.instance
    if instance.host is None:
        return False
    rt = runtime_for(instance.host)
    image = specs.image_for(instance.openclaw_version)
    if rt.read_file(instance.volume_name, image, files.CONFIG_FILE) is None:
        return False
    written = rt.write_config(
        instance.volume_name,
        image,
        {},
        oc.channel_owned_paths(channel.kind),
        secrets=[channel.secret, channel.secret_extra],
    )
    rt.run_in_volume(
        instance.volume_name,
        image,
        DROP_CONFIG_BACKUPS,
        timeout=60,
    )
    return written
