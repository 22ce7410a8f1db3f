"""A small stateful stand-in for the Telegram Bot API (tests only; never a production path).

It serves `/bot<TOKEN>/<method>` like api.telegram.org (JSON or form bodies), on every address
given (127.0.0.1 for the control plane's token check, the Docker network gateways for the
tenant container, which OpenClaw reaches through `channels.telegram.apiRoot`).

State: the bots (token -> bot user, revocable), each bot's pending updates (what `inject()`
puts there, handed out by `getUpdates` long polling with offsets) and everything a bot sent
(`sendMessage`, ...). Every call is logged in `calls` (method, bot id, params, without the
token). Unknown methods answer `{"ok": true, "result": true}` and are logged, so a new call
OpenClaw makes shows up in the log instead of breaking the channel.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Bot:
    id: int
    username: str
    token: str
    revoked: bool = False
    updates: list[dict] = field(default_factory=list)
    next_update_id: int = 1
    sent: list[dict] = field(default_factory=list)
    next_message_id: int = 1000


class TelegramPeer:
    def __init__(self, hosts: list[str], port: int = 0):
        self.hosts = list(hosts)
        self.port = port
        self.bots: dict[str, Bot] = {}
        self.calls: list[dict] = []
        self.cond = threading.Condition()
        self._servers: list[ThreadingHTTPServer] = []
        self._next_bot = 7_000_000_001

    # --- test-side API ----------------------------------------------------------------------

    def url_for(self, host: str) -> str:
        return f"http://{host}:{self.port}"

    def add_bot(self, username: str, token: str | None = None) -> str:
        with self.cond:
            bot_id = int(token.split(":")[0]) if token else self._next_bot
            self._next_bot += 1
            token = token or f"{bot_id}:AA{username.replace('_', '')}".ljust(46, "x") + "Secret"
            self.bots[token] = Bot(id=bot_id, username=username, token=token)
            return token

    def revoke(self, token: str) -> None:
        with self.cond:
            self.bots[token].revoked = True
            self.cond.notify_all()

    def restore(self, token: str) -> None:
        with self.cond:
            self.bots[token].revoked = False
            self.cond.notify_all()

    def inject(self, token: str, *, user_id: int, text: str, first_name: str = "Tess") -> int:
        """A private message from user `user_id` to the bot; returns its update_id."""
        with self.cond:
            bot = self.bots[token]
            update_id = bot.next_update_id
            bot.next_update_id += 1
            bot.next_message_id += 1
            user = {"id": user_id, "is_bot": False, "first_name": first_name, "username": None}
            user = {k: v for k, v in user.items() if v is not None}
            bot.updates.append(
                {
                    "update_id": update_id,
                    "message": {
                        "message_id": bot.next_message_id,
                        "from": user,
                        "chat": {"id": user_id, "type": "private", "first_name": first_name},
                        "date": int(time.time()),
                        "text": text,
                    },
                }
            )
            self.cond.notify_all()
            return update_id

    def sent_to(self, token: str, chat_id: int) -> list[dict]:
        with self.cond:
            return [m for m in self.bots[token].sent if str(m.get("chat_id")) == str(chat_id)]

    def wait_for(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 1.0))
            return True

    def methods(self, token: str | None = None) -> list[str]:
        bot_id = self.bots[token].id if token else None
        return [c["method"] for c in self.calls if bot_id is None or c["bot"] == bot_id]

    # --- the Bot API ------------------------------------------------------------------------

    def handle(self, token: str, method: str, params: dict) -> tuple[int, dict]:
        with self.cond:
            bot = self.bots.get(token)
            self.calls.append(
                {
                    "method": method,
                    "bot": bot.id if bot else None,
                    "params": params,
                    "at": time.time(),
                }
            )
            self.cond.notify_all()
            if bot is None or bot.revoked:
                return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
            name = method.lower()
            if name == "getme":
                return 200, {
                    "ok": True,
                    "result": {
                        "id": bot.id,
                        "is_bot": True,
                        "first_name": bot.username,
                        "username": bot.username,
                        "can_join_groups": True,
                        "can_read_all_group_messages": False,
                        "supports_inline_queries": False,
                    },
                }
            if name == "getupdates":
                return 200, {"ok": True, "result": self._updates(bot, params)}
            if name in ("sendmessage", "editmessagetext", "sendphoto", "senddocument"):
                bot.next_message_id += 1
                message = {
                    "message_id": bot.next_message_id,
                    "from": {"id": bot.id, "is_bot": True, "first_name": bot.username},
                    "chat": {"id": _int(params.get("chat_id")), "type": "private"},
                    "date": int(time.time()),
                    "text": params.get("text", ""),
                }
                bot.sent.append({"method": method, **params})
                self.cond.notify_all()
                return 200, {"ok": True, "result": message}
            if name == "getwebhookinfo":
                return 200, {"ok": True, "result": {"url": "", "pending_update_count": 0}}
            if name in ("getmycommands",):
                return 200, {"ok": True, "result": []}
            return 200, {"ok": True, "result": True}

    def _updates(self, bot: Bot, params: dict) -> list[dict]:
        """Long polling: confirm below `offset`, wait up to `timeout` s for something new."""
        offset = _int(params.get("offset"))
        if offset:
            bot.updates = [u for u in bot.updates if u["update_id"] >= offset]
        wait = min(max(_int(params.get("timeout")), 0), 25)
        deadline = time.monotonic() + wait
        while not bot.updates and not bot.revoked:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.cond.wait(min(left, 1.0))
        return list(bot.updates[: max(1, _int(params.get("limit")) or 100)])

    # --- serving ----------------------------------------------------------------------------

    def start(self) -> TelegramPeer:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet: the peer keeps its own log in `calls`
                pass

            def _params(self) -> dict:
                parsed = urllib.parse.urlsplit(self.path)
                params = dict(urllib.parse.parse_qsl(parsed.query))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                kind = self.headers.get("Content-Type", "")
                if body and "json" in kind:
                    params.update(json.loads(body))
                elif body and "x-www-form-urlencoded" in kind:
                    params.update(dict(urllib.parse.parse_qsl(body.decode())))
                return params

            def _serve(self):
                path = urllib.parse.urlsplit(self.path).path
                parts = path.strip("/").split("/")
                if len(parts) != 2 or not parts[0].startswith("bot"):
                    status, payload = (
                        404,
                        {"ok": False, "error_code": 404, "description": "Not Found"},
                    )
                else:
                    status, payload = peer.handle(parts[0][3:], parts[1], self._params())
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = _serve
            do_POST = _serve

        for host in self.hosts:
            server = ThreadingHTTPServer((host, self.port), Handler)
            server.daemon_threads = True
            self.port = server.server_address[1]
            self._servers.append(server)
            threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
            ).start()
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()


def _int(value) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0
