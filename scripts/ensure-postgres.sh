#!/usr/bin/env bash
# The test suite runs on PostgreSQL (TEST_DATABASE_URL, default postgres://postgres@127.0.0.1:5432).
set -euo pipefail
ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
create_db() {  # the database manage.py check uses; pytest-django creates test_<name> itself
  command -v psql >/dev/null || return 0
  psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='clawfleet'" 2>/dev/null | grep -q 1 ||
    psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE clawfleet" >/dev/null 2>&1 || true
}
ready && { create_db; exit 0; }
if [ "$(id -u)" = 0 ] && command -v pg_ctlcluster >/dev/null && ls /etc/postgresql >/dev/null 2>&1; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  for _ in $(seq 1 30); do ready && { create_db; exit 0; }; sleep 0.5; done
fi
echo "PostgreSQL is not answering on 127.0.0.1:5432: start it, or set TEST_DATABASE_URL." >&2
exit 1
