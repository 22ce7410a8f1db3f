#!/usr/bin/env bash
# A real three-node Docker Swarm on this one machine (issue 19, item 7; docs/swarm.md).
#
#   scripts/swarm-lab.sh up [IMAGE...]   # build it (idempotent: a second run only checks)
#   scripts/swarm-lab.sh down            # remove everything `up` made, also after a crash
#   scripts/swarm-lab.sh status          # what exists now; exit 0 only when three nodes are Ready
#   scripts/swarm-lab.sh env             # NODE_N_SOCK / NODE_N_ADDR lines for scripts and tests
#   scripts/swarm-lab.sh deps            # install what the lab needs beyond the engine (make test)
#
# Each node is one dockerd (with its own containerd) started in its own network namespace
# cf-swarm-N (and UTS namespace, so each node has its own hostname), with its own data root,
# exec root, pidfile, socket and log. The namespaces hang off a bridge cfswarm0 in the root
# namespace on 10.213.0.0/24; the host's FORWARD policy drops bridged traffic, so one ACCEPT
# rule for -i cfswarm0 -o cfswarm0 (tagged with a comment) is appended and removed again.
# Images come from the host engine by `docker save | docker load`: nothing is pulled.
#
#   SWARM_LAB_IMAGES="a:b c:d"   images to load (default: clawfleet/openclaw:* on the host plus
#                                clawfleet/debian-base:bookworm, the smoke test's tiny image)
#   SWARM_LAB_KEEP_IMAGES=1      `down` keeps each node's image store (the next `up` skips loads)
#   SWARM_LAB_TIMEOUT=60         seconds to wait for each engine and for the nodes to be Ready
set -euo pipefail

NODES=3
BRIDGE=cfswarm0
PREFIX=10.213.0
BRIDGE_ADDR="$PREFIX.1"
NETNS_PREFIX=cf-swarm-
DATA=/var/lib/clawfleet-swarm
RUN=/run/clawfleet-swarm
LOGDIR=/var/log/clawfleet-swarm
# Overlay subnets come from here, far from the underlay and from the host engine's pools.
ADDR_POOL=10.214.0.0/16
OVERLAY=cfswarm-smoke
RULE_COMMENT=clawfleet-swarm-lab
HOST_DOCKER="${HOST_DOCKER:-docker}"
TIMEOUT="${SWARM_LAB_TIMEOUT:-60}"

T0=$(date +%s)
declare -A STARTED=()
log() { printf '[swarm-lab %4ss] %s\n' "$(($(date +%s) - T0))" "$*"; }
die() {
    echo "swarm-lab.sh: $*" >&2
    exit 1
}

ns() { echo "$NETNS_PREFIX$1"; }
addr() { echo "$PREFIX.$((10 + $1))"; }
sock() { echo "$RUN/node-$1.sock"; }
pidfile() { echo "$RUN/node-$1.pid"; }
veth_host() { echo "cfsw$1h"; }
dk() { # dk N docker-args...: the docker CLI against node N
    local n="$1"
    shift
    docker -H "unix://$(sock "$n")" "$@"
}
fwd_rule() { echo "FORWARD -i $BRIDGE -o $BRIDGE -m comment --comment $RULE_COMMENT -j ACCEPT"; }

# ---- preflight: every missing piece is an error with its name, never a skip ----
KCONFIG=""
kernel_has() { # kernel_has MODULE CONFIG_NAME: built in, loaded, or loadable
    local mod="$1" cfg="$2"
    [ -d "/sys/module/$mod" ] && return 0
    if [ -z "$KCONFIG" ] && [ -r /proc/config.gz ]; then KCONFIG=$(zcat /proc/config.gz); fi
    grep -qE "^$cfg=y" <<<"$KCONFIG" && return 0
    modprobe "$mod" 2>/dev/null
}

preflight() {
    [ "$(id -u)" = 0 ] || die "must run as root (network namespaces, bridges, dockerd)"
    local tool
    for tool in dockerd docker containerd runc nsenter unshare ip iptables setsid; do
        command -v "$tool" >/dev/null || die "$tool missing (apt-get install docker.io util-linux iproute2 iptables)"
    done
    kernel_has vxlan CONFIG_VXLAN || die "kernel module vxlan missing: overlay networks need it"
    grep -qw overlay /proc/filesystems || kernel_has overlay CONFIG_OVERLAY_FS ||
        die "kernel module overlay missing: the overlay2 storage driver needs it"
    kernel_has veth CONFIG_VETH || die "kernel module veth missing"
    kernel_has bridge CONFIG_BRIDGE || die "kernel module bridge missing"
    "$HOST_DOCKER" info >/dev/null 2>&1 || die "the host engine does not answer (images are loaded from it)"
    local fs
    fs=$(stat -f -c %T "$(dirname "$DATA")")
    case "$fs" in
    ext2/ext3 | xfs | btrfs) ;; # overlay2 works on these
    *) die "$(dirname "$DATA") is on $fs; overlay2 needs ext4 or xfs" ;;
    esac
}

