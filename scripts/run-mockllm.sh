#!/usr/bin/env bash
# The mock LLM for offline demos (`make run`): on loopback and on the instances' network gateway,
# so OpenClaw containers reach it at http://<gateway>:PORT/v1 (the network keeps other traffic off).
set -euo pipefail
port="${MOCKLLM_PORT:-18900}"
network="${FLEET_NETWORK:-clawfleet}"
gateway=$(/usr/bin/docker network inspect "$network" -f '{{(index .IPAM.Config 0).Gateway}}' 2>/dev/null || true)
hosts=(--host 127.0.0.1)
[ -n "$gateway" ] && hosts+=(--host "$gateway")
echo "mock LLM on ${gateway:-127.0.0.1}:$port (model mock-1); use base URL http://${gateway:-127.0.0.1}:$port/v1"
# The request log (every tenant's messages) stays on the host, readable by this user only; the
# HTTP view of it answers loopback clients only, so a container cannot read it.
exec python -m mockllm "${hosts[@]}" --port "$port" --model mock-1 --log var/mockllm/requests.jsonl
