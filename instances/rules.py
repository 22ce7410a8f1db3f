"""The rules an instance's fields obey, defined once: services enforce them, the API serializers
and the dashboard and sessions forms read their bounds from here (so the schema, the form and
the service never disagree)."""

from __future__ import annotations

import re
from decimal import Decimal

NAME_MAX_LENGTH = 40
NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$"
NAME_RE = re.compile(NAME_PATTERN)
NAME_HELP = "Use 1 to 40 lowercase letters, digits and hyphens (not at the start or end)."

# OpenClaw is OOM-killed in a loop at 768 MB and idles at ~1 GB (OPENCLAW.md §2).
MIN_MEMORY_MB = 1024
MAX_MEMORY_MB = 262_144
DEFAULT_MEMORY_MB = 2048

MIN_CPUS = Decimal("0.01")
MAX_CPUS = Decimal("64")
DEFAULT_CPUS = Decimal("1")

EXTERNAL_ID_MAX_LENGTH = 100
CLIENT_NAME_MAX_LENGTH = 100

# Retention bounds: (low, high) for each per-instance setting.
RETENTION_BOUNDS = {
    "session_idle_days": (1, 3650),
    "session_max_count": (1, 1_000_000),
}


def external_id_taken(organization, external_id: str | None, *, exclude_pk=None) -> bool:
    """An agency's own id for an instance is unique within its organization (the database
    enforces it too: instance_external_id_unique_per_org)."""
    from .models import Instance

    if not external_id:
        return False
    taken = Instance.objects.filter(organization=organization, external_id=external_id)
    if exclude_pk is not None:
        taken = taken.exclude(pk=exclude_pk)
    return taken.exists()
