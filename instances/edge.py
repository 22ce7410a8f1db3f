"""The edge proxy: THE ONLY module that knows Caddy's admin API (docs/edge.md).

Every live instance has one public address, ``https://<label>.<FLEET_BASE_DOMAIN>[:port]``,
where the label is ``<instance>-<org slug>`` (stored on the instance the first time it is asked
for, unique in the database: a rare clash, or a label longer than a DNS label allows, falls back to
``<instance>-<short id>``). The label never changes afterwards (rename, upgrade, restore keep it).

Caddy (Debian's package, started by the Procfile's ``edge`` process or the test fixture) holds one
HTTP server, ``clawfleet``, listening on ``FLEET_EDGE_LISTEN``:

- one route per instance of this control plane, ``@id`` = ``cf-<plane>-<instance hex>``, matching
  its host name exactly. A running instance's route refuses OpenClaw's admin RPC paths (404) and
  reverse-proxies everything else (HTTP, WebSocket, the OpenAI-compatible /v1) to the container's
  address on its Docker network, port 18789; any other live status (starting, stopped, paused,
  crash looping...) answers the branded "unavailable" page with 503 and never reaches a container;
- a last route for every other host: the branded "unknown" page with 404.

TLS: ``FLEET_EDGE_TLS=internal`` (development, tests) issues every certificate from Caddy's own
local CA (``root_ca_pem()``); ``acme`` (production) uses on-demand TLS, and Caddy asks
``FLEET_EDGE_ASK_URL`` (``instances.views_edge.ask``) before requesting a certificate, which says
yes only for host names of live instances (``instance_for_host``).

The routes are written by the operation handlers (``sync_instance`` after every status change)
and repaired by the reconcile loop (``reconcile_host``: a Caddy restarted with an empty config,
a route gone or changed, a route of an instance that no longer exists). Every call here is
idempotent. Admin API failures raise ``EdgeUnavailable``; callers that must not fail on the edge
(handlers) log and leave the repair to the reconcile loop.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from urllib.parse import quote

import requests
from django.conf import settings
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string

from .models import Instance

log = logging.getLogger(__name__)
S = Instance.Status

SERVER = "clawfleet"
GATEWAY_PORT = 18789
ADMIN_TIMEOUT = 5.0
# OpenClaw's admin HTTP RPC (the bundled admin-http-rpc plugin): full operator power with the
# gateway token. Never reachable from outside; the control plane uses `docker exec` instead.
REFUSED_PATHS = ("/api/v1/admin", "/api/v1/admin/*")
LABEL_MAX = 63
FORWARD_HEADERS = (
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "X-Real-Ip",
    "Forwarded",
)
# Statuses whose route proxies to the container.
PROXIED = (S.RUNNING,)
# Statuses that have no route at all (the fallback answers 404).
GONE = (S.DELETED, S.PURGED, S.DELETING)

STATUS_WORDS = {
    S.PENDING: "is being created",
    S.DEPLOYING: "is being deployed",
    S.STARTING: "is starting",
    S.RESTARTING: "is restarting",
    S.UPGRADING: "is being upgraded",
    S.RESTORING: "is being restored from a backup",
    S.STOPPING: "is stopping",
    S.STOPPED: "is stopped",
    S.PAUSED: "is paused",
    S.CRASH_LOOPING: "keeps crashing and is waiting for its owner",
    S.FAILED: "is not running (the last operation failed)",
}


class EdgeUnavailable(Exception):
    """The proxy's admin API did not answer or refused a change."""


# --- names ------------------------------------------------------------------------------------