# ---- network: bridge, namespaces, veth pairs, the one FORWARD rule ----
net_up() {
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        if ip route | grep -q "^$PREFIX\."; then die "$PREFIX.0/24 is already routed on this host"; fi
        ip link add "$BRIDGE" type bridge
        ip addr add "$BRIDGE_ADDR/24" dev "$BRIDGE"
    fi
    ip link set "$BRIDGE" up
    local n
    for n in $(seq 1 "$NODES"); do
        if [ ! -e "/run/netns/$(ns "$n")" ]; then ip netns add "$(ns "$n")"; fi
        if ! ip link show "$(veth_host "$n")" >/dev/null 2>&1; then
            ip link add "$(veth_host "$n")" type veth peer name eth0 netns "$(ns "$n")"
            ip link set "$(veth_host "$n")" master "$BRIDGE" up
        fi
        ip -n "$(ns "$n")" link set lo up
        if ! ip -n "$(ns "$n")" -4 addr show dev eth0 | grep -q "$(addr "$n")/"; then
            ip -n "$(ns "$n")" addr add "$(addr "$n")/24" dev eth0
        fi
        ip -n "$(ns "$n")" link set eth0 up
    done
    # Appended, so no rule of the host's (DOCKER-USER, CLAWFLEET-*) moves; it only catches
    # what would otherwise fall to the DROP policy.
    # shellcheck disable=SC2046
    if ! iptables -C $(fwd_rule) 2>/dev/null; then iptables -A $(fwd_rule); fi
}

net_down() {
    local n
    # shellcheck disable=SC2046
    while iptables -C $(fwd_rule) 2>/dev/null; do iptables -D $(fwd_rule); done
    for n in $(seq 1 "$NODES"); do
        ip link del "$(veth_host "$n")" 2>/dev/null || true
        if [ -e "/run/netns/$(ns "$n")" ]; then ip netns del "$(ns "$n")"; fi
    done
    ip link del "$BRIDGE" 2>/dev/null || true
}

