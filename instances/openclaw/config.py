"""The ``openclaw.json`` Clawfleet writes into an instance's state volume (pure, Django-free).

The control plane *owns* a small set of dotted config paths (``owned_paths(provider_id)``): the
gateway's bind/port/auth token, the OpenAI-compatible HTTP endpoint, our model provider entry and
the primary model, the token-spending background jobs (heartbeat, dreaming), self-update, session
maintenance and the log file location. Everything else in the file belongs to the user and to
OpenClaw itself (the agent and the Control UI edit the config at run time).

- First write (no ``openclaw.json`` in the volume yet): the whole ``build_config(...)`` result.
- Later writes: ``merge_owned(existing, desired, owned_paths)``: every owned path is set to the
  desired value (or removed when the desired config does not have it); nothing else is touched.

Secrets (gateway token, provider API key) live only in this file (mode 600, uid 1000): never in
container environment variables, which ``docker inspect`` shows to anyone with engine access.
"""

from __future__ import annotations

import copy
from typing import Any

GATEWAY_PORT = 18789
# The container's /tmp is a tmpfs: keep OpenClaw's own log file there, small and rotated
# (5 archives are kept beside the active file), so it never lands in the state volume or a backup.
LOG_FILE = "/tmp/openclaw/openclaw.log"
LOG_MAX_FILE_BYTES = 10 * 1024 * 1024

DEFAULT_SESSION_MAINTENANCE: dict[str, Any] = {
    "mode": "enforce",
    "pruneAfter": "30d",
    "maxEntries": 5000,
    "maxDiskBytes": "2gb",
}

DEFAULT_COMPAT: dict[str, Any] = {"supportsUsageInStreaming": True}

# Dotted paths the control plane owns. "{provider_id}" is filled in by owned_paths().
OWNED_PATHS: tuple[str, ...] = (
    "gateway.mode",
    "gateway.bind",
    "gateway.port",
    "gateway.auth.mode",
    "gateway.auth.token",
    "gateway.http.endpoints.chatCompletions.enabled",
    # Behind the edge proxy (instances/edge.py): all three hot-reload without a restart.
    "gateway.publicOrigin",
    "gateway.controlUi.allowedOrigins",
    "gateway.trustedProxies",
    "models.mode",
    "models.providers.{provider_id}",
    "agents.defaults.model.primary",
    "agents.defaults.heartbeat.every",
    "plugins.entries.memory-core.config.dreaming.enabled",
    # The control plane's RPC path (instances/openclaw/gateway_rpc.py): POST /api/v1/admin/rpc
    # with the gateway token. Hot-reloads; the edge proxy refuses /api/v1/admin* publicly.
    "plugins.entries.admin-http-rpc.enabled",
    "update.checkOnStart",
    "update.auto.enabled",
    "session.maintenance",
    "logging.file",
    "logging.maxFileBytes",
)

# Paths whose values are secrets: never log them.
SECRET_PATHS: tuple[str, ...] = (
    "gateway.auth.token",
    "models.providers.{provider_id}.apiKey",
)


def owned_paths(provider_id: str) -> list[str]:
    """The owned dotted paths for an instance whose model provider id is ``provider_id``."""
    _check_segment(provider_id)
    return [p.replace("{provider_id}", provider_id) for p in OWNED_PATHS]


def secret_paths(provider_id: str) -> list[str]:
    return [p.replace("{provider_id}", provider_id) for p in SECRET_PATHS]


