"""OpenAI-compatible mock LLM: deterministic replies and token counts, every completion recorded.

Endpoints (each also without the ``/v1`` prefix):

- ``GET  /v1/models``                 one model (``mock-model`` unless told otherwise)
- ``POST /v1/chat/completions``       streaming (SSE, final usage chunk when
  ``stream_options.include_usage``, then ``data: [DONE]``) and non-streaming
- ``GET  /_mock/requests``            recorded completions as JSON (oldest first)
- ``DELETE /_mock/requests``          forget them
- ``GET  /_mock/health``              ``{"ok": true}``

The request log holds every tenant's messages, so tenants never read it: ``/_mock/requests``
answers only a loopback client on a loopback listener (a container reaches the mock on the
instances' network gateway, never on the host's loopback), 404 otherwise. Tests read it in
process (``MockLLM.requests()``). With ``log_path`` (``python -m mockllm --log FILE``) every record
is also appended to a JSON-lines file created 0600 in a 0700 directory, outside any volume.

Determinism (tests may predict or read these):

- reply text: ``"Mock reply: " + <text of the last user message, whitespace collapsed, cut to
  REPLY_MAX_CHARS>``. What OpenClaw wraps around the user's words is removed first (its
  ``<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>`` turns, the ``[Wed 2026-11-25 17:24 UTC]`` time
  envelope, the ``Runtime: agent=...`` line), so a chat "hello" through OpenClaw is answered
  "Mock reply: hello".
- ``prompt_tokens = (characters of the text of every message) // 4 + 1``
- ``completion_tokens = number of whitespace-separated words of the reply``

Test hooks in the last user message: ``[mock:error]`` answers HTTP 500, ``[mock:slow N]`` sleeps N
seconds (at most 60) before answering.

Tool calls: requests that carry ``tools`` (OpenClaw always sends its tool list) get a plain text
reply with ``finish_reason: "stop"``; the mock never calls a tool.

Secrets are never recorded: ``Authorization`` and other credential headers are dropped; only a
short SHA-256 prefix of the bearer value is kept (``auth_sha256``) so tests can check which key was
sent.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REPLY_PREFIX = "Mock reply: "
REPLY_MAX_CHARS = 200
DEFAULT_MODEL = "mock-model"
MAX_BODY = 32 * 1024 * 1024

_SECRET_HEADER_NAMES = {
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
}
_SECRET_HEADER_WORDS = ("secret", "token", "password", "key")
_SLOW_RE = re.compile(r"\[mock:slow\s+(\d+(?:\.\d+)?)\]")
_TIME_ENVELOPE_RE = re.compile(r"^\[[A-Z][a-z]{2} \d{4}-\d{2}-\d{2} \d{2}:\d{2}[^\]\n]{0,40}\]\s*")
_RUNTIME_LINE_RE = re.compile(r"^Runtime: agent=.*$", re.M)
_INTERNAL_CONTEXT_RE = re.compile(
    r"<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>.*?<<<END_OPENCLAW_INTERNAL_CONTEXT>>>", re.S
)


# --- deterministic content ---------------------------------------------------------------------


def content_text(content: Any) -> str:
    """Text of an OpenAI message ``content``: a string or a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    parts.append(text)
        return "\n".join(parts)
    if isinstance(content, dict) and isinstance(content.get("text"), str):
        return content["text"]
    return ""


def strip_internal_context(text: str) -> str:
    """The user's own words: drop what OpenClaw wraps around them (internal context blocks sent as
    extra user turns, the ``[Wed 2026-11-25 17:24 UTC]`` time envelope, the ``Runtime: ...``
    line of a session's first turn)."""
    text = _INTERNAL_CONTEXT_RE.sub("", text)
    text = _RUNTIME_LINE_RE.sub("", text)
    return _TIME_ENVELOPE_RE.sub("", text.strip(), count=1).strip()


