#!/usr/bin/env bash
# The mock LLM for offline demos (`make run`): on loopback, on the instances' network gateway and
# on the default bridge's gateway (docker0: what host.docker.internal -> host-gateway resolves to in
# an instance container), so OpenClaw containers reach it at http://host.docker.internal:PORT/v1 or
# http://<gateway>:PORT/v1. The egress firewall lets a container reach exactly these two on this
# port (FLEET_EGRESS_ALLOW's DEBUG default: gateway:PORT and host-gateway:PORT; docs/security.md).
# `make run` runs fleet_bootstrap first, so the instances' network exists when this starts.
set -euo pipefail
port="${MOCKLLM_PORT:-18900}"
network="${FLEET_NETWORK:-clawfleet}"
log="${MOCKLLM_LOG:-var/mockllm/requests.jsonl}"
gateway_of() { /usr/bin/docker network inspect "$1" -f '{{(index .IPAM.Config 0).Gateway}}' 2>/dev/null || true; }
gateway=$(gateway_of "$network")
# The default bridge often has no IPAM gateway (the engine assigns docker0's address itself):
# then its interface's IPv4 address, which is what host-gateway means.
bridge=$(gateway_of bridge)
if [ -z "$bridge" ]; then
  ifname=$(/usr/bin/docker network inspect bridge -f '{{index .Options "com.docker.network.bridge.name"}}' 2>/dev/null || true)
  bridge=$(ip -4 -o addr show dev "${ifname:-docker0}" 2>/dev/null | awk '{split($4, a, "/"); print a[1]; exit}')
fi
hosts=(--host 127.0.0.1)
[ -n "$gateway" ] && hosts+=(--host "$gateway")
[ -n "$bridge" ] && [ "$bridge" != "$gateway" ] && hosts+=(--host "$bridge")
[ -n "$gateway" ] || echo "warning: network $network not found (run manage.py fleet_bootstrap); containers reach the mock only through host.docker.internal" >&2
echo "mock LLM (model mock-1) on 127.0.0.1${gateway:+, $gateway}${bridge:+, $bridge} port $port; an instance's base URL: http://host.docker.internal:$port/v1"
# The request log (every tenant's messages) stays on the host, readable by this user only; the
# HTTP view of it answers loopback clients on the loopback listener only, so a container cannot
# read it (decision 36).
exec python -m mockllm "${hosts[@]}" --port "$port" --model mock-1 --log "$log"
