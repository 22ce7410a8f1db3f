"""Tiny stateful stand-ins for Discord's REST API (`GET /users/@me`) and Slack's Web API
(`POST /auth.test`), enough for the control plane's token check (tests only). Each keeps the
tokens it accepts and logs the calls (without the token)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ProviderPeer:
    def __init__(self):
        self.discord_tokens: dict[str, dict] = {}
        self.slack_tokens: dict[str, dict] = {}
        self.calls: list[str] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def answer(self, method: str, path: str, auth: str) -> tuple[int, dict]:
        self.calls.append(f"{method} {path}")
        if path == "/discord/users/@me" and method == "GET":
            bot = self.discord_tokens.get(auth.removeprefix("Bot "))
            if not auth.startswith("Bot ") or bot is None:
                return 401, {"message": "401: Unauthorized", "code": 0}
            return 200, bot
        if path == "/slack/auth.test" and method == "POST":
            team = self.slack_tokens.get(auth.removeprefix("Bearer "))
            if team is None:
                return 200, {"ok": False, "error": "invalid_auth"}
            return 200, {"ok": True, **team}
        return 404, {"message": "404: Not Found"}

    def start(self) -> ProviderPeer:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                status, payload = peer.answer(
                    self.command, self.path, self.headers.get("Authorization", "")
                )
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = _serve
            do_POST = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