def last_user_text(messages: list[dict]) -> str:
    """Text of the last user message that is not only OpenClaw internal context."""
    for message in reversed(messages or []):
        if isinstance(message, dict) and message.get("role") == "user":
            text = strip_internal_context(content_text(message.get("content")))
            if text:
                return text
    return ""


def reply_for(messages: list[dict]) -> str:
    text = " ".join(last_user_text(messages).split())
    return REPLY_PREFIX + text[:REPLY_MAX_CHARS]


def prompt_tokens_for(messages: list[dict]) -> int:
    chars = sum(
        len(content_text(m.get("content"))) for m in (messages or []) if isinstance(m, dict)
    )
    return chars // 4 + 1


def completion_tokens_for(reply: str) -> int:
    return len(reply.split())


def _public_headers(headers) -> tuple[dict[str, str], str | None]:
    kept: dict[str, str] = {}
    auth_hash = None
    for name, value in headers.items():
        lname = name.lower()
        if lname == "authorization":
            token = value.split(" ", 1)[1] if " " in value else value
            auth_hash = hashlib.sha256(token.strip().encode()).hexdigest()[:12]
            continue
        if lname in _SECRET_HEADER_NAMES or any(w in lname for w in _SECRET_HEADER_WORDS):
            continue
        kept[lname] = value
    return kept, auth_hash


# --- server --------------------------------------------------------------------------------------


