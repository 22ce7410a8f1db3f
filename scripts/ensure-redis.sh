#!/usr/bin/env bash
# Redis is the Celery broker and the cache (rate limits). Start it, or install it on Debian.
set -euo pipefail
ping() { (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && timeout 2 head -c 5 <&3 | grep -q PONG) 2>/dev/null; }
ping && exit 0
if ! command -v redis-server >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "Redis is not running on 127.0.0.1:6379 and not installed: install redis-server and start it." >&2
    exit 1
  fi
fi
mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
  --dir "${TMPDIR:-/tmp}" --logfile "${TMPDIR:-/tmp}/clawfleet-redis.log"
for _ in $(seq 1 30); do ping && exit 0; sleep 0.2; done
echo "Redis did not start; see ${TMPDIR:-/tmp}/clawfleet-redis.log" >&2
exit 1
