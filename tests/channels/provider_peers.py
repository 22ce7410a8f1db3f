"""Tiny stateful stand-ins for Discord and Slack (tests only; never a production path).

Enough for the control plane's token check and for OpenClaw's Discord and Slack plugins in a
live gateway (pointed here by `DISCORD_API_URL` / `SLACK_API_URL` in the config's `env.vars`):

- Discord, under `/discord`: REST `GET /users/@me` and `GET /gateway/bot` (the WebSocket URL
  lookup), and a minimal Gateway WebSocket at `/` (HELLO, IDENTIFY -> READY, heartbeats; a
  token the peer does not accept is closed with 4004 "Authentication failed", as Discord does).
- Slack, under `/slack`: `auth.test`, `apps.connections.open` (socket mode: hands out a
  WebSocket URL at `/slack/socket/<ticket>` on the address the request came to) and the socket
  itself (a `hello` event), `invalid_auth` for a token it does not accept.

Tokens live in `discord_tokens` / `slack_tokens` (token -> identity); `slack_app_tokens` holds
the socket-mode app tokens accepted. `calls` logs every request as "METHOD path" (never the
token), `sockets` each WebSocket session (kind, accepted or not). It listens on every host
given, on one port (127.0.0.1 for the control plane, a Docker network's gateway for containers).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import struct
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class ProviderPeer:
    def __init__(self, hosts: list[str] | None = None, port: int = 0):
        self.hosts = list(hosts or ["127.0.0.1"])
        self.port = port
        self.discord_tokens: dict[str, dict] = {}
        self.slack_tokens: dict[str, dict] = {}
        self.slack_app_tokens: set[str] = set()
        self.calls: list[str] = []
        self.sockets: list[dict] = []
        self._tickets: dict[str, str] = {}
        self._servers: list[ThreadingHTTPServer] = []
        self.cond = threading.Condition()

    # --- test-side API ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.url_for(self.hosts[0])

    def url_for(self, host: str) -> str:
        return f"http://{host}:{self.port}"

    def wait_for(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 1.0))
            return True

    def _log(self, entry: str) -> None:
        with self.cond:
            self.calls.append(entry)
            self.cond.notify_all()

    # --- REST -------------------------------------------------------------------------------

    def answer(self, method: str, path: str, auth: str, host: str = "") -> tuple[int, dict]:
        path = urllib.parse.urlsplit(path).path
        self._log(f"{method} {path}")
        if path.startswith("/discord/"):
            return self._discord(method, path.removeprefix("/discord"), auth, host)
        if path.startswith("/slack/"):
            return self._slack(method, path.removeprefix("/slack"), auth, host)
        return 404, {"message": "404: Not Found"}

    def _discord(self, method: str, path: str, auth: str, host: str) -> tuple[int, dict]:
        bot = None
        if auth.startswith("Bot "):
            bot = self.discord_tokens.get(auth.removeprefix("Bot "))
        if bot is None:
            return 401, {"message": "401: Unauthorized", "code": 0}
        if path == "/users/@me" and method == "GET":
            return 200, bot
        if path == "/gateway/bot" and method == "GET":
            return 200, {
                "url": f"ws://{host}",
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 0,
                    "max_concurrency": 1,
                },
            }
        if path == "/oauth2/applications/@me" and method == "GET":
            return 200, {"id": bot["id"], "name": bot["username"], "flags": 0, "bot": bot}
        if method == "GET" and path.endswith("/commands"):
            return 200, []
        if method == "PUT" and path.endswith("/commands"):
            return 200, []
        return 200, {}

    def _slack(self, method: str, path: str, auth: str, host: str) -> tuple[int, dict]:
        token = auth.removeprefix("Bearer ")
        if path == "/apps.connections.open":
            if token not in self.slack_app_tokens:
                return 200, {"ok": False, "error": "invalid_auth"}
            ticket = secrets.token_hex(8)
            self._tickets[ticket] = token
            return 200, {"ok": True, "url": f"ws://{host}/slack/socket/{ticket}"}
        team = self.slack_tokens.get(token)
        if team is None:
            return 200, {"ok": False, "error": "invalid_auth"}
        if path == "/auth.test":
            return 200, {"ok": True, "url": "https://acme.slack.test/", **team}
        if path == "/bots.info":
            return 200, {"ok": True, "bot": {"id": team.get("bot_id", "B0"), "name": "bot"}}
        if path == "/users.info":
            return 200, {"ok": True, "user": {"id": team.get("user_id"), "name": team.get("user")}}
        return 200, {"ok": True}

    # --- WebSockets -------------------------------------------------------------------------

    def _discord_gateway(self, ws: _WebSocket) -> None:
        session = {"kind": "discord", "accepted": False}
        with self.cond:
            self.sockets.append(session)
        ws.send({"op": 10, "d": {"heartbeat_interval": 41250}, "s": None, "t": None})
        seq = 0
        while True:
            message = ws.receive()
            if message is None:
                return
            op = message.get("op")
            if op == 1:
                ws.send({"op": 11})
            elif op == 2:
                token = str((message.get("d") or {}).get("token") or "").removeprefix("Bot ")
                bot = self.discord_tokens.get(token)
                if bot is None:
                    ws.close(4004, "Authentication failed.")
                    self._log("WS discord identify refused")
                    return
                seq += 1
                ws.send(
                    {
                        "op": 0,
                        "t": "READY",
                        "s": seq,
                        "d": {
                            "v": 10,
                            "user": bot,
                            "guilds": [],
                            "session_id": secrets.token_hex(8),
                            "resume_gateway_url": f"ws://{ws.host}",
                            "application": {"id": bot["id"], "flags": 0},
                        },
                    }
                )
                with self.cond:
                    session["accepted"] = True
                    self.cond.notify_all()
                self._log("WS discord ready")
            elif op == 6:  # resume: this peer keeps no sessions
                ws.send({"op": 9, "d": False})

    def _slack_socket(self, ws: _WebSocket, ticket: str) -> None:
        token = self._tickets.pop(ticket, None)
        session = {"kind": "slack", "accepted": token is not None}
        with self.cond:
            self.sockets.append(session)
            self.cond.notify_all()
        if token is None:
            ws.close(1008, "invalid ticket")
            return
        ws.send(
            {
                "type": "hello",
                "num_connections": 1,
                "debug_info": {"host": "peer", "approximate_connection_time": 3600},
                "connection_info": {"app_id": "A0PEER"},
            }
        )
        self._log("WS slack hello")
        while ws.receive() is not None:
            pass

    # --- serving ----------------------------------------------------------------------------

    def start(self) -> ProviderPeer:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _serve(self):
                if self.headers.get("Upgrade", "").lower() == "websocket":
                    return self._upgrade()
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                host = self.headers.get("Host") or f"{self.server.server_address[0]}:{peer.port}"
                status, payload = peer.answer(
                    self.command, self.path, self.headers.get("Authorization", ""), host
                )
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _upgrade(self):
                path = urllib.parse.urlsplit(self.path).path
                peer._log(f"WS {path}")
                key = self.headers.get("Sec-WebSocket-Key", "")
                digest = hashlib.sha1((key + WS_GUID).encode(), usedforsecurity=False).digest()
                accept = base64.b64encode(digest)
                self.send_response(101, "Switching Protocols")
                self.send_header("Upgrade", "websocket")
                self.send_header("Connection", "Upgrade")
                self.send_header("Sec-WebSocket-Accept", accept.decode())
                self.end_headers()
                self.wfile.flush()
                ws = _WebSocket(self.rfile, self.wfile, self.headers.get("Host", ""))
                try:
                    if path.startswith("/slack/socket/"):
                        peer._slack_socket(ws, path.rsplit("/", 1)[-1])
                    else:
                        peer._discord_gateway(ws)
                except (OSError, ValueError):
                    pass
                self.close_connection = True

            do_GET = _serve
            do_POST = _serve
            do_PUT = _serve
            do_PATCH = _serve
            do_DELETE = _serve

        for host in self.hosts:
            server = ThreadingHTTPServer((host, self.port), Handler)
            server.daemon_threads = True
            self.port = server.server_address[1]
            self._servers.append(server)
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers = []


class _WebSocket:
    """Server side of RFC 6455, text frames only (what both providers speak)."""

    def __init__(self, rfile, wfile, host: str):
        self.rfile, self.wfile, self.host = rfile, wfile, host
        self.lock = threading.Lock()

    def _frame(self, opcode: int, payload: bytes) -> None:
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([n])
        elif n < 65536:
            header += bytes([126]) + struct.pack(">H", n)
        else:
            header += bytes([127]) + struct.pack(">Q", n)
        with self.lock:
            self.wfile.write(header + payload)
            self.wfile.flush()

    def send(self, message: dict) -> None:
        self._frame(0x1, json.dumps(message).encode())

    def close(self, code: int, reason: str) -> None:
        self._frame(0x8, struct.pack(">H", code) + reason.encode())

    def receive(self) -> dict | None:
        """The next JSON text message; None when the client closed."""
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                return None
            opcode, n = head[0] & 0x0F, head[1] & 0x7F
            if n == 126:
                n = struct.unpack(">H", self.rfile.read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self.rfile.read(8))[0]
            mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(n)))
            if opcode == 0x8:
                return None
            if opcode == 0x9:
                self._frame(0xA, data)
                continue
            if opcode == 0x1:
                try:
                    return json.loads(data or b"{}")
                except ValueError:
                    continue
