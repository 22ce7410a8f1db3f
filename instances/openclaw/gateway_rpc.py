"""The control plane's persistent, authenticated channels to a gateway (OPENCLAW.md §4, §9).

Two transports, both to the gateway's port published on 127.0.0.1 of the engine's host (the
address the health probes use: loopback only, never the public edge, which refuses
``/api/v1/admin*``):

- **HTTP admin RPC** (the bundled ``admin-http-rpc`` plugin, enabled by our config):
  ``POST /api/v1/admin/rpc`` with ``Authorization: Bearer <gateway token>``. It serves an
  allowlist only (``config.*``, ``health``, ``status``, ``usage.cost``, ``channels.*``,
  ``device.pair.*``...): no ``sessions.*`` and no ``chat.history``.
- **WebSocket RPC** for the rest. Through a published port a shared-token client gets no
  scopes; a *paired device* does. The control plane has one Ed25519 device identity, derived
  from SECRET_KEY (nothing to store; a new SECRET_KEY is a new device, paired again on its first
  call). The first connect to a gateway answers ``PAIRING_REQUIRED`` with a request id; we
  approve it once through the HTTP admin RPC (``device.pair.approve``, the gateway token's full
  operator scope) and connect again. The pairing lives in the instance's state volume.

Connections are kept per process: one ``requests.Session`` (keep-alive pool) and one open
socket per gateway, each used by one thread at a time. Every read has a timeout and answers are
capped at FLEET_GATEWAY_MAX_OUTPUT bytes (read as they come, never buffered past the cap).
Errors carry the method and OpenClaw's error code, never a payload or the token.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache

log = logging.getLogger(__name__)

ADMIN_RPC_PATH = "/api/v1/admin/rpc"
# What admin-http-rpc 2026.9.x serves (its methods.ts allowlist); the rest goes over the socket.
HTTP_METHODS = frozenset(
    [
        "health",
        "status",
        "logs.tail",
        "usage.status",
        "usage.cost",
        "commands.list",
        "config.get",
        "config.schema",
        "config.schema.lookup",
        "config.set",
        "config.patch",
        "config.apply",
        "channels.status",
        "channels.start",
        "channels.stop",
        "channels.logout",
        "models.list",
        "agents.list",
        "device.pair.list",
        "device.pair.approve",
        "device.pair.reject",
        "device.pair.remove",
        "tasks.list",
        "update.status",
    ]
)
CLIENT_ID = "gateway-client"
CLIENT_MODE = "backend"
ROLE = "operator"
SCOPES = ["operator.admin", "operator.read", "operator.write"]
PLATFORM = "linux"
PROTOCOL = 4
CONNECT_TIMEOUT = 5.0
MAX_HEADER_BYTES = 64 * 1024


class RpcError(Exception):
    """A transport or gateway error. ``unavailable``: the gateway did not answer (down, slow,
    refused); otherwise it answered with an error or something we cannot read."""

    def __init__(self, message: str, *, kind: str = "", unavailable: bool = False):
        self.kind = kind
        self.unavailable = unavailable
        super().__init__(message)


# --- the control plane's device identity -----------------------------------------------------


@dataclass(frozen=True)
class Device:
    id: str
    public_key: str  # raw 32 bytes, base64url without padding (OpenClaw's canonical form)
    private: object

    def sign(self, payload: str) -> str:
        return _b64url(self.private.sign(payload.encode()))


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@lru_cache(maxsize=4)
def _device_for(secret: str) -> Device:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    seed = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"clawfleet gateway device v1"
    ).derive(secret.encode())
    key = Ed25519PrivateKey.from_private_bytes(seed)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return Device(id=hashlib.sha256(raw).hexdigest(), public_key=_b64url(raw), private=key)


def device() -> Device:
    from django.conf import settings

    return _device_for(settings.SECRET_KEY)


def connect_params(dev: Device, *, token: str, nonce: str, signed_at: int) -> dict:
    """The `connect` request of protocol 4, signed with the v3 device payload
    (buildDeviceAuthPayloadV3: v3|device|client|mode|role|scopes|ts|token|nonce|platform|family)."""
    payload = "|".join(
        [
            "v3",
            dev.id,
            CLIENT_ID,
            CLIENT_MODE,
            ROLE,
            ",".join(SCOPES),
            str(signed_at),
            token,
            nonce,
            PLATFORM,
            "",
        ]
    )
    return {
        "minProtocol": PROTOCOL,
        "maxProtocol": PROTOCOL,
        "client": {
            "id": CLIENT_ID,
            "displayName": "Clawfleet control plane",
            "version": "1",
            "platform": PLATFORM,
            "mode": CLIENT_MODE,
        },
        "caps": [],
        "role": ROLE,
        "scopes": SCOPES,
        "auth": {"token": token},
        "device": {
            "id": dev.id,
            "publicKey": dev.public_key,
            "signature": dev.sign(payload),
            "signedAt": signed_at,
            "nonce": nonce,
        },
    }


# --- HTTP admin RPC ---------------------------------------------------------------------------

_local = threading.local()


def http_session():
    """This thread's keep-alive pool (requests.Session is not documented thread-safe)."""
    import requests

    session = getattr(_local, "session", None)
    if session is None or getattr(_local, "pid", None) != os.getpid():
        session = _local.session = requests.Session()
        session.trust_env = False  # never a proxy from the environment for a loopback call
        _local.pid = os.getpid()
    return session


