#!/usr/bin/env bash
# The egress firewall of tenant containers (docs/security.md). Idempotent: safe to call from
# `make run` and `make test` every time.
#
#   ensure-firewall.sh          create the instances' network (FLEET_NETWORK) when missing, install
#                               its rules, verify them (make run; production: on every engine host)
#   ensure-firewall.sh --base   only the dispatch chains and their jumps (make test: each test
#                               session installs the rules of its own network)
#
# Needs root (iptables). Otherwise it prints ONE line saying what is missing and exits 1.
set -u
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"

if [ "$(id -u)" != "0" ]; then
    echo "ensure-firewall: root is needed to install the egress firewall (iptables): run" \
        "'sudo bash scripts/ensure-firewall.sh' once per boot" >&2
    exit 1
fi
if ! command -v iptables >/dev/null 2>&1 && [ ! -x /usr/sbin/iptables ]; then
    echo "ensure-firewall: iptables is missing (apt-get install iptables; docker.io needs it too)" >&2
    exit 1
fi

action=ensure
[ "${1:-}" = "--base" ] && { action=base; shift; }
exec "$PY" manage.py fleet_firewall "$action" "$@"
