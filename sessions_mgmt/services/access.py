"""How sessions_mgmt reaches an instance: its OpenClaw client, its runtime, its image.

The other modules of the package call these through the module (`access.client_for(...)`), so a
test replaces the OpenClaw client in one place (the runtime is chosen by FLEET_RUNTIME).
"""

from __future__ import annotations

from instances.models import Instance
from instances.openclaw.client import OpenClawClient
from instances.operations import OperationError

# The statuses in which the gateway serves: sessions are read and transcripts fetched only then.
SYNCABLE = (Instance.Status.RUNNING,)


def client_for(instance: Instance, **kwargs) -> OpenClawClient:
    """The OpenClaw client of an instance (tests replace this with a fake)."""
    return OpenClawClient.for_instance(instance, **kwargs)


def runtime_for_instance(instance: Instance):
    from instances.runtime import runtime_for

    if instance.host is None:
        raise OperationError("This instance has no host yet.")
    return runtime_for(instance.host)


def image_for_instance(instance: Instance) -> str:
    from instances.specs import image_for

    return image_for(instance.openclaw_version)