def read_capped(chunks, limit: int, what: str) -> bytes:
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        if len(buf) > limit:
            raise RpcError(f"{what}: the answer was larger than {limit} bytes", kind="too_large")
    return bytes(buf)


def http_call(
    base_url: str, token: str, method: str, params: dict, *, timeout: float, limit: int
) -> dict:
    import requests

    try:
        r = http_session().post(
            base_url + ADMIN_RPC_PATH,
            json={"method": method, "params": params},
            headers={"Authorization": f"Bearer {token}"},
            timeout=(min(CONNECT_TIMEOUT, timeout), timeout),
            stream=True,
        )
    except requests.RequestException as exc:
        raise RpcError(f"{method}: {type(exc).__name__}", unavailable=True) from exc
    try:
        try:
            body = read_capped(r.iter_content(65536), limit, method)
        except requests.RequestException as exc:
            raise RpcError(f"{method}: {type(exc).__name__}", unavailable=True) from exc
    finally:
        r.close()
    if r.status_code == 404:
        raise RpcError(f"{method}: HTTP RPC not enabled (404)", kind="not_enabled")
    if r.status_code == 401:
        raise RpcError(f"{method}: unauthorized (401)", kind="unauthorized")
    return _answer(method, body, status=r.status_code)


def _answer(method: str, body: bytes, *, status: int = 200) -> dict:
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise RpcError(f"{method}: unreadable answer (HTTP {status})", kind="parse") from exc
    return answer_of(method, doc, status=status)


def answer_of(method: str, doc, *, status: int = 200) -> dict:
    """The payload of an RPC answer ({ok, payload} or {ok: false, error: {code}})."""
    if not isinstance(doc, dict) or "ok" not in doc:
        raise RpcError(f"{method}: unexpected answer (HTTP {status})", kind="parse")
    if not doc.get("ok"):
        err = doc.get("error") if isinstance(doc.get("error"), dict) else {}
        code = str(err.get("code") or err.get("type") or "error")
        raise RpcError(f"{method}: {code}", kind=code, unavailable=code == "UNAVAILABLE")
    payload = doc.get("payload")
    return payload if isinstance(payload, dict) else {"value": payload}


# --- WebSocket RPC (RFC 6455 client, text frames, no extensions) -----------------------------