def _dns_label(text: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", text.lower()).strip("-")


def candidate_label(instance: Instance) -> str:
    return _dns_label(f"{instance.name}-{instance.organization.slug}")


def fallback_label(instance: Instance) -> str:
    return _dns_label(f"{instance.name}-{instance.short_id}")


def label_for(instance: Instance) -> str:
    """The instance's DNS label, assigned once (stable, unique in the database)."""
    if instance.edge_label:
        return instance.edge_label
    for label in (candidate_label(instance), fallback_label(instance)):
        if len(label) > LABEL_MAX:
            continue
        try:
            with transaction.atomic():
                done = Instance.objects.filter(pk=instance.pk, edge_label__isnull=True).update(
                    edge_label=label
                )
        except IntegrityError:
            continue  # another instance holds it
        if not done:  # assigned concurrently: take what is stored
            label = Instance.objects.values_list("edge_label", flat=True).get(pk=instance.pk)
        instance.edge_label = label
        return label
    raise ValueError(f"no public label fits instance {instance.pk}")  # pragma: no cover


def base_domain() -> str:
    return settings.FLEET_BASE_DOMAIN.strip(".").lower()


def host_for(instance: Instance) -> str:
    return f"{label_for(instance)}.{base_domain()}"


def origin_for_label(label: str) -> str:
    port = int(settings.FLEET_EDGE_PUBLIC_PORT)
    suffix = "" if port == 443 else f":{port}"
    return f"https://{label}.{base_domain()}{suffix}"


def public_origin(instance: Instance) -> str:
    return origin_for_label(label_for(instance))


def endpoint_url(instance: Instance) -> str | None:
    """The public address of a live instance (None once it is deleted); assigns the label of
    an instance made before labels existed."""
    if not enabled():
        return None
    if instance.status in GONE or instance.desired_state == Instance.DesiredState.DELETED:
        return None
    return public_origin(instance)


def instance_for_host(hostname: str) -> Instance | None:
    """The live instance answering at `hostname` (a port suffix is ignored), or None."""
    name = (hostname or "").strip().lower().rstrip(".")
    name = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
    suffix = "." + base_domain()
    if not name.endswith(suffix):
        return None
    label = name[: -len(suffix)]
    if not label or "." in label:
        return None
    instance = (
        Instance.objects.select_related("organization")
        .filter(edge_label=label)
        .exclude(status__in=GONE)
        .exclude(desired_state=Instance.DesiredState.DELETED)
        .first()
    )
    return instance


# --- Caddy's admin API ------------------------------------------------------------------------


def enabled() -> bool:
    return bool(settings.FLEET_EDGE_ADMIN_URL)


def _admin(method: str, path: str, body=None, *, ok=(200,)) -> requests.Response:
    url = settings.FLEET_EDGE_ADMIN_URL.rstrip("/") + path
    try:
        resp = requests.request(
            method,
            url,
            json=body,
            timeout=ADMIN_TIMEOUT,
            # Caddy checks Origin/Host of admin requests against its listen address.
            headers={"Origin": settings.FLEET_EDGE_ADMIN_URL.rstrip("/")},
        )
    except requests.RequestException as exc:
        raise EdgeUnavailable(f"edge admin API unreachable ({type(exc).__name__})") from exc
    if resp.status_code not in ok:
        raise EdgeUnavailable(
            f"edge admin API {method} {path}: {resp.status_code} {resp.text[:200]}"
        )
    return resp


def route_id(instance_pk) -> str:
    from .specs import plane_id

    hex_id = instance_pk.hex if hasattr(instance_pk, "hex") else str(instance_pk).replace("-", "")
    return f"cf-{plane_id()}-{hex_id}"


def _route_prefix() -> str:
    from .specs import plane_id

    return f"cf-{plane_id()}-"


def _page(template: str, status: int, context: dict) -> dict:
    return {
        "handler": "static_response",
        "status_code": status,
        "headers": {
            "Content-Type": ["text/html; charset=utf-8"],
            "Cache-Control": ["no-store"],
            **({"Retry-After": ["30"]} if status == 503 else {}),
        },
        "body": render_to_string(template, context),
    }


def unknown_page() -> dict:
    return _page("edge/unknown.html", 404, {"base_domain": base_domain()})


def unavailable_page(instance: Instance) -> dict:
    words = STATUS_WORDS.get(instance.status, "is not available right now")
    return _page(
        "edge/unavailable.html",
        503,
        {"instance_name": instance.name, "status": instance.status, "words": words},
    )


def desired_route(instance: Instance, address: str | None) -> dict | None:
    """The route this instance should have (None: no route, the fallback's 404)."""
    if instance.status in GONE or instance.desired_state == Instance.DesiredState.DELETED:
        return None
    if instance.status in PROXIED and address:
        handle = [
            {
                "handler": "subroute",
                "routes": [
                    {
                        "match": [{"path": list(REFUSED_PATHS)}],
                        "handle": [
                            {
                                "handler": "static_response",
                                "status_code": 404,
                                "body": "Not found",
                            }
                        ],
                        "terminal": True,
                    },
                    {
                        "handle": [
                            {
                                "handler": "reverse_proxy",
                                "upstreams": [{"dial": f"{address}:{GATEWAY_PORT}"}],
                                # No forwarded-client headers (docs/edge.md, decision 46): the
                                # host port and the proxy both reach the gateway from the
                                # network's gateway address, so trusting it as a proxy would
                                # make the health probes "unattributable"; a client's own
                                # X-Forwarded-* never reach the gateway either.
                                "headers": {"request": {"delete": list(FORWARD_HEADERS)}},
                                # Streaming answers (SSE chat completions) flow as they come.
                                "flush_interval": -1,
                            }
                        ]
                    },
                ],
            }
        ]
    else:
        handle = [unavailable_page(instance)]
    return {
        "@id": route_id(instance.pk),
        "match": [{"host": [host_for(instance)]}],
        "handle": handle,
        "terminal": True,
    }


def _tls_app() -> dict:
    mode = settings.FLEET_EDGE_TLS
    if mode == "acme":
        issuer = {"module": "acme"}
        if settings.FLEET_EDGE_ACME_EMAIL:
            issuer["email"] = settings.FLEET_EDGE_ACME_EMAIL
        policy = {"issuers": [issuer], "on_demand": True}
        automation: dict = {"policies": [policy]}
        if settings.FLEET_EDGE_ASK_URL:
            automation["on_demand"] = {"ask": settings.FLEET_EDGE_ASK_URL}
        return {"automation": automation}
    # The local CA, on demand too: a name's certificate is made during its first handshake,
    # so an address answers the moment its route exists (no background issuance to wait for).
    automation = {"policies": [{"issuers": [{"module": "internal"}], "on_demand": True}]}
    if settings.FLEET_EDGE_ASK_URL:
        automation["on_demand"] = {"ask": settings.FLEET_EDGE_ASK_URL}
    return {"automation": automation}


def base_apps() -> dict:
    """Caddy's `apps` with our server and no instance route yet."""
    listen = settings.FLEET_EDGE_LISTEN
    https_port = int(listen.rsplit(":", 1)[1])
    fallback = {"@id": f"cf-{_plane_safe()}-fallback", "handle": [unknown_page()]}
    return {
        "pki": {"certificate_authorities": {"local": {"install_trust": False}}},
        "tls": _tls_app(),
        "http": {
            "https_port": https_port,
            "http_port": int(settings.FLEET_EDGE_HTTP_PORT),
            "servers": {
                SERVER: {
                    "listen": [listen],
                    "automatic_https": {"disable_redirects": True},
                    "routes": [fallback],
                }
            },
        },
    }


def _plane_safe() -> str:
    from .specs import plane_id

    return plane_id()


def ensure_server() -> bool:
    """Load our server into Caddy when it is missing (a fresh or restarted proxy). True when it
    had to be loaded."""
    # A path that does not exist yet is a 400 ("invalid traversal path") or 404.
    resp = _admin("GET", f"/config/apps/http/servers/{SERVER}", ok=(200, 400, 404))
    if resp.status_code == 200 and resp.text.strip() not in ("", "null"):
        return False
    _admin("POST", "/config/apps", base_apps())
    log.warning("edge: loaded the %s server into the proxy", SERVER)
    return True


def routes() -> list[dict]:
    resp = _admin("GET", f"/config/apps/http/servers/{SERVER}/routes", ok=(200, 400, 404))
    if resp.status_code != 200:
        return []
    data = resp.json() if resp.text.strip() not in ("", "null") else []
    return data or []


def _put(route: dict) -> None:
    rid = quote(route["@id"])
    resp = _admin("PATCH", f"/id/{rid}", route, ok=(200, 404))
    if resp.status_code == 200:
        return
    # New route: first in the list (before the fallback). A concurrent writer may have added it
    # meanwhile (a duplicate @id is refused): then replace it.
    path = f"/config/apps/http/servers/{SERVER}/routes/0"
    resp = _admin("PUT", path, route, ok=(200, 400, 404, 500))
    if resp.status_code == 200:
        return
    if "duplicate" in resp.text.lower():
        _admin("PATCH", f"/id/{rid}", route)
        return
    ensure_server()  # the proxy restarted under us: load our server, then add the route
    _admin("PUT", path, route)


def _delete(rid: str) -> None:
    _admin("DELETE", f"/id/{quote(rid)}", ok=(200, 404))


def address_of(instance: Instance) -> str | None:
    """The container's address on its Docker network (None when it is not running)."""
    from .runtime import runtime_for

    if instance.host is None:
        return None
    info = runtime_for(instance.host).inspect(instance.container_name)
    return getattr(info, "address", None) if info is not None and info.running else None


def sync_instance(instance: Instance, *, address: str | None = None) -> str:
    """Make the proxy's route for this instance match its status. Returns what was done."""
    if not enabled():
        return "disabled"
    instance.refresh_from_db(fields=["status", "desired_state", "edge_label", "name"])
    if instance.status in PROXIED and address is None:
        address = address_of(instance)
    route = desired_route(instance, address)
    ensure_server()
    if route is None:
        _delete(route_id(instance.pk))
        return "removed"
    _put(route)
    return "proxied" if instance.status in PROXIED and address else "page"


def sync_quietly(instance: Instance, **kw) -> str:
    """sync_instance for callers that must not fail on the edge (the reconcile loop repairs)."""
    try:
        return sync_instance(instance, **kw)
    except Exception as exc:  # noqa: BLE001 - never fail an operation on the proxy
        log.warning("edge route of %s not updated: %s", instance.pk, exc)
        return "failed"


@dataclass
class EdgeRepair:
    added: list[str]
    changed: list[str]
    removed: list[str]
    reloaded: bool


def reconcile_host(host, containers, *, skip=(), instances=None) -> EdgeRepair:
    """Repair the routes of one host's instances from one engine listing (`containers`:
    runtime.list_managed() output): missing or drifted routes are written again, routes of
    instances this plane no longer has (on any host) are removed. `instances`: the host's
    non-purged instances as the caller already loaded them (the reconcile pass), else queried."""
    if not enabled():
        return EdgeRepair([], [], [], False)
    from .specs import INSTANCE_LABEL

    reloaded = ensure_server()
    current = {r.get("@id"): r for r in routes() if r.get("@id")}
    by_name = {c.name: c for c in containers}
    by_instance = {(c.labels or {}).get(INSTANCE_LABEL): c for c in containers}
    added, changed, removed = [], [], []
    prefix = _route_prefix()
    if instances is None:
        instances = list(
            Instance.objects.select_related("organization")
            .filter(host=host)
            .exclude(status=S.PURGED)
        )
    for instance in instances:
        if str(instance.pk) in skip or instance.status == S.PURGED:
            continue
        info = by_instance.get(str(instance.pk)) or by_name.get(instance.container_name)
        address = getattr(info, "address", None) if info is not None and info.running else None
        want = desired_route(instance, address)
        rid = route_id(instance.pk)
        have = current.get(rid)
        if want is None:
            if have is not None:
                _delete(rid)
                removed.append(rid)
            continue
        if have != want:
            _put(want)
            (changed if have is not None else added).append(rid)
    known = {
        route_id(pk)
        for pk in Instance.objects.exclude(status__in=(S.PURGED,)).values_list("pk", flat=True)
    }
    for rid in current:
        if rid.startswith(prefix) and rid != f"{prefix}fallback" and rid not in known:
            _delete(rid)
            removed.append(rid)
    return EdgeRepair(added, changed, removed, reloaded)


def root_ca_pem() -> str:
    """The local CA's root certificate (FLEET_EDGE_TLS=internal), for clients to trust."""
    resp = _admin("GET", "/pki/ca/local")
    return resp.json()["root_certificate"]
