"""The one place that talks to OpenClaw about sessions, transcripts, config and backups.

How we reach an instance (OPENCLAW.md §4, §9; docs/openclaw-runtime.md "RPC transport"):

- **RPC** (`instances/openclaw/gateway_rpc.py`) whenever the instance's engine is local: the
  gateway's port published on 127.0.0.1 (what the health probes use; never the public edge),
  one kept-alive connection per gateway and process. Allowlisted admin methods (`config.*`,
  `health`, `channels.*`, ...) go to the `admin-http-rpc` plugin with the gateway token
  ("http-rpc"); `sessions.*` and `chat.history`, which that plugin does not serve, go over the
  WebSocket RPC as the control plane's paired device ("ws-rpc"). A round trip costs tens of ms.
- **The CLI inside the container** (`runtime.exec`, "exec") where OpenClaw offers nothing over
  RPC (backup create, reading a file, `sessions archive|delete`) and as the fallback for a
  remote engine or an instance whose config predates the plugin (until its next config write):

      openclaw gateway call <method> --params '<json>' --json     (1.5–3 s a call)

`client.last_transport` says which one the last call used. Nothing here reads OpenClaw's SQLite
files. Parsing is pure (functions named parse_*), tested on recorded samples. Transcript content
and secrets are never logged: errors carry the method name and an error code, not the output.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shlex
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

log = logging.getLogger(__name__)

# How the gateway user runs inside the image (uid 1000 owns the state volume).
EXEC_USER = "1000:1000"
CALL_TIMEOUT = 120
# sessions.list / sessions.usage without a bound return 50-100 rows: ask for everything we need.
LIST_ALL = 1_000_000
# Rows per `sessions.list` page: ~1.3 kB each in 2026.9.x, so a page is ~1.3 MB, well under the
# answer cap, and 10,000 sessions are ten round trips.
LIST_PAGE = 1000
# Channels OpenClaw knows (the `--channel` choices of `openclaw agent`), to read them off keys.
KNOWN_CHANNELS = frozenset(
    [
        "telegram",
        "whatsapp",
        "discord",
        "irc",
        "googlechat",
        "slack",
        "signal",
        "imessage",
        "feishu",
        "nostr",
        "buzz",
        "msteams",
        "mattermost",
        "nextcloud-talk",
        "matrix",
        "raft",
        "a2a",
        "line",
        "zalo",
        "clickclack",
        "zalouser",
        "sms",
        "synology-chat",
        "tlon",
        "qa-channel",
        "reef",
        "twitch",
        "webchat",
        "cron",
    ]
)
# OpenClaw keeps the previous openclaw.json (secrets included) as these files after every write.
CONFIG_BACKUP_COPIES = "openclaw.json.bak*"
DROP_CONFIG_BACKUPS = ["sh", "-c", f'rm -f "$OPENCLAW_STATE_DIR"/{CONFIG_BACKUP_COPIES}']
# Keys OpenClaw creates for the OpenAI-compatible HTTP API.
API_KEY_MARKERS = ("openai-user", "openresponses-user")


class OpenClawError(Exception):
    """An OpenClaw CLI call failed. The message never contains the command's output."""

    def __init__(self, message: str, *, code: int | None = None, kind: str = ""):
        self.code = code
        self.kind = kind
        super().__init__(message)


class InstanceUnavailable(OpenClawError):
    """The container is not running or the gateway does not answer."""


# --- parsed shapes ------------------------------------------------------------------------------


