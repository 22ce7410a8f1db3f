"""Own prices on a real instance: a conversation through the gateway and the mock LLM costs its
tokens (as the mock LLM counted them) × the instance's own prices, and OpenClaw's own estimate,
from the prices written into its config, is the same amount."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
import requests

from sessions_mgmt import services
from sessions_mgmt.models import Session

from ..fleet_fixtures import deploy_and_wait

pytestmark = [pytest.mark.docker, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

OWN = {"price_input_per_mtok": Decimal("0.5"), "price_output_per_mtok": Decimal("1.25")}


def test_a_conversation_costs_tokens_times_own_prices_and_openclaw_agrees(
    alice_org, entitled_org, mock_llm, openclaw_image, docker_runtime, celery_worker_process
):
    entitled_org(alice_org)  # no ModelPrice for the mock model: only the own prices price it
    instance, _ = deploy_and_wait(
        alice_org, name=f"own-{uuid.uuid4().hex[:6]}", base_url=mock_llm.container_url, prices=OWN
    )
    marker = f"marker-{uuid.uuid4().hex[:10]}"
    for text in (f"Hello {marker}", f"Tell me more {marker}"):
        r = requests.post(
            f"http://127.0.0.1:{instance.host_port}/v1/chat/completions",
            headers={
                "Authorization": f"Bearer {instance.gateway_token}",
                "x-openclaw-session-key": "own-prices",
            },
            json={"model": "openclaw", "messages": [{"role": "user", "content": text}]},
            timeout=120,
        )
        assert r.status_code == 200, r.status_code
    instance.refresh_from_db()
    services.sync_instance_sessions(instance=instance, full=True)
    s = Session.objects.get(instance=instance, session_key="agent:main:own-prices")
    seen = [r for r in mock_llm.requests() if marker in r["last_user_message"]]
    assert s.input_tokens == sum(r["prompt_tokens"] for r in seen)
    assert s.output_tokens == sum(r["completion_tokens"] for r in seen)
    expected = (
        Decimal(s.input_tokens) * Decimal("0.5") + Decimal(s.output_tokens) * Decimal("1.25")
    ) / 1_000_000
    assert s.cost_usd == expected.quantize(Decimal("0.000001")) > 0
    assert s.openclaw_cost_usd == s.cost_usd  # OpenClaw's estimate from the config we wrote
    docker_runtime.client.containers.get(instance.container_name).remove(force=True)
