#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine. Idempotent: safe to call from `make test`
# and `make run` every time.
#
#   - `docker info` answers           -> exit 0 at once
#   - root on Debian, engine missing  -> apt-get install docker.io (only if the binary is missing),
#                                        start dockerd in the background (log: /var/log/dockerd.log),
#                                        wait up to 60 s
#   - otherwise                       -> print ONE line saying what is missing, exit 1
#
# We use /usr/bin/docker (the Debian docker.io client). /usr/local/bin/docker may be a lone client
# without an engine. Override with DOCKER=/path/to/docker.
set -u

DOCKER="${DOCKER:-/usr/bin/docker}"
LOG=/var/log/dockerd.log
WAIT_SECONDS="${ENSURE_DOCKER_WAIT:-60}"

engine_answers() {
    [ -x "$DOCKER" ] && timeout 10 "$DOCKER" info >/dev/null 2>&1
}

engine_answers && exit 0

if [ "$(id -u)" != "0" ] || [ ! -f /etc/debian_version ]; then
    echo "ensure-docker: no Docker engine answers ($DOCKER info failed) and this is not root on" \
        "Debian: start Docker yourself (or set DOCKER_HOST / FLEET_DOCKER_URL)." >&2
    exit 1
fi

if [ ! -x "$DOCKER" ] || ! command -v dockerd >/dev/null 2>&1; then
    echo "ensure-docker: installing docker.io with apt-get" >&2
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io; } \
        >/dev/null 2>&1; then
        echo "ensure-docker: apt-get install docker.io failed (no Debian mirror reachable?)." >&2
        exit 1
    fi
fi

# Start dockerd unless one is already running (e.g. still starting up).
if ! pgrep -x dockerd >/dev/null 2>&1; then
    # containerd is spawned by dockerd itself when it is not running as a service.
    nohup dockerd >>"$LOG" 2>&1 </dev/null &
    disown || true
fi

for _ in $(seq 1 "$WAIT_SECONDS"); do
    engine_answers && exit 0
    sleep 1
done

echo "ensure-docker: dockerd did not answer within ${WAIT_SECONDS}s; see $LOG." >&2
exit 1
