"""The offline mock LLM's request log (every tenant's messages) is not readable by tenants."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import urllib.request

import pytest

from mockllm.server import _Handler, start_mock_llm


@pytest.fixture
def mock():
    server = start_mock_llm("127.0.0.1", 0)
    yield server
    server.stop()


def chat(url: str, text: str) -> None:
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": text}]}).encode()
    request = urllib.request.Request(
        f"{url}/chat/completions", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        assert response.status == 200


def get_as(mock, client_ip: str, path: str) -> tuple[int, bytes]:
    """One request through the mock's real handler, as if it came from `client_ip` (a container
    on the instances' network), over a socket pair: no packet leaves this process."""
    ours, theirs = socket.socketpair()
    theirs.sendall(f"GET {path} HTTP/1.1\r\nHost: mock\r\nConnection: close\r\n\r\n".encode())
    worker = threading.Thread(target=_Handler, args=(ours, (client_ip, 40000), mock._servers[0]))
    worker.start()
    worker.join(timeout=10)
    ours.close()
    raw = b""
    while chunk := theirs.recv(65536):
        raw += chunk
    theirs.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_a_container_cannot_read_the_request_log_but_the_operator_can(mock):
    chat(mock.url, "alice's private question")
    status, body = get_as(mock, "172.18.0.5", "/_mock/requests")
    assert status == 404 and b"private" not in body
    assert get_as(mock, "172.18.0.5", "/_mock/health")[0] == 200  # still reachable for probes
    status, body = get_as(mock, "127.0.0.1", "/_mock/requests")
    assert status == 200 and b"alice's private question" in body


def test_the_request_log_file_is_private_to_its_owner(tmp_path):
    path = tmp_path / "mockllm" / "requests.jsonl"
    server = start_mock_llm("127.0.0.1", 0, log_path=str(path))
    try:
        chat(server.url, "bob's question")
    finally:
        server.stop()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    (record,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert record["last_user_message"] == "bob's question"