def ms_to_dt(value) -> datetime | None:
    if value in (None, "", 0):
        return None
    try:
        return datetime.fromtimestamp(float(value) / 1000.0, tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _int(value) -> int:
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


def _dec(value) -> Decimal:
    try:
        return Decimal(str(value or 0)).quantize(Decimal("0.000001"))
    except Exception:  # noqa: BLE001 - junk in a cost field is 0, never a crash in a sync loop
        return Decimal("0.000000")


@dataclass
class SessionRow:
    """One row of `sessions.list`: what the session index says about a conversation."""

    key: str
    session_id: str = ""
    agent_id: str = "main"
    channel: str = ""
    provider: str = ""
    model: str = ""
    archived: bool = False
    updated_ms: int = 0
    started_at: datetime | None = None
    last_activity_at: datetime | None = None


@dataclass
class UsageRow:
    """Totals for one session from `sessions.usage` (all runs, not only the last)."""

    key: str
    session_id: str = ""
    provider: str = ""
    model: str = ""
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    cost_usd: Decimal = field(default_factory=lambda: Decimal("0.000000"))
    message_count: int = 0
    first_activity: datetime | None = None
    last_activity: datetime | None = None
    # (provider, model, input, output, cache_read, cache_write) per model the session used.
    by_model: list[tuple[str, str, int, int, int, int]] = field(default_factory=list)


@dataclass
class SessionList:
    rows: list[SessionRow]
    total_count: int
    has_more: bool = False
    ts_ms: int = 0


def channel_for(row: dict) -> str:
    """The channel a session came through: explicit fields first, then the shape of its key."""
    for path in (
        ("channel",),
        ("lastChannel",),
        ("deliveryContext", "channel"),
        ("origin", "channel"),
    ):
        value = row
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, str) and value:
            return value[:64]
    parts = str(row.get("key", "")).split(":")
    rest = parts[2:] if len(parts) > 2 and parts[0] == "agent" else parts
    if rest and rest[0] in KNOWN_CHANNELS:
        return rest[0]
    if rest and rest[0] in API_KEY_MARKERS:
        return "api"
    if rest and rest[0] == "main":
        return "main"
    if row.get("classification") == "custom":
        return "api"  # x-openclaw-session-key on the OpenAI-compatible HTTP API
    return ""


def parse_session_row(row: dict) -> SessionRow:
    key = str(row.get("key") or "")
    provider = str(row.get("modelProvider") or "")
    model = str(row.get("model") or "")
    started = row.get("createdAt") or row.get("startedAt")
    last = row.get("lastActivityAt") or row.get("lastInteractionAt") or row.get("updatedAt")
    return SessionRow(
        key=key,
        session_id=str(row.get("sessionId") or "")[:100],
        agent_id=str(row.get("agentId") or (key.split(":")[1] if key.count(":") >= 2 else "main")),
        channel=channel_for(row),
        provider=provider,
        model=f"{provider}/{model}" if provider and model else model,
        archived=bool(row.get("archived")),
        updated_ms=int(float(row.get("updatedAt") or 0)),
        started_at=ms_to_dt(started),
        last_activity_at=ms_to_dt(last),
    )


def parse_sessions_list(payload: dict) -> SessionList:
    rows = [parse_session_row(r) for r in payload.get("sessions") or [] if r.get("key")]
    return SessionList(
        rows=rows,
        total_count=_int(payload.get("totalCount", len(rows))),
        has_more=bool(payload.get("hasMore")),
        ts_ms=_int(payload.get("ts")),
    )


def parse_usage_row(row: dict) -> UsageRow | None:
    """None when OpenClaw has not computed the usage yet (its cache is refreshing)."""
    usage = row.get("usage")
    if not isinstance(usage, dict):
        return None
    counts = usage.get("messageCounts") or {}
    by_model = []
    for m in usage.get("modelUsage") or []:
        totals = m.get("totals") or {}
        by_model.append(
            (
                str(m.get("provider") or ""),
                str(m.get("model") or ""),
                _int(totals.get("input")),
                _int(totals.get("output")),
                _int(totals.get("cacheRead")),
                _int(totals.get("cacheWrite")),
            )
        )
    return UsageRow(
        key=str(row.get("key") or ""),
        session_id=str(row.get("sessionId") or usage.get("sessionId") or ""),
        provider=str(row.get("modelProvider") or ""),
        model=str(row.get("model") or ""),
        input=_int(usage.get("input")),
        output=_int(usage.get("output")),
        cache_read=_int(usage.get("cacheRead")),
        cache_write=_int(usage.get("cacheWrite")),
        cost_usd=_dec(usage.get("totalCost")),
        message_count=_int(counts.get("total")),
        first_activity=ms_to_dt(usage.get("firstActivity")),
        last_activity=ms_to_dt(usage.get("lastActivity")),
        by_model=by_model,
    )


