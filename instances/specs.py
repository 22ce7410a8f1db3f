"""What an instance looks like on an engine: labels, container spec, openclaw.json.

Pure builders (no engine calls): the handlers and the reconcile loop use the same ones, so a
container recreated by reconcile is identical to the one a deploy made (same spec hash).
"""

from __future__ import annotations

import hashlib
import logging

from django.conf import settings
from django.db import connection

from .models import Instance, PoolSlot
from .openclaw import config as openclaw_config

log = logging.getLogger(__name__)

INSTANCE_LABEL = "clawfleet.instance"
ORG_LABEL = "clawfleet.org"
# Which control plane (database) owns an engine object. The reconcile loop only ever removes
# "orphans" carrying its own plane label, so a development database, a test run and production
# sharing one engine never delete each other's containers.
PLANE_LABEL = "clawfleet.plane"
# A warm-pool gateway (instances/pool.py). Docker cannot relabel a container, so a claimed one
# keeps it: with an Instance row of its clawfleet.instance id it is that instance's container.
POOL_LABEL = "clawfleet.pool"
# The org label of a pool gateway, which belongs to no organization yet.
POOL_ORG_PLACEHOLDER = "pool"

CONTEXT_WINDOW = 128_000
MAX_TOKENS = 8_192
# Written when a custom endpoint needs no key: OpenClaw wants a value in the provider entry.
NO_KEY_PLACEHOLDER = "not-needed"


def plane_id() -> str:
    """settings.FLEET_PLANE_ID if set, else derived from the database this process uses."""
    explicit = getattr(settings, "FLEET_PLANE_ID", "")
    if explicit:
        return explicit
    db = connection.settings_dict
    raw = f"{db.get('ENGINE')}|{db.get('HOST')}|{db.get('PORT')}|{db.get('NAME')}"
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def image_for(version: str) -> str:
    return settings.FLEET_OPENCLAW_IMAGE.format(version=version)


def labels_for(instance: Instance | PoolSlot) -> dict[str, str]:
    """A pool slot is labelled as the instance of its id will be, minus the org, plus the pool
    label."""
    if isinstance(instance, PoolSlot):
        return {
            INSTANCE_LABEL: str(instance.pk),
            ORG_LABEL: POOL_ORG_PLACEHOLDER,
            PLANE_LABEL: plane_id(),
            POOL_LABEL: "true",
        }
    return {
        INSTANCE_LABEL: str(instance.pk),
        ORG_LABEL: str(instance.organization_id),
        PLANE_LABEL: plane_id(),
    }


def spec_for(instance: Instance | PoolSlot, image: str | None = None):
    """The container of an instance, or of a pool slot (same names, profile and network: only
    the labels differ)."""
    from .runtime import ContainerSpec

    return ContainerSpec(
        name=instance.container_name,
        hostname=instance.hostname,
        image=image or image_for(instance.openclaw_version),
        volume_name=instance.volume_name,
        host_port=int(instance.host_port),
        memory_mb=int(instance.memory_mb),
        cpus=float(instance.cpus),
        labels=labels_for(instance),
        network=settings.FLEET_NETWORK,
    )


def base_url_for(instance: Instance) -> str:
    if instance.model_base_url:
        return instance.model_base_url
    from .services import PROVIDER_BASE_URLS

    return PROVIDER_BASE_URLS.get(instance.provider, "")


def prices_for(instance: Instance) -> dict:
    """Our price table's numbers, so OpenClaw's own cost estimates match our ledger."""
    try:
        from billing.pricing import config_prices, own_price
    except ImportError:  # pragma: no cover - billing always ships with instances
        return {}
    return config_prices(instance.provider, instance.model_name, own=own_price(instance))


def config_for(instance: Instance) -> dict:
    """The edge proxy's public origin is the gateway's public origin and its one allowed
    Control UI origin; no trusted proxies (the proxy sends no forwarded headers: docs/edge.md)."""
    from . import edge

    return openclaw_config.build_config(
        public_origin=edge.public_origin(instance) if edge.enabled() else "",
        gateway_token=instance.gateway_token,
        provider_id=instance.provider,
        base_url=base_url_for(instance),
        api_key=instance.provider_api_key or NO_KEY_PLACEHOLDER,
        model_id=instance.model_name,
        model_name=instance.model_name,
        prices=prices_for(instance),
        context_window=CONTEXT_WINDOW,
        max_tokens=MAX_TOKENS,
        session_maintenance={
            **openclaw_config.DEFAULT_SESSION_MAINTENANCE,
            "pruneAfter": f"{int(instance.session_idle_days)}d",
            "maxEntries": int(instance.session_max_count),
        },
    )


# What a pool gateway runs with until a claim: build_config()'s own file (so every path that
# needs a restart to change already has the tenant's value) without the model provider and the
# primary model: no key, nothing to spend tokens on.
POOL_PROVIDER = "pool"
POOL_DROPPED_PATHS = ("models", "agents.defaults.model")


def pool_config_for(slot: PoolSlot) -> dict:
    config = openclaw_config.build_config(
        gateway_token=slot.pool_token,
        provider_id=POOL_PROVIDER,
        base_url="http://127.0.0.1/v1",
        api_key=NO_KEY_PLACEHOLDER,
        model_id="none",
        model_name="none",
        prices={},
        context_window=CONTEXT_WINDOW,
        max_tokens=MAX_TOKENS,
    )
    for path in POOL_DROPPED_PATHS:
        openclaw_config.delete_path(config, path)
    return config


def claim_patch_for(instance: Instance, current: dict) -> dict:
    """The JSON merge patch that turns a pool gateway's config (`current`, as config.get reads
    it) into the instance's: every owned path set to config_for(instance)'s value, and removed
    where the instance wants OpenClaw's default but the pool file has one."""
    desired = config_for(instance)
    patch: dict = {}
    missing = object()
    for path in owned_paths_for(instance):
        value = openclaw_config.get_path(desired, path, missing)
        if value is missing:
            if openclaw_config.get_path(current, path, missing) is not missing:
                openclaw_config.set_path(patch, path, None)
        else:
            openclaw_config.set_path(patch, path, value)
    return patch


def owned_paths_for(instance: Instance) -> list[str]:
    return openclaw_config.owned_paths(instance.provider)


def secrets_of(instance: Instance) -> list[str]:
    """Values to scrub from any error text before it is stored or logged."""
    return [s for s in (instance.gateway_token, instance.provider_api_key) if s]
