#!/usr/bin/env bash
# The edge proxy for `make run` (the Procfile's `edge` process): Caddy with ONLY its admin API
# on loopback. instances/edge.py loads the `clawfleet` server and every instance route through
# that API (the reconcile loop reloads them after a restart of this process), so nothing here
# knows a route. Certificates and the local CA live under var/edge/.
set -euo pipefail
admin="${FLEET_EDGE_ADMIN_URL:-http://127.0.0.1:2019}"
admin="${admin#http://}"
admin="${admin%/}"
case "$admin" in
  127.*|localhost:*|\[::1\]:*) ;;
  *) echo "FLEET_EDGE_ADMIN_URL must be a loopback address (got $admin)" >&2; exit 1 ;;
esac
mkdir -p var/edge
root="$(pwd)/var/edge"
cat >var/edge/boot.json <<JSON
{"admin": {"listen": "$admin"},
 "storage": {"module": "file_system", "root": "$root/data"},
 "logging": {"logs": {"default": {"level": "WARN"}}}}
JSON
echo "edge proxy: admin API on $admin; instance addresses https://<instance>-<org>.${FLEET_BASE_DOMAIN:-localhost}:${FLEET_EDGE_PUBLIC_PORT:-8443}"
exec caddy run --config var/edge/boot.json