def parse_usage(payload: dict) -> tuple[dict[str, UsageRow], set[str]]:
    """({key: usage}, keys whose usage is still being computed)."""
    found: dict[str, UsageRow] = {}
    pending: set[str] = set()
    for row in payload.get("sessions") or []:
        key = row.get("key")
        if not key:
            continue
        parsed = parse_usage_row(row)
        if parsed is None:
            pending.add(key)
        else:
            found[key] = parsed
    return found, pending


def _text_of(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, dict) and block.get("type") in ("text", "output_text", None):
                parts.append(str(block.get("text") or ""))
            elif isinstance(block, str):
                parts.append(block)
        return "\n".join(p for p in parts if p)
    return ""


@dataclass
class Message:
    """One transcript row as the dashboard shows it (never stored in our database)."""

    id: str
    role: str
    text: str
    at: datetime | None
    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0


def parse_history(payload: dict) -> tuple[list[Message], int | None]:
    """(messages oldest first, offset of the next older page or None)."""
    messages = []
    for m in payload.get("messages") or []:
        meta = m.get("__openclaw") or {}
        usage = m.get("usage") or {}
        messages.append(
            Message(
                id=str(meta.get("id") or ""),
                role=str(m.get("role") or ""),
                text=_text_of(m.get("content")),
                at=ms_to_dt(m.get("timestamp")),
                model=str(m.get("model") or ""),
                input_tokens=_int(usage.get("input")),
                output_tokens=_int(usage.get("output")),
            )
        )
    next_offset = payload.get("nextOffset")
    if not payload.get("hasMore"):
        next_offset = None
    return messages, (int(next_offset) if next_offset is not None else None)


def extract_json(stdout) -> dict:
    """The JSON document the CLI printed (it may print warnings before it)."""
    text = stdout.decode("utf-8", "replace") if isinstance(stdout, bytes | bytearray) else stdout
    text = (text or "").strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    start = text.find("\n{")
    while start != -1:
        try:
            return json.loads(text[start + 1 :])
        except ValueError:
            start = text.find("\n{", start + 1)
    raise OpenClawError("OpenClaw printed no JSON document", kind="parse")


# --- the client -----------------------------------------------------------------------------


def _is_local(host) -> bool:
    """An engine on this machine: its published 127.0.0.1 ports are ours to dial."""
    url = str(getattr(host, "base_url", "") or "")
    return url.startswith("unix://") or "127.0.0.1" in url or "localhost" in url


