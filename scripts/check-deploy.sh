#!/usr/bin/env bash
# `manage.py check --deploy` as production runs it: DEBUG off, every required secret set (fresh
# throwaway values here, never written anywhere; backups in an object store bucket, which the
# check does not contact). Warnings fail, so a new one cannot slip in.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
fernet() { "$PY" -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"; }
DEBUG=false \
SECRET_KEY="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(64))')" \
FIELD_ENCRYPTION_KEYS="$(fernet)" \
BACKUP_ENCRYPTION_KEY="$(fernet)" \
FLEET_BACKUP_S3_BUCKET="${FLEET_BACKUP_S3_BUCKET:-clawfleet-backups}" \
STRIPE_WEBHOOK_SECRET="whsec_check_deploy_$("$PY" -c 'import secrets; print(secrets.token_hex(16))')" \
ALLOWED_HOSTS="${ALLOWED_HOSTS:-clawfleet.example}" \
    "$PY" manage.py check --deploy --fail-level WARNING