# ---- engines ----
node_pid() { # the live dockerd pid of node N, or nothing
    local f
    f=$(pidfile "$1")
    [ -s "$f" ] || return 0
    local pid
    pid=$(cat "$f")
    if [ -d "/proc/$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "--pidfile $f"; then echo "$pid"; fi
}

engine_up() {
    local n="$1"
    mkdir -p "$DATA/node-$n" "$RUN/node-$n" "$LOGDIR"
    if [ -n "$(node_pid "$n")" ]; then return 0; fi
    rm -f "$(sock "$n")" "$(pidfile "$n")"
    # An empty config file, so a host /etc/docker/daemon.json never leaks in (20.10 refuses
    # /dev/null, which moby's own test harness passes).
    [ -s "$RUN/daemon.json" ] || echo '{}' >"$RUN/daemon.json"
    # nsenter (not `ip netns exec`, which remounts /sys and hides the cgroup hierarchy);
    # unshare --uts gives each node its own hostname, which Swarm reports as node.hostname.
    setsid nsenter --net="/run/netns/$(ns "$n")" \
        unshare --uts sh -c 'hostname "$0" && exec "$@"' "$(ns "$n")" \
        dockerd \
        --config-file "$RUN/daemon.json" \
        --data-root "$DATA/node-$n" \
        --exec-root "$RUN/node-$n" \
        --pidfile "$(pidfile "$n")" \
        -H "unix://$(sock "$n")" \
        --containerd-namespace "cfswarm$n" \
        --containerd-plugins-namespace "cfswarm${n}p" \
        --cgroup-parent "/clawfleet-swarm-node-$n" \
        --storage-driver overlay2 \
        --no-new-privileges \
        --iptables=true \
        --userland-proxy=false \
        --log-level info \
        </dev/null >>"$LOGDIR/node-$n.log" 2>&1 &
    STARTED[$n]=$!
}

wait_engine() {
    local n="$1" deadline=$(($(date +%s) + TIMEOUT))
    until dk "$n" version >/dev/null 2>&1; do
        if [ -n "${STARTED[$n]:-}" ] && ! kill -0 "${STARTED[$n]}" 2>/dev/null; then
            tail -n 20 "$LOGDIR/node-$n.log" >&2 || true
            die "node $n's engine exited at start (log: $LOGDIR/node-$n.log)"
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            tail -n 20 "$LOGDIR/node-$n.log" >&2 || true
            die "node $n's engine did not answer on $(sock "$n") within ${TIMEOUT}s (log: $LOGDIR/node-$n.log)"
        fi
        sleep 0.2
    done
}

engine_down() { # stop node N's dockerd (TERM, then KILL), and anything left in its namespace
    local n="$1" pid i
    pid=$(node_pid "$n")
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 100); do
            [ -d "/proc/$pid" ] || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    # A crash may leave containerd, shims or container processes behind: everything in the
    # node's network namespace is ours.
    if [ -e "/run/netns/$(ns "$n")" ]; then
        local pids
        pids=$(ip netns pids "$(ns "$n")" 2>/dev/null || true)
        if [ -n "$pids" ]; then
            # shellcheck disable=SC2086
            kill -KILL $pids 2>/dev/null || true
            sleep 0.3
        fi
    fi
    # Mounts under the exec and data roots (netns bind mounts, overlay layers, shm).
    local m
    for m in $(awk -v a="$RUN/node-$n" -v b="$DATA/node-$n" \
        'index($2, a) == 1 || index($2, b) == 1 {print $2}' /proc/self/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
    rm -f "$(sock "$n")" "$(pidfile "$n")"
    rm -rf "${RUN:?}/node-$n"
    # Container cgroups under the node's cgroup parent (empty once the processes are gone).
    local d
    for d in /sys/fs/cgroup/*/"clawfleet-swarm-node-$n" /sys/fs/cgroup/"clawfleet-swarm-node-$n"; do
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
}

# ---- swarm ----
swarm_state() { dk "$1" info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || echo unknown; }

swarm_up() {
    if [ "$(swarm_state 1)" != active ]; then
        dk 1 swarm init --advertise-addr "$(addr 1)" --listen-addr "$(addr 1):2377" \
            --default-addr-pool "$ADDR_POOL" --default-addr-pool-mask-length 24 >/dev/null
    fi
    local token n
    token=$(dk 1 swarm join-token -q worker)
    for n in $(seq 2 "$NODES"); do
        if [ "$(swarm_state "$n")" != active ]; then
            dk "$n" swarm join --token "$token" --advertise-addr "$(addr "$n")" \
                --listen-addr "$(addr "$n"):2377" "$(addr 1):2377" >/dev/null
        fi
    done
    local deadline=$(($(date +%s) + TIMEOUT)) ready
    while :; do
        ready=$(dk 1 node ls --format '{{.Status}}' | grep -c '^Ready$' || true)
        [ "$ready" -ge "$NODES" ] && break
        if [ "$(date +%s)" -ge "$deadline" ]; then
            dk 1 node ls >&2 || true
            die "only $ready of $NODES nodes Ready after ${TIMEOUT}s"
        fi
        sleep 0.5
    done
    # Each node tells the control plane where its own engine answers (volume files and exec go
    # there, not through the manager): node label clawfleet.engine (instances/runtime/swarm.py).
    local id
    for n in $(seq 1 "$NODES"); do
        id=$(dk "$n" info --format '{{.Swarm.NodeID}}')
        if [ "$(dk 1 node inspect --format '{{index .Spec.Labels "clawfleet.engine"}}' "$id")" != "unix://$(sock "$n")" ]; then
            dk 1 node update --label-add "clawfleet.engine=unix://$(sock "$n")" "$id" >/dev/null
        fi
    done
    if ! dk 1 network inspect "$OVERLAY" >/dev/null 2>&1; then
        dk 1 network create --driver overlay --attachable "$OVERLAY" >/dev/null
    fi
}

# ---- images ----
default_images() {
    "$HOST_DOCKER" images --format '{{.Repository}}:{{.Tag}}' clawfleet/openclaw | grep -v ':<none>$' || true
    echo clawfleet/debian-base:bookworm
}

images_up() {
    local images=("$@") img id n
    if [ ${#images[@]} -eq 0 ]; then
        if [ -n "${SWARM_LAB_IMAGES:-}" ]; then
            read -r -a images <<<"$SWARM_LAB_IMAGES"
        else
            mapfile -t images < <(default_images)
        fi
    fi
    # What each node lacks: an image is skipped on a node that holds the same id under its name.
    local missing=() nodes=()
    for img in "${images[@]}"; do
        id=$("$HOST_DOCKER" image inspect --format '{{.Id}}' "$img" 2>/dev/null) ||
            die "image $img is not on the host engine (nothing is pulled: build or load it there first)"
        local lacks=0
        for n in $(seq 1 "$NODES"); do
            if [ "$(dk "$n" image inspect --format '{{.Id}}' "$img" 2>/dev/null || true)" != "$id" ]; then
                lacks=1
                [[ " ${nodes[*]} " == *" $n "* ]] || nodes+=("$n")
            fi
        done
        if [ "$lacks" = 1 ]; then missing+=("$img"); else log "image $img present on every node"; fi
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    # One `docker save` of all missing images (shared layers travel once), fanned out by tee to
    # one `docker load` per node that lacks any of them; a node that has some just re-tags.
    local s fifos=() pids=() dir
    s=$(date +%s)
    dir=$(mktemp -d "$RUN/load.XXXXXX")
    for n in "${nodes[@]}"; do
        mkfifo "$dir/node-$n"
        fifos+=("$dir/node-$n")
        (dk "$n" load -q <"$dir/node-$n" >/dev/null) &
        pids+=($!)
    done
    log "loading ${missing[*]} into node(s) ${nodes[*]}"
    "$HOST_DOCKER" save "${missing[@]}" | tee "${fifos[@]}" >/dev/null || die "docker save ${missing[*]} failed"
    for id in "${pids[@]}"; do wait "$id" || die "docker load into a node failed (see its log in $LOGDIR)"; done
    rm -rf "$dir"
    log "images loaded into ${#nodes[@]} node(s) in $(($(date +%s) - s))s"
}

# ---- subcommands ----
cmd_up() {
    preflight
    log "network: bridge $BRIDGE $PREFIX.0/24, namespaces $(ns 1)..$(ns "$NODES")"
    net_up
    local n
    for n in $(seq 1 "$NODES"); do engine_up "$n"; done
    for n in $(seq 1 "$NODES"); do wait_engine "$n"; done
    log "engines answer: $(for n in $(seq 1 "$NODES"); do printf '%s ' "$(sock "$n")"; done)"
    swarm_up
    log "swarm: manager $(addr 1), $NODES nodes Ready, overlay network $OVERLAY"
    images_up "$@"
    log "up in $(($(date +%s) - T0))s"
}

cmd_down() {
    [ "$(id -u)" = 0 ] || die "must run as root"
    local n
    for n in $(seq 1 "$NODES"); do engine_down "$n"; done
    net_down
    if [ "${SWARM_LAB_KEEP_IMAGES:-0}" = 1 ]; then
        # Keep the image and layer stores; forget the swarm, containers, networks and volumes.
        for n in $(seq 1 "$NODES"); do
            rm -rf "${DATA:?}/node-$n/swarm" "$DATA/node-$n/containers" "$DATA/node-$n/network" \
                "$DATA/node-$n/volumes"
        done
        log "down (image stores kept under $DATA)"
    else
        rm -rf "${DATA:?}"
        log "down"
    fi
    rm -rf "${RUN:?}"
}

cmd_status() {
    local n ok=0 pid
    if ip link show "$BRIDGE" >/dev/null 2>&1; then echo "bridge $BRIDGE: up"; else echo "bridge $BRIDGE: absent"; fi
    # shellcheck disable=SC2046
    if iptables -C $(fwd_rule) 2>/dev/null; then echo "FORWARD rule: present"; else echo "FORWARD rule: absent"; fi
    for n in $(seq 1 "$NODES"); do
        pid=$(node_pid "$n")
        printf 'node %s: netns %s, address %s, dockerd %s, swarm %s\n' "$n" \
            "$([ -e "/run/netns/$(ns "$n")" ] && echo present || echo absent)" "$(addr "$n")" \
            "${pid:-absent}" "$([ -n "$pid" ] && swarm_state "$n" || echo -)"
    done
    if [ -n "$(node_pid 1)" ] && dk 1 node ls 2>/dev/null; then
        [ "$(dk 1 node ls --format '{{.Status}}' | grep -c '^Ready$' || true)" -ge "$NODES" ] && ok=1
    fi
    [ "$ok" = 1 ]
}

cmd_deps() { # the tools beyond docker.io (scripts/ensure-docker.sh), on Debian, only if missing
    local pkgs=() tool pkg
    for tool in ip:iproute2 iptables:iptables nsenter:util-linux unshare:util-linux setsid:util-linux; do
        pkg=${tool#*:}
        command -v "${tool%%:*}" >/dev/null || [[ " ${pkgs[*]} " == *" $pkg "* ]] || pkgs+=("$pkg")
    done
    [ ${#pkgs[@]} -gt 0 ] || return 0
    [ "$(id -u)" = 0 ] || die "missing ${pkgs[*]}: run as root to install them"
    log "installing ${pkgs[*]} with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" ||
        die "apt-get install ${pkgs[*]} failed"
}

cmd_env() {
    local n
    for n in $(seq 1 "$NODES"); do
        echo "NODE_${n}_SOCK=unix://$(sock "$n")"
        echo "NODE_${n}_ADDR=$(addr "$n")"
        echo "NODE_${n}_PIDFILE=$(pidfile "$n")"
    done
    echo "OVERLAY=$OVERLAY"
}

case "${1:-}" in
up)
    shift
    cmd_up "$@"
    ;;
down) cmd_down ;;
status) cmd_status ;;
env) cmd_env ;;
deps) cmd_deps ;;
*) die "usage: $0 up [IMAGE...] | down | status | env | deps" ;;
esac