class OpenClawClient:
    """Calls into one instance's gateway. `runtime` is instances.runtime's adapter (the exec
    path); `endpoint` (gateway_rpc.Endpoint: 127.0.0.1, published port, gateway token) the RPC
    path, None where only exec reaches the gateway (a remote engine)."""

    def __init__(self, runtime, container: str, *, timeout: int = CALL_TIMEOUT, endpoint=None):
        self.runtime = runtime
        self.container = container
        self.timeout = timeout
        self.endpoint = endpoint
        self.last_transport = ""

    @classmethod
    def for_instance(cls, instance, *, timeout: int = CALL_TIMEOUT) -> OpenClawClient:
        from instances.runtime import runtime_for

        from .gateway_rpc import Endpoint

        if instance.host is None:
            raise InstanceUnavailable("The instance has no host.")
        endpoint = None
        if instance.host_port and instance.gateway_token and _is_local(instance.host):
            endpoint = Endpoint("127.0.0.1", int(instance.host_port), instance.gateway_token)
        return cls(
            runtime_for(instance.host), instance.container_name, timeout=timeout, endpoint=endpoint
        )

    # low level

    def run(self, argv: list[str], *, timeout: int | None = None, env: dict | None = None):
        """Run a command in the container; returns (code, stdout, stderr), at most
        FLEET_EXEC_MAX_OUTPUT bytes of them (a bigger answer is an OpenClawError, never read)."""
        from django.conf import settings

        from instances.runtime.errors import OutputTooLarge

        limit = int(settings.FLEET_EXEC_MAX_OUTPUT)
        self.last_transport = "exec"
        try:
            return self.runtime.exec(
                self.container,
                argv,
                timeout=timeout or self.timeout,
                user=EXEC_USER,
                env=env,
                max_output=limit,
            )
        except OutputTooLarge as exc:
            raise OpenClawError(
                f"the gateway's answer was larger than {limit} bytes", kind="too_large"
            ) from exc
        except Exception as exc:
            name = type(exc).__name__
            if "NotFound" in name or "NotRunning" in name or "Conflict" in name:
                raise InstanceUnavailable(f"container not available ({name})") from exc
            raise OpenClawError(f"exec failed ({name})") from exc

    def cli_json(self, argv: list[str], *, what: str, ok_codes=(0,), timeout=None) -> dict:
        code, stdout, _stderr = self.run(["openclaw", *argv], timeout=timeout)
        if code not in ok_codes:
            # The envelope {"ok": false, "error": {...}} may be on stdout: keep its type only.
            kind = ""
            with contextlib.suppress(OpenClawError):
                kind = str((extract_json(stdout).get("error") or {}).get("type") or "")
            if code in (126, 137) or any(
                w in kind for w in ("unavailable", "connect", "transport")
            ):
                raise InstanceUnavailable(f"{what}: exit {code} {kind}".strip(), code=code)
            raise OpenClawError(f"{what}: exit {code} {kind}".strip(), code=code, kind=kind)
        return extract_json(stdout)

    def call(self, method: str, params: dict | None = None, *, timeout=None, retries=2) -> dict:
        """One gateway RPC: over the kept-alive RPC connection when there is one, else through
        the CLI in the container (loopback, operator scopes).

        A refused or overloaded connection is tried again `retries` times (0.5 s, 1 s...); a
        call that timed out is not (the caller's budget is spent): InstanceUnavailable."""
        timeout = timeout or self.timeout
        if self.endpoint is not None:
            answer = self._rpc(method, params or {}, timeout=timeout, retries=retries)
            if answer is not None:
                return answer
        return self._exec_call(method, params, timeout=timeout, retries=retries)

    def _rpc(self, method: str, params: dict, *, timeout, retries: int) -> dict | None:
        """The RPC path; None means "not served here, use exec" (an instance whose config does
        not enable the admin HTTP RPC plugin yet: its next config write or restart does)."""
        from django.conf import settings

        from . import gateway_rpc as rpc

        limit = int(settings.FLEET_EXEC_MAX_OUTPUT)
        http = method in rpc.HTTP_METHODS
        self.last_transport = "http-rpc" if http else "ws-rpc"
        for attempt in range(retries + 1):
            started = time.monotonic()
            try:
                if http:
                    answer = rpc.http_call(
                        self.endpoint.base_url,
                        self.endpoint.token,
                        method,
                        params,
                        timeout=timeout,
                        limit=limit,
                    )
                else:
                    answer = rpc.ws_call(
                        self.endpoint, method, params, timeout=timeout, limit=limit
                    )
            except rpc.RpcError as exc:
                if exc.kind == "not_enabled":
                    log.info(
                        "%s: admin HTTP RPC not enabled on %s, using exec", method, self.container
                    )
                    return None
                if exc.kind == "too_large":
                    raise OpenClawError(str(exc), kind="too_large") from exc
                if not exc.unavailable:
                    raise OpenClawError(str(exc), kind=exc.kind) from exc
                spent = time.monotonic() - started
                if attempt == retries or spent >= timeout * 0.8:
                    raise InstanceUnavailable(str(exc), kind=exc.kind or "unavailable") from exc
                time.sleep(0.5 * (attempt + 1))
                continue
            log.debug(
                "%s on %s over %s in %.0f ms",
                method,
                self.container,
                self.last_transport,
                (time.monotonic() - started) * 1000,
            )
            return answer
        raise AssertionError("unreachable")

    def _exec_call(self, method: str, params: dict | None, *, timeout, retries: int) -> dict:
        """`openclaw gateway call` in the container. A busy gateway can miss the CLI's WebSocket
        handshake ("gateway_transport_error"): we give the CLI a generous budget and try again
        before calling it unavailable."""
        argv = ["gateway", "call", method, "--params", json.dumps(params or {}), "--json"]
        argv[3:3] = ["--timeout", str(int(max(5, timeout - 10) * 1000))]
        for attempt in range(retries + 1):
            try:
                answer = self.cli_json(argv, what=method, timeout=timeout)
                log.debug("%s on %s over exec", method, self.container)
                return answer
            except InstanceUnavailable:
                if attempt == retries:
                    raise
                time.sleep(2 * (attempt + 1))
        raise AssertionError("unreachable")

    # sessions

    def session_pages(
        self, *, since_ms: int = 0, now_ms: int | None = None, page_size: int = LIST_PAGE
    ) -> Iterator[SessionList]:
        """Every session (archived too), or only those updated since `since_ms` (epoch ms), as
        pages of `page_size` rows, newest update first.

        OpenClaw's filter is `activeMinutes` (metadata update age, whole minutes): we round the
        window up and add a minute, so the incremental list is a superset of what changed; the
        caller skips rows whose updatedAt it already has. Offset paging over a list that moves
        while we read can repeat a row (harmless: upserts) or skip one that moved; the hourly
        full listing heals that.
        """
        params: dict = {"archived": "all", "includeGlobal": False, "limit": int(page_size)}
        if since_ms:
            now_ms = now_ms or int(time.time() * 1000)
            params["activeMinutes"] = max(1, math.ceil((now_ms - since_ms) / 60000) + 1)
        offset = 0
        while True:
            listing = parse_sessions_list(self.call("sessions.list", {**params, "offset": offset}))
            yield listing
            if not listing.has_more or not listing.rows:
                return
            offset += len(listing.rows)

    def list_sessions(self, *, since_ms: int = 0, now_ms: int | None = None) -> SessionList:
        """Every session (archived too), or only those updated since `since_ms`: all pages."""
        rows: list[SessionRow] = []
        total = ts = 0
        for page in self.session_pages(since_ms=since_ms, now_ms=now_ms):
            rows.extend(page.rows)
            total, ts = max(total, page.total_count), ts or page.ts_ms
        return SessionList(rows=rows, total_count=max(total, len(rows)), ts_ms=ts)

    def newest(self) -> tuple[int, int, bool]:
        """(how many sessions OpenClaw holds, archived too; the newest updatedAt; whether that
        row is pinned): one cheap `sessions.list` of one row. OpenClaw lists pinned sessions
        first, so a pinned first row says nothing about the newest update."""
        payload = self.call(
            "sessions.list", {"archived": "all", "includeGlobal": False, "limit": 1}
        )
        rows = payload.get("sessions") or []
        first = rows[0] if rows and isinstance(rows[0], dict) else {}
        return (
            _int(payload.get("totalCount")),
            _int(first.get("updatedAt")),
            bool(first.get("pinned")),
        )

    def count_sessions(self) -> int:
        """How many sessions OpenClaw holds (archived too): a cheap check for deletions."""
        payload = self.call("sessions.list", {"archived": "all", "limit": 1})
        return _int(payload.get("totalCount"))

    def usage(self, keys: Iterable[str], *, retries: int = 4) -> dict[str, UsageRow]:
        """Usage totals for these keys in one or two `sessions.usage` calls.

        `sessions.usage` has no key list filter: it returns the most recently updated sessions
        first (deleted ones too, under their session id), bounded by `limit`. We ask for as many
        rows as keys plus a margin, widen once if some are missing, and ask for the rest one by
        one. Right after a restart OpenClaw answers `usage: null` while its cache refreshes
        (OPENCLAW.md §6): we ask again.
        """
        wanted = set(keys)
        if not wanted:
            return {}
        found: dict[str, UsageRow] = {}
        limit = len(wanted) + 50
        fresh = False
        pending: set[str] = set()
        for attempt in range(retries + 1):
            missing = wanted - set(found)
            if not missing:
                break
            params = {"agentScope": "all", "range": "all", "limit": limit}
            payload = self.call("sessions.usage", params)
            fresh = (payload.get("cacheStatus") or {}).get("status", "fresh") == "fresh"
            rows, pending = parse_usage(payload)
            found.update({k: v for k, v in rows.items() if k in wanted})
            if pending & missing and fresh:
                # OpenClaw's cache is fresh and still has no usage: a session without a model
                # turn yet (e.g. created by sessions.create). Zero, not "ask again forever".
                found.update({k: UsageRow(key=k) for k in pending & missing})
            elif pending & missing:
                time.sleep(min(0.5 * (attempt + 1), 2.0))
                continue
            if wanted - set(found):
                if limit >= LIST_ALL:
                    break
                limit = LIST_ALL if attempt else limit * 4
        for key in sorted(wanted - set(found))[:20]:
            params = {"key": key, "range": "all"}
            rows, _pending = parse_usage(self.call("sessions.usage", params))
            if key in rows:
                found[key] = rows[key]
        return found

    def history(self, key: str, *, offset: int | None = None, limit: int = 50, retries: int = 2):
        params: dict = {"sessionKey": key, "limit": int(limit)}
        if offset:
            params["offset"] = int(offset)
        return parse_history(self.call("chat.history", params, retries=retries))

    def archive(self, keys: list[str]) -> dict[str, str]:
        return self._lifecycle("archive", keys)

    def delete(self, keys: list[str]) -> dict[str, str]:
        return self._lifecycle("delete", keys)

    def _lifecycle(self, op: str, keys: list[str]) -> dict[str, str]:
        """`openclaw sessions archive|delete` (the Control UI's lifecycle path), in batches.

        Returns {key: status}; unknown keys report "not_found" (already gone is fine)."""
        statuses: dict[str, str] = {}
        for i in range(0, len(keys), 100):
            batch = keys[i : i + 100]
            argv = ["sessions", op, *batch, "--json"] + (["--yes"] if op == "delete" else [])
            payload = self.cli_json(argv, what=f"sessions {op}", ok_codes=(0, 1))
            for r in payload.get("results") or []:
                statuses[str(r.get("key"))] = str(r.get("status") or ("ok" if r.get("ok") else ""))
        return statuses

    # backups

    def version(self) -> str:
        code, stdout, _ = self.run(["openclaw", "--version"], timeout=60)
        text = stdout.decode() if isinstance(stdout, bytes | bytearray) else str(stdout)
        for token in text.replace("(", " ").split():
            if token[:1].isdigit() and token.count(".") >= 2:
                return token[:32]
        return ""

    def backup_create(self, out_dir: str) -> dict:
        """`openclaw backup create --verify --json` into out_dir (outside the state dir:
        OpenClaw refuses to write an archive inside a source path). Safe while running."""
        q = shlex.quote(out_dir)
        script = f"umask 077; rm -rf {q} && mkdir -p {q} && cd {q} && exec openclaw backup create --verify --json --output {q}"  # noqa: E501
        code, stdout, _ = self.run(["sh", "-c", script], timeout=1800)
        try:
            payload = extract_json(stdout)
        except OpenClawError:
            payload = {}
        if code != 0 or not payload.get("archivePath"):
            kind = str((payload.get("error") or {}).get("type") or "")
            raise OpenClawError(f"backup create: exit {code} {kind}".strip(), code=code, kind=kind)
        if not payload.get("verified"):
            raise OpenClawError("backup create: archive not verified", kind="unverified")
        return payload

    def stream_file(self, path: str, *, max_bytes: int, timeout: int = 1800) -> Iterator[bytes]:
        """A file of the container (e.g. a backup archive in its /tmp) as it comes, at most
        `max_bytes` of it: OpenClawError(kind="too_large") past that, never read whole."""
        from instances.runtime.errors import OutputTooLarge

        try:
            chunks = self.runtime.exec_stream(
                self.container, ["cat", path], timeout=timeout, user=EXEC_USER, max_bytes=max_bytes
            )
        except Exception as exc:
            name = type(exc).__name__
            if "NotFound" in name or "NotRunning" in name or "Conflict" in name:
                raise InstanceUnavailable(f"container not available ({name})") from exc
            raise OpenClawError(f"exec failed ({name})") from exc
        try:
            yield from chunks
        except OutputTooLarge as exc:
            raise OpenClawError(
                f"the file is larger than {max_bytes} bytes", kind="too_large"
            ) from exc
        except Exception as exc:
            raise OpenClawError(f"reading the file failed ({type(exc).__name__})") from exc

    def drop_config_backups(self) -> int:
        """Remove OpenClaw's copies of the previous config (they hold replaced secrets); the
        exit code, for the caller to log."""
        code, _out, _err = self.run(DROP_CONFIG_BACKUPS, timeout=30)
        return code

    def remove_path(self, path: str) -> None:
        self.run(["rm", "-rf", path], timeout=60)