@dataclass
class MockLLM:
    """Handle on running mock servers (one per bound address, same port)."""

    hosts: list[str]
    port: int
    model_id: str = DEFAULT_MODEL
    keep_bodies: bool = False  # also record the full request body (debugging; may hold secrets)
    log_path: str | None = None  # also append each record here (JSON lines, 0600)
    _servers: list[ThreadingHTTPServer] = field(default_factory=list, repr=False)
    _threads: list[threading.Thread] = field(default_factory=list, repr=False)
    _records: list[dict] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def url(self) -> str:
        """Base URL (with ``/v1``) on the first host."""
        return self.url_for(self.hosts[0])

    @property
    def urls(self) -> list[str]:
        return [self.url_for(h) for h in self.hosts]

    def url_for(self, host: str) -> str:
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}/v1"

    def requests(self) -> list[dict]:
        with self._lock:
            return [dict(r) for r in self._records]

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def record(self, entry: dict) -> None:
        with self._lock:
            self._records.append(entry)
            if self.log_path:
                _append_private(self.log_path, json.dumps(entry, default=str) + "\n")

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> MockLLM:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _append_private(path: str, line: str) -> None:
    """Append to a file only its owner may read, in a directory only its owner may enter."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, mock: MockLLM):
        if ":" in address[0]:
            import socket

            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.mock = mock


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "mockllm/1"

    def log_message(self, format, *args):  # noqa: A002 - quiet: tests read /_mock/requests
        return

    # -- helpers
    def _path(self) -> str:
        path = self.path.split("?", 1)[0].rstrip("/")
        return path[3:] if path.startswith("/v1/") else path

    def _send_json(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        self._send_json(status, {"error": {"message": message, "type": kind, "code": status}})

    def _log_readable(self) -> bool:
        """The request log is for the operator on this machine, never for a tenant."""
        listener = self.server.server_address[0]
        return _is_loopback(listener) and _is_loopback(self.client_address[0])

    # -- verbs
    def do_GET(self):
        path = self._path()
        mock = self.server.mock
        if path in ("/models", "/v1/models"):
            self._send_json(
                200,
                {
                    "object": "list",
                    "data": [
                        {
                            "id": mock.model_id,
                            "object": "model",
                            "created": 0,
                            "owned_by": "mockllm",
                        }
                    ],
                },
            )
        elif path.startswith("/models/"):
            model = path.split("/", 2)[2]
            self._send_json(
                200, {"id": model, "object": "model", "created": 0, "owned_by": "mockllm"}
            )
        elif path == "/_mock/requests" and self._log_readable():
            self._send_json(200, mock.requests())
        elif path == "/_mock/health":
            self._send_json(200, {"ok": True})
        else:
            self._error(404, f"no route GET {path}")

    def do_DELETE(self):
        if self._path() == "/_mock/requests" and self._log_readable():
            self.server.mock.clear()
            self._send_json(200, {"cleared": True})
        else:
            self._error(404, "no route")

    def do_POST(self):
        path = self._path()
        if path not in ("/chat/completions", "/v1/chat/completions"):
            self._error(404, f"no route POST {path}")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._error(413, "body too large")
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(body, dict):
                raise ValueError("body must be an object")
        except ValueError as exc:
            self._error(400, f"invalid JSON: {exc}")
            return
        self._complete(body)

    def _complete(self, body: dict) -> None:
        mock = self.server.mock
        messages = body.get("messages") if isinstance(body.get("messages"), list) else []
        model = str(body.get("model") or mock.model_id)
        stream = bool(body.get("stream"))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        user_text = last_user_text(messages)
        reply = reply_for(messages)
        usage = {
            "prompt_tokens": prompt_tokens_for(messages),
            "completion_tokens": completion_tokens_for(reply),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        headers, auth_hash = _public_headers(self.headers)
        now = time.time()
        entry = {
            "time": now,
            "time_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "model": model,
            "stream": stream,
            "include_usage": include_usage,
            "last_user_message": user_text,
            "reply": reply,
            "message_count": len(messages),
            "roles": [m.get("role") for m in messages if isinstance(m, dict)],
            "tools_count": len(body.get("tools") or []),
            "prompt_tokens": usage["prompt_tokens"],
            "completion_tokens": usage["completion_tokens"],
            "total_tokens": usage["total_tokens"],
            "client": self.client_address[0],
            "headers": headers,
            "auth_sha256": auth_hash,
            "status": 200,
        }
        slow = _SLOW_RE.search(user_text)
        if slow:
            time.sleep(min(float(slow.group(1)), 60.0))
        if "[mock:error]" in user_text:
            entry["status"] = 500
            mock.record(entry)
            self._error(500, "mock error requested", "server_error")
            return
        if mock.keep_bodies:
            entry["body"] = body
        mock.record(entry)
        completion_id = f"chatcmpl-mock-{uuid.uuid4().hex[:16]}"
        created = int(now)
        if not stream:
            self._send_json(
                200,
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": reply},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                },
            )
            return
        self._stream(completion_id, created, model, reply, usage, include_usage)

    def _stream(self, completion_id, created, model, reply, usage, include_usage) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

        def chunk(delta: dict | None, finish: str | None = None, with_usage=False) -> dict:
            payload = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": []
                if delta is None
                else [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if with_usage:
                payload["usage"] = usage
            return payload

        events = [chunk({"role": "assistant", "content": ""})]
        words = reply.split(" ")
        for i in range(0, len(words), 4):
            piece = " ".join(words[i : i + 4])
            events.append(chunk({"content": piece if i == 0 else " " + piece}))
        events.append(chunk({}, "stop"))
        if include_usage:
            events.append(chunk(None, with_usage=True))
        try:
            for event in events:
                self.wfile.write(b"data: " + json.dumps(event).encode() + b"\n\n")
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass


def start_mock_llm(
    hosts: list[str] | str = "127.0.0.1",
    port: int = 0,
    *,
    model_id: str = DEFAULT_MODEL,
    log_path: str | None = None,
) -> MockLLM:
    """Serve the mock on every address in ``hosts`` (same port) from daemon threads.

    ``port=0`` picks a free port on the first address and reuses it for the others.
    """
    if isinstance(hosts, str):
        hosts = [hosts]
    if not hosts:
        raise ValueError("at least one host")
    mock = MockLLM(hosts=list(hosts), port=port, model_id=model_id, log_path=log_path)
    try:
        for host in hosts:
            server = _Server((host, mock.port), mock)
            mock.port = server.server_address[1]
            mock._servers.append(server)
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.2},
                name=f"mockllm-{host}:{mock.port}",
                daemon=True,
            )
            thread.start()
            mock._threads.append(thread)
    except BaseException:
        mock.stop()
        raise
    return mock