class Socket:
    """One authenticated WebSocket to one gateway. Not thread-safe: the pool lends it out."""

    def __init__(self, host: str, port: int, *, timeout: float, limit: int):
        self.host, self.port, self.limit = host, port, limit
        self.sock = socket.create_connection((host, port), timeout=min(CONNECT_TIMEOUT, timeout))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout)
        self._buf = b""
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = self._read_until(b"\r\n\r\n", MAX_HEADER_BYTES)
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            raise RpcError(f"websocket upgrade refused ({status[:40]!r})", kind="upgrade")
        accept = base64.b64encode(
            hashlib.sha1(  # noqa: S324 - RFC 6455 fixes SHA-1 for the accept key
                (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()
            ).digest()
        )
        if accept not in head:
            raise RpcError("websocket upgrade without a valid accept key", kind="upgrade")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._send(0x8, b"")
        with contextlib.suppress(OSError):
            self.sock.close()

    def settimeout(self, timeout: float) -> None:
        self.sock.settimeout(timeout)

    def _recv(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self._buf)))
            if not chunk:
                raise ConnectionError("closed by the gateway")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _read_until(self, marker: bytes, limit: int) -> bytes:
        while marker not in self._buf:
            if len(self._buf) > limit:
                raise RpcError("websocket handshake answer too large", kind="upgrade")
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            self._buf += chunk
        head, self._buf = self._buf.split(marker, 1)
        return head

    def _send(self, opcode: int, data: bytes) -> None:
        n = len(data)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        mask = os.urandom(4)
        masked = (
            bytes(b ^ mask[i % 4] for i, b in enumerate(data)) if n < 256 else _mask(data, mask)
        )
        self.sock.sendall(header + mask + masked)

    def send_json(self, doc: dict) -> None:
        self._send(0x1, json.dumps(doc, separators=(",", ":")).encode())

    def recv_json(self) -> dict:
        """The next text message (fragments joined; pings answered), at most `limit` bytes."""
        parts: list[bytes] = []
        size = 0
        while True:
            b0, b1 = self._recv(2)
            opcode, fin, n = b0 & 0x0F, b0 & 0x80, b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", self._recv(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", self._recv(8))
            mask = self._recv(4) if b1 & 0x80 else b""
            if opcode in (0x1, 0x2, 0x0) and size + n > self.limit:
                raise RpcError(f"an answer larger than {self.limit} bytes", kind="too_large")
            data = self._recv(n)
            if mask:
                data = _mask(data, mask)
            if opcode == 0x8:
                raise ConnectionError("closed by the gateway")
            if opcode == 0x9:
                self._send(0xA, data)
                continue
            if opcode == 0xA:
                continue
            parts.append(data)
            size += n
            if fin:
                try:
                    doc = json.loads(b"".join(parts))
                except ValueError as exc:
                    raise RpcError("unreadable frame", kind="parse") from exc
                if not isinstance(doc, dict):
                    raise RpcError("unexpected frame", kind="parse")
                return doc

    def request(self, method: str, params: dict, *, timeout: float) -> dict:
        rid = uuid.uuid4().hex
        self.send_json({"type": "req", "id": rid, "method": method, "params": params})
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(method)
            self.sock.settimeout(left)
            frame = self.recv_json()
            if frame.get("type") == "res" and frame.get("id") == rid:
                return frame
            # events (presence, ticks...) and answers to nobody: skipped


def _mask(data: bytes, mask: bytes) -> bytes:
    n = len(data)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(data, "big") ^ key).to_bytes(n, "big") if n else b""


@dataclass
class Endpoint:
    """Where and how one gateway is reached (what the pool keys its socket by)."""

    host: str
    port: int
    token: str

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def key(self) -> tuple:
        return (self.host, self.port, hashlib.sha256(self.token.encode()).hexdigest()[:16])


