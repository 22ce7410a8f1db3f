"""The gateway RPC client against stand-in HTTP servers on loopback: which transport it says it
used, the size cap on answers, garbage and a missing plugin (the exec fallback)."""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from instances.openclaw import gateway_rpc as rpc
from instances.openclaw.client import OpenClawClient, OpenClawError


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 200
    body = b""

    def do_POST(self):  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(self.server.status)
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def gateway():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.status, server.body = 200, b""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


class ExecRuntime:
    """Records the commands the client ran in the container."""

    def __init__(self):
        self.calls = []

    def exec(self, container, argv, **kwargs):
        self.calls.append(argv)
        return 0, json.dumps({"hash": "from-exec"}).encode(), b""


def client_for(server, runtime=None):
    endpoint = rpc.Endpoint("127.0.0.1", server.server_address[1], "t" * 32)
    return OpenClawClient(runtime or ExecRuntime(), "c", timeout=5, endpoint=endpoint)


def test_an_allowlisted_method_goes_over_the_http_admin_rpc_and_says_so(gateway):
    gateway.body = json.dumps({"ok": True, "payload": {"hash": "abc"}}).encode()
    client = client_for(gateway)
    assert client.call("config.get", {}) == {"hash": "abc"}
    assert client.last_transport == "http-rpc"
    assert rpc.HTTP_METHODS.isdisjoint({"sessions.list", "sessions.usage", "chat.history"})


def test_an_answer_larger_than_the_cap_is_refused_without_reading_it_all(gateway, settings):
    settings.FLEET_EXEC_MAX_OUTPUT = 1000
    gateway.body = json.dumps({"ok": True, "payload": {"x": "y" * 5000}}).encode()
    with pytest.raises(OpenClawError) as err:
        client_for(gateway).call("config.get", {})
    assert err.value.kind == "too_large"


def test_garbage_is_a_gateway_error_naming_the_method_not_the_answer(gateway):
    gateway.body = b"<html>secret page</html>"
    with pytest.raises(OpenClawError) as err:
        client_for(gateway).call("health", {})
    assert err.value.kind == "parse"
    assert "health" in str(err.value) and "secret" not in str(err.value)


def test_a_gateway_without_the_plugin_is_called_through_exec_and_the_client_says_so(gateway):
    gateway.status, gateway.body = 404, b"not found"
    runtime = ExecRuntime()
    client = client_for(gateway, runtime)
    assert client.call("config.get", {}) == {"hash": "from-exec"}
    assert client.last_transport == "exec"
    assert runtime.calls[0][:3] == ["openclaw", "gateway", "call"]
