#!/usr/bin/env bash
# The edge proxy (docs/edge.md): Caddy from Debian's package, driven only through its admin API
# by instances/edge.py. Installs the package when missing; never starts Debian's own caddy
# service (the Procfile's `edge` process and the test fixture run their own, on loopback).
set -euo pipefail
if command -v caddy >/dev/null; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  # No service start from the package's maintainer scripts: our processes own the ports.
  policy=/usr/sbin/policy-rc.d
  created=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1
  fi
  trap '[ "$created" = 1 ] && rm -f "$policy"' EXIT
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq caddy >/dev/null
else
  echo "Caddy is not installed: install Debian's caddy package (apt-get install caddy)." >&2
  exit 1
fi
command -v caddy >/dev/null || { echo "caddy did not install" >&2; exit 1; }
caddy version
