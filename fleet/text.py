"""Words a customer reads: one function that takes engine URLs, addresses, host ports, container
and volume names and host paths out of a message, whatever an exception put into it.

Below every app (no Django, no DRF), so the API (fleet.api.PublicTextField), the dashboard's
`public` template filter (accounts/templatetags/public_text.py) and the notifications all clean a
message the same way. The full text stays in the staff-only fields (Operation.error_detail, the
staff admin) and the logs.
"""

from __future__ import annotations

import re

# Engine endpoints (unix:///var/run/docker.sock, tcp://10.0.0.5:2376, ssh://...), any URL, IP
# addresses with or without a port, and absolute host paths of two or more segments.
_ADDRESS_RE = re.compile(
    r"\b(?:unix|tcp|ssh|npipe|https?)://\S+"
    r"|\[[0-9A-Fa-f:]+\](?::\d+)?"
    r"|\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"
    r"|\blocalhost:\d+\b"
)
_PATH_RE = re.compile(r"(?<![\w.:/~-])/(?:[\w.@+-]+/)+[\w.@+-]*")
# Engine object names: clawfleet-<32 hex>[-state], with or without a plane label between.
_ENGINE_NAME_RE = re.compile(r"\bclawfleet-(?:[\w.-]*-)?[0-9a-f]{32}(?:-[\w-]+)?\b")


def public_text(text: str | None) -> str | None:
    """A message as a customer may see it: no engine URL, address, host port, engine object
    name or host path (an empty or None message comes back as it is)."""
    if not text:
        return text
    text = str(text)
    text = _ADDRESS_RE.sub("[address hidden]", text)
    text = _ENGINE_NAME_RE.sub("[name hidden]", text)
    return _PATH_RE.sub("[path hidden]", text)
