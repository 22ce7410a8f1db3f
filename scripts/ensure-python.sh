#!/usr/bin/env bash
# Python 3.11+ with venv support is required; on Debian as root, install it when missing.
set -euo pipefail
if python3 -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-dev >/dev/null
  exit 0
fi
echo "Clawfleet needs Python 3.11+ with venv (Debian: apt-get install python3-venv)." >&2
exit 1