def build_config(
    *,
    gateway_token: str,
    provider_id: str,
    base_url: str,
    api_key: str,
    model_id: str,
    model_name: str,
    prices: dict[str, float],
    context_window: int,
    max_tokens: int,
    session_maintenance: dict[str, Any] | None = None,
    port: int = GATEWAY_PORT,
    compat: dict[str, Any] | None = None,
    public_origin: str = "",
    trusted_proxies: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """The complete desired ``openclaw.json`` for one containerised gateway.

    ``prices``: USD per million tokens, keys ``input``, ``output``, ``cacheRead``, ``cacheWrite``
    (missing cache prices default to 0). ``session_maintenance``: ``session.maintenance`` keys
    (``mode``, ``pruneAfter``, ``maxEntries``, ``maxDiskBytes``, ...); ``None`` uses
    ``DEFAULT_SESSION_MAINTENANCE``. ``compat``: extra capability flags of the model route
    (merged over ``DEFAULT_COMPAT``).

    ``compat.supportsUsageInStreaming`` matters for billing: OpenClaw decides per route whether
    to ask for ``stream_options.include_usage``; for a custom provider on a private address it
    does NOT by default, the provider then reports no usage and every turn is recorded with 0
    tokens and $0. We declare it (every OpenAI-compatible backend we target supports it).

    ``public_origin`` (``https://<host>[:port]`` of the edge proxy) becomes
    ``gateway.publicOrigin`` and the one allowed Control UI origin; ``trusted_proxies`` the
    addresses the proxy connects from (its forwarded headers are believed only from those).
    """
    _check_segment(provider_id)
    if not gateway_token or len(gateway_token) < 16:
        raise ValueError("gateway_token must be at least 16 characters")
    if not base_url.startswith(("http://", "https://")):
        raise ValueError("base_url must be an http(s) URL")
    cost = {
        "input": float(prices.get("input", 0)),
        "output": float(prices.get("output", 0)),
        "cacheRead": float(prices.get("cacheRead", 0)),
        "cacheWrite": float(prices.get("cacheWrite", 0)),
    }
    maintenance = dict(
        DEFAULT_SESSION_MAINTENANCE if session_maintenance is None else session_maintenance
    )
    gateway: dict[str, Any] = {
        "mode": "local",
        "bind": "lan",
        "port": int(port),
        "auth": {"mode": "token", "token": gateway_token},
        "http": {"endpoints": {"chatCompletions": {"enabled": True}}},
    }
    if public_origin:
        gateway["publicOrigin"] = public_origin
        gateway["controlUi"] = {"allowedOrigins": [public_origin]}
    if trusted_proxies:
        gateway["trustedProxies"] = list(trusted_proxies)
    return {
        "gateway": gateway,
        "models": {
            "mode": "merge",
            "providers": {
                provider_id: {
                    "baseUrl": base_url.rstrip("/"),
                    "apiKey": api_key,
                    "api": "openai-completions",
                    "models": [
                        {
                            "id": model_id,
                            "name": model_name,
                            "input": ["text"],
                            "cost": cost,
                            "contextWindow": int(context_window),
                            "maxTokens": int(max_tokens),
                            "compat": {**DEFAULT_COMPAT, **(compat or {})},
                        }
                    ],
                }
            },
        },
        "agents": {
            "defaults": {
                "model": {"primary": f"{provider_id}/{model_id}"},
                # Heartbeat runs spend tokens every 30 min by default: off unless a plan says so.
                "heartbeat": {"every": "0m"},
            }
        },
        # The nightly "dreaming" memory job also spends tokens: off. The admin HTTP RPC plugin
        # (off by default) is how the control plane calls the gateway without a CLI process.
        "plugins": {
            "entries": {
                "memory-core": {"config": {"dreaming": {"enabled": False}}},
                "admin-http-rpc": {"enabled": True},
            }
        },
        # Images are immutable and upgraded by the control plane; no update checks (no egress).
        "update": {"checkOnStart": False, "auto": {"enabled": False}},
        "session": {"maintenance": maintenance},
        "logging": {"file": LOG_FILE, "maxFileBytes": LOG_MAX_FILE_BYTES},
    }


# --- dotted-path helpers ----------------------------------------------------------------------

_MISSING = object()


def _check_segment(segment: str) -> None:
    if not segment or "." in segment or "{" in segment or "}" in segment:
        raise ValueError(f"invalid config path segment: {segment!r}")


def _split(path: str) -> list[str]:
    parts = path.split(".")
    if any(not p for p in parts):
        raise ValueError(f"invalid dotted path: {path!r}")
    return parts


def get_path(config: dict, path: str, default: Any = None) -> Any:
    node: Any = config
    for part in _split(path):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def set_path(config: dict, path: str, value: Any) -> None:
    parts = _split(path)
    node = config
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def delete_path(config: dict, path: str) -> None:
    parts = _split(path)
    node: Any = config
    for part in parts[:-1]:
        if not isinstance(node, dict) or part not in node:
            return
        node = node[part]
    if isinstance(node, dict):
        node.pop(parts[-1], None)


def merge_owned(existing: dict, desired: dict, owned_paths: list[str] | tuple[str, ...]) -> dict:
    """A copy of ``existing`` where every owned path takes its value from ``desired``.

    An owned path absent from ``desired`` is removed from the result (the control plane wants
    OpenClaw's default there). Paths nobody owns keep whatever the user or OpenClaw wrote.
    """
    result = copy.deepcopy(existing) if isinstance(existing, dict) else {}
    for path in owned_paths:
        value = get_path(desired, path, _MISSING)
        if value is _MISSING:
            delete_path(result, path)
        else:
            set_path(result, path, copy.deepcopy(value))
    return result


def redact(config: dict, paths: list[str] | tuple[str, ...]) -> dict:
    """A copy with the values at ``paths`` replaced by ``"***"`` (for logs and error messages)."""
    result = copy.deepcopy(config)
    for path in paths:
        if get_path(result, path, _MISSING) is not _MISSING:
            set_path(result, path, "***")
    return result


# --- channels (issue 14) ----------------------------------------------------------------------
# A connected chat channel owns its section of the config: `channels.<kind>` (the whole
# section: token, policy, API root) and `plugins.entries.<kind>` (OpenClaw adds
# `{enabled: true}` there when a channel is configured). The channels app applies them with
# OpenClaw's config RPCs (hot reload, no restart) and removes them when the channel goes.

CHANNEL_OWNED_PATHS: tuple[str, ...] = ("channels.{kind}", "plugins.entries.{kind}")
CHANNEL_SECRET_PATHS: dict[str, tuple[str, ...]] = {
    "telegram": ("channels.telegram.botToken",),
    "discord": ("channels.discord.token",),
    "slack": ("channels.slack.botToken", "channels.slack.appToken"),
}
# Channel plugins that are separate npm packages, baked into our image (images/openclaw/build.sh)
# and loaded through `plugins.load.paths` (an array the user may extend: we add and remove only
# our own entry).
CHANNEL_PLUGIN_DIRS: dict[str, str] = {
    "discord": "/opt/openclaw/node_modules/@openclaw/discord",
    "slack": "/opt/openclaw/node_modules/@openclaw/slack",
}
PLUGIN_LOAD_PATHS = "plugins.load.paths"
# Arrays under a channel section: a merge patch that drops or replaces them must name them.
CHANNEL_ARRAY_PATHS: tuple[str, ...] = ("channels.{kind}.allowFrom",)


def channel_owned_paths(kind: str) -> list[str]:
    _check_segment(kind)
    return [p.replace("{kind}", kind) for p in CHANNEL_OWNED_PATHS]


def channel_secret_paths(kind: str) -> list[str]:
    return list(CHANNEL_SECRET_PATHS.get(kind, ()))


def channel_array_paths(kind: str) -> list[str]:
    _check_segment(kind)
    return [p.replace("{kind}", kind) for p in CHANNEL_ARRAY_PATHS]


def build_channel_config(
    kind: str,
    *,
    token: str,
    extra_token: str = "",
    dm_policy: str = "pairing",
    allow_from: list[str] | None = None,
    api_root: str = "",
) -> dict[str, Any]:
    """The owned part of openclaw.json for one channel (a partial config: channel_owned_paths).

    ``api_root``: Telegram's Bot API root (a self-hosted Bot API server; empty: OpenClaw's
    default, api.telegram.org). ``allow_from``: sender ids for the allowlist policy (and
    ``["*"]`` for an open one, which OpenClaw requires)."""
    _check_segment(kind)
    if not token:
        raise ValueError("a channel needs its token")
    section: dict[str, Any] = {"enabled": True, "dmPolicy": dm_policy}
    senders = [str(s) for s in (allow_from or [])]
    if dm_policy == "open" and "*" not in senders:
        senders.append("*")
    if senders:
        section["allowFrom"] = senders
    if kind == "telegram":
        section["botToken"] = token
        if api_root:
            section["apiRoot"] = api_root.rstrip("/")
    elif kind == "discord":
        section["token"] = token
    elif kind == "slack":
        section["botToken"] = token
        if extra_token:
            section["mode"] = "socket"
            section["appToken"] = extra_token
    else:
        raise ValueError(f"unknown channel kind: {kind!r}")
    return {"channels": {kind: section}, "plugins": {"entries": {kind: {"enabled": True}}}}
