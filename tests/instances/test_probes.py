"""A gateway whose only problem is a channel (OpenClaw's /readyz 503, /startupz 200) is ready as a
gateway: starting it does not fail and the reconcile loop does not call it unhealthy. The stand-in
is a local HTTP server answering like OpenClaw does then (its docs: gateway/health.md)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from instances.runtime import NotReady, probes


def serve(answers: dict[str, int]):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(answers.get(self.path, 404))
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def channel_broken():
    server = serve({"/healthz": 200, "/readyz": 503, "/startupz": 200})
    yield server.server_address[1]
    server.shutdown()


def test_a_broken_channel_does_not_make_the_gateway_unready(channel_broken):
    assert probes.probe(channel_broken) == {"healthz": True, "readyz": True}
    waited = probes.wait_ready(channel_broken, timeout=10, interval=0.05, channel_grace=0.3)
    assert 0.3 <= waited < 5


def test_a_gateway_still_starting_is_not_ready():
    server = serve({"/healthz": 200, "/readyz": 503, "/startupz": 503})
    try:
        port = server.server_address[1]
        assert probes.probe(port) == {"healthz": True, "readyz": False}
        with pytest.raises(NotReady):
            probes.wait_ready(port, timeout=0.5, interval=0.05, channel_grace=0.1)
    finally:
        server.shutdown()
