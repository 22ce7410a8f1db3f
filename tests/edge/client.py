"""HTTPS through the session's edge proxy the way a customer's client goes: TLS with SNI for the
instance's public name, verified against the proxy's CA only. `*.localhost` resolves to loopback
in browsers and curl; Python's resolver does not know it, so the socket goes to 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class Answer:
    status: int
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class _Loopback(http.client.HTTPSConnection):
    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def request(url: str, ctx, *, method="GET", headers=None, body=None, timeout=90) -> Answer:
    parts = urlsplit(url)
    conn = _Loopback(parts.hostname, parts.port or 443, context=ctx, timeout=timeout)
    payload = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    hdrs = {"Content-Type": "application/json"} if isinstance(body, (dict, list)) else {}
    hdrs.update(headers or {})
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        conn.request(method, path, body=payload, headers=hdrs)
        resp = conn.getresponse()
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def chat(url: str, ctx, token: str, text: str, *, session_key: str = "edge-test") -> Answer:
    return request(
        url.rstrip("/") + "/v1/chat/completions",
        ctx,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "x-openclaw-session-key": session_key},
        body={"model": "openclaw", "messages": [{"role": "user", "content": text}]},
    )
