"""Small helpers for the engine tests: chat with an instance, read the engine."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request


def chat(instance, text: str, session_key: str = "conversation-1", timeout: float = 120) -> str:
    """One turn through the instance's OpenAI-compatible API; returns the assistant's text."""
    body = json.dumps(
        {"model": "openclaw", "messages": [{"role": "user", "content": text}]}
    ).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{instance.host_port}/v1/chat/completions",
        data=body,
        method="POST",
        headers={
            "Authorization": f"Bearer {instance.gateway_token}",
            "Content-Type": "application/json",
            "x-openclaw-session-key": session_key,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            payload = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"chat failed: HTTP {exc.code} {exc.read()[:500]!r}") from exc
    return payload["choices"][0]["message"]["content"]


def user_texts(mock_request: dict) -> list[str]:
    """The user messages the mock LLM received in one completion request."""
    from mockllm.server import content_text

    body = mock_request.get("body") or {}
    return [
        content_text(m.get("content")) for m in body.get("messages", []) if m.get("role") == "user"
    ]


def requests_with(mock, marker: str) -> list[dict]:
    return [r for r in mock.requests() if any(marker in t for t in user_texts(r))]


def restart_and_continue(instance, worker, mock, text: str, *, earlier: str) -> dict:
    """Restart the instance through the service, then chat `text`: the same session continues
    when OpenClaw sends the `earlier` turn to the model again. Returns the mock's request."""
    from accounts.services import SYSTEM
    from instances import services
    from tests.fleet_fixtures import OPERATION_TIMEOUT, wait_for_operation

    op = wait_for_operation(
        services.instance_restart(actor=SYSTEM, instance=instance),
        worker=worker,
        timeout=OPERATION_TIMEOUT,
    )
    assert op.state == "succeeded", op.error_detail
    instance.refresh_from_db()
    assert instance.status == "running"
    assert chat(instance, text) == f"Mock reply: {text}"
    (after,) = requests_with(mock, text)
    assert after["message_count"] > requests_with(mock, earlier)[0]["message_count"]
    assert earlier in str(after["body"]["messages"])
    return after


def containers_of(rt, instance) -> list[dict]:
    return rt.api.containers(all=True, filters={"label": f"clawfleet.instance={instance.pk}"})


def volumes_of(rt, instance) -> list[str]:
    vols = (rt.api.volumes(filters={"label": f"clawfleet.instance={instance.pk}"}) or {}).get(
        "Volumes"
    ) or []
    return [v["Name"] for v in vols]


def wait_until(predicate, timeout: float = 60, interval: float = 1.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
