#!/bin/sh
# Clawfleet entrypoint: the root fs is read-only, so every writable path lives in the state volume
# (or a tmpfs). Volumes imported from elsewhere may lack these directories: create them, then exec.
for d in "${OPENCLAW_STATE_DIR:-}" "${TMPDIR:-}" "${XDG_CACHE_HOME:-}" "${NODE_COMPILE_CACHE:-}"; do
    [ -n "$d" ] && mkdir -p "$d" 2>/dev/null
done
exec "$@"
