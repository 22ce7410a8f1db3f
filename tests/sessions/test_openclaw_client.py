import json
from decimal import Decimal
from pathlib import Path

import pytest

from instances.openclaw.client import (
    OpenClawClient,
    OpenClawError,
    channel_for,
    extract_json,
    parse_history,
    parse_sessions_list,
    parse_usage,
)

SAMPLES = Path(__file__).parent / "samples"


def sample(name):
    return json.loads((SAMPLES / name).read_text())


def test_sessions_list_rows_carry_key_model_updated_and_archived_flag():
    listing = parse_sessions_list(sample("sessions_list.json"))
    assert listing.total_count == 2
    beta = listing.rows[0]
    assert beta.key == "agent:main:beta"
    assert beta.agent_id == "main"
    assert beta.model == "mock/mock-model"
    assert beta.provider == "mock"
    assert beta.updated_ms == 1795627168075
    assert beta.archived is False
    assert beta.channel == "api"
    assert beta.last_activity_at.year == 2026


def test_usage_gives_totals_message_counts_and_activity_per_session():
    found, pending = parse_usage(sample("sessions_usage.json"))
    assert pending == set()
    beta = found["agent:main:beta"]
    assert (beta.input, beta.output, beta.cache_read, beta.cache_write) == (12341, 11, 0, 0)
    assert beta.cost_usd == Decimal("0.037188")
    assert beta.message_count == 2
    assert beta.first_activity < beta.last_activity
    assert beta.by_model == [("mock", "mock-model", 12341, 11, 0, 0)]


def test_usage_rows_still_refreshing_are_reported_pending_not_zero():
    payload = sample("sessions_usage.json")
    payload["sessions"][0]["usage"] = None
    found, pending = parse_usage(payload)
    assert pending == {"agent:main:beta"}
    assert "agent:main:beta" not in found


def test_history_pages_back_with_next_offset_and_flattens_content_blocks():
    messages, older = parse_history(sample("chat_history.json"))
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[1].text == "Hello from mock."
    assert messages[1].input_tokens == 12341
    assert older == 2


@pytest.mark.parametrize(
    "row,channel",
    [
        ({"key": "agent:main:telegram:direct:123"}, "telegram"),
        ({"key": "agent:main:openai-user:u1"}, "api"),
        ({"key": "agent:main:main"}, "main"),
        ({"key": "agent:main:x", "deliveryContext": {"channel": "slack"}}, "slack"),
        ({"key": "agent:main:x", "classification": "custom"}, "api"),
    ],
)
def test_channel_is_read_from_fields_then_from_the_key(row, channel):
    assert channel_for(row) == channel


def test_json_is_found_after_warning_lines():
    assert extract_json(b'[warn] something\n{"ok": true}\n') == {"ok": True}
    with pytest.raises(OpenClawError):
        extract_json(b"no json here")


class RecordingRuntime:
    def __init__(self, answers):
        self.answers = list(answers)
        self.cmds = []

    def exec(self, name, cmd, timeout=60, user="", env=None, max_output=None):
        self.max_output = max_output
        self.cmds.append(cmd)
        return self.answers.pop(0)


def test_gateway_calls_run_the_cli_inside_the_container_as_the_gateway_user():
    rt = RecordingRuntime([(0, json.dumps(sample("sessions_list.json")).encode(), b"")])
    listing = OpenClawClient(rt, "c1").list_sessions(since_ms=1, now_ms=1 + 5 * 60000)
    cmd = rt.cmds[0]
    assert cmd[:4] == ["openclaw", "gateway", "call", "sessions.list"]
    params = json.loads(cmd[cmd.index("--params") + 1])
    assert params["archived"] == "all" and params["activeMinutes"] == 6
    assert len(listing.rows) == 2


def test_a_failing_call_raises_without_the_commands_output():
    secret_output = b'{"ok": false, "error": {"type": "cli_error", "message": "transcript text"}}'
    rt = RecordingRuntime([(1, secret_output, b"more transcript text")])
    with pytest.raises(OpenClawError) as info:
        OpenClawClient(rt, "c1").call("chat.history", {"sessionKey": "k"})
    assert "transcript" not in str(info.value)
    assert "cli_error" in str(info.value)


def test_usage_asks_again_while_openclaw_refreshes_its_cache(monkeypatch):
    monkeypatch.setattr("instances.openclaw.client.time.sleep", lambda s: None)
    refreshing = sample("sessions_usage.json")
    for s in refreshing["sessions"]:
        s["usage"] = None
    refreshing["cacheStatus"] = {"status": "refreshing"}
    rt = RecordingRuntime(
        [
            (0, json.dumps(refreshing).encode(), b""),
            (0, json.dumps(sample("sessions_usage.json")).encode(), b""),
        ]
    )
    found = OpenClawClient(rt, "c1").usage(["agent:main:alpha", "agent:main:beta"])
    assert set(found) == {"agent:main:alpha", "agent:main:beta"}
    assert len(rt.cmds) == 2


def test_a_session_without_any_turn_has_zero_usage_once_the_cache_is_fresh():
    payload = sample("sessions_usage.json")
    payload["sessions"][0]["usage"] = None  # fresh cache, no usage: nothing to count
    rt = RecordingRuntime([(0, json.dumps(payload).encode(), b"")])
    found = OpenClawClient(rt, "c1").usage(["agent:main:beta"])
    assert found["agent:main:beta"].input == 0
    assert len(rt.cmds) == 1