class _Pool:
    """Idle sockets per gateway in this process; a socket is used by one caller at a time."""

    def __init__(self):
        self.lock = threading.Lock()
        self.idle: dict[tuple, list[Socket]] = {}
        self.pid = os.getpid()

    def take(self, key) -> Socket | None:
        with self.lock:
            if self.pid != os.getpid():  # forked (a Celery prefork child): never share sockets
                self.idle, self.pid = {}, os.getpid()
            stack = self.idle.get(key)
            return stack.pop() if stack else None

    def give(self, key, sock: Socket) -> None:
        with self.lock:
            stack = self.idle.setdefault(key, [])
            if len(stack) < 16:
                stack.append(sock)
                return
        sock.close()

    def drop(self, key) -> None:
        with self.lock:
            for s in self.idle.pop(key, []):
                s.close()


POOL = _Pool()


def _handshake(ep: Endpoint, *, timeout: float, limit: int) -> tuple[Socket | None, dict]:
    """Challenge and signed connect: the authenticated socket, or None and the refusal."""
    sock = Socket(ep.host, ep.port, timeout=timeout, limit=limit)
    try:
        challenge = sock.recv_json()
        if challenge.get("event") != "connect.challenge":
            raise RpcError("no connect challenge", kind="protocol")
        nonce = str((challenge.get("payload") or {}).get("nonce") or "")
        ts = int((challenge.get("payload") or {}).get("ts") or time.time() * 1000)
        params = connect_params(device(), token=ep.token, nonce=nonce, signed_at=ts)
        res = sock.request("connect", params, timeout=timeout)
    except BaseException:
        sock.close()
        raise
    if res.get("ok"):
        return sock, {}
    sock.close()
    return None, res.get("error") or {}


PAIRING_ATTEMPTS = 4


def _connect(ep: Endpoint, *, timeout: float, limit: int) -> Socket:
    """An authenticated socket: challenge, signed connect, and (once per gateway) pairing.

    Several processes of the control plane (the web, each worker) share one device identity
    and may meet an unpaired gateway at the same moment: each gets a pairing request, the first
    approval wins and the others' approvals are refused (their request is gone). So a refused
    approval is not an error by itself: connect again and see whether the device is paired now.
    """
    for attempt in range(PAIRING_ATTEMPTS):
        sock, err = _handshake(ep, timeout=timeout, limit=limit)
        if sock is not None:
            return sock
        details = err.get("details") or {}
        code = str(details.get("code") or err.get("code") or "error")
        request_id = details.get("requestId")
        if "PAIRING" not in code.upper() or not request_id or attempt == PAIRING_ATTEMPTS - 1:
            raise RpcError(f"connect: {code}", kind=code)
        log.info("pairing the control plane with the gateway at %s:%s", ep.host, ep.port)
        try:
            http_call(
                ep.base_url,
                ep.token,
                "device.pair.approve",
                {"requestId": request_id},
                timeout=timeout,
                limit=limit,
            )
        except RpcError as exc:
            if exc.unavailable:
                raise
            log.info("pairing request not approved (%s); connecting again", exc)
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def ws_call(ep: Endpoint, method: str, params: dict, *, timeout: float, limit: int) -> dict:
    """One RPC on a pooled socket. A socket the gateway closed while idle is reopened once."""
    for attempt in (0, 1):
        sock = POOL.take(ep.key)
        fresh = sock is None
        try:
            if sock is None:
                sock = _connect(ep, timeout=timeout, limit=limit)
            res = sock.request(method, params, timeout=timeout)
        except RpcError:
            if sock is not None:
                sock.close()
            raise
        except (OSError, ConnectionError, TimeoutError) as exc:
            if sock is not None:
                sock.close()
            if fresh or attempt or isinstance(exc, TimeoutError | socket.timeout):
                raise RpcError(f"{method}: {type(exc).__name__}", unavailable=True) from exc
            continue  # an idle socket the gateway had closed: one fresh try
        POOL.give(ep.key, sock)
        return answer_of(method, res)
    raise AssertionError("unreachable")
