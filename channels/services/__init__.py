"""Channel services: every write the dashboard, the API, the admin and the tasks make.

- channels: connect (token checked with the provider first), change the DM policy, remove;
  each one transaction and one audit row, the gateway work queued on commit;
- gateway: the config patches (OpenClaw's config RPCs, hot reload, no restart);
- health: channels.status read into each Channel, the hook and the owner's email on a break;
- pairing: OpenClaw's DM pairing requests listed, approved, dismissed (audited).
"""

from .channels import (  # noqa: F401
    channel_connect,
    channel_remove,
    channel_update,
    connect_requested_by_deploy,
)
from .pairing import PairingRequest, pairing_approve, pairing_list, pairing_reject  # noqa: F401
